// Max / average / Lp pooling (NCHW): one invocation per output element.
// MODE: 0 max, 1 average over the taps inside the input, 2 average counting the taps inside the
// padded input, 3 Lp ((sum |x|^p)^(1/p)). Windows are dilated (tap r at start + r * dil).
struct Params {
    n: u32, c: u32, h: u32, w: u32,
    oh: u32, ow: u32, kh: u32, kw: u32,
    stride_h: u32, stride_w: u32, pad_t: u32, pad_l: u32,
    pad_b: u32, pad_r: u32, dil_h: u32, dil_w: u32,
    p: u32, _p0: u32, _p1: u32, _p2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// The taps r in [0, k) of a window starting at `start` whose coordinate start + r * dil lies in
// [lo, hi): (first, end).
fn taps(start: i32, dil: i32, k: i32, lo: i32, hi: i32) -> vec2<i32> {
    var first = 0;
    if (start < lo) { first = (lo - start + dil - 1) / dil; }
    var last = 0;
    if (hi > start) { last = min((hi - start + dil - 1) / dil, k); }
    return vec2<i32>(first, max(last, first));
}

fn lp_term(v: f32) -> f32 {
    switch p.p {
        case 1u: { return abs(v); }
        case 2u: { return v * v; }
        default: { return pow(abs(v), f32(p.p)); }
    }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 64u);
    if (i >= p.n * p.c * p.oh * p.ow) { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let nc = i / (p.ow * p.oh);
    // -inf (as ONNX MaxPool): a window of -inf inputs gives -inf, not -FLT_MAX. Made at run
    // time (`min(p.n, 0u)` is 0): WGSL makes a constant expression that evaluates to an
    // infinity a shader-creation error, which browsers (Tint) enforce and naga does not.
    var m = bitcast<f32>(0xff800000u + min(p.n, 0u));
    var s = 0.0;
    var cnt = 0u;
    // Only the taps inside the input are visited (a hostile window of 40000 taps over a 2x2
    // input costs 4, not 40000), in the same ascending order as the CPU reference.
    let dh = i32(p.dil_h);
    let dw = i32(p.dil_w);
    let y0 = i32(oy * p.stride_h) - i32(p.pad_t);
    let x0 = i32(ox * p.stride_w) - i32(p.pad_l);
    let rr = taps(y0, dh, i32(p.kh), 0, i32(p.h));
    let qq = taps(x0, dw, i32(p.kw), 0, i32(p.w));
    for (var r = rr.x; r < rr.y; r++) {
        let row = (nc * p.h + u32(y0 + r * dh)) * p.w;
        for (var q = qq.x; q < qq.y; q++) {
            let v = x[row + u32(x0 + q * dw)];
            m = max(m, v);
            if (MODE == 3u) { s += lp_term(v); } else { s += v; }
            cnt++;
        }
    }
    var out: f32;
    switch MODE {
        case 0u: { out = m; }
        case 1u: { out = s / f32(max(cnt, 1u)); }
        case 2u: {
            let a = taps(y0, dh, i32(p.kh), -i32(p.pad_t), i32(p.h + p.pad_b));
            let b = taps(x0, dw, i32(p.kw), -i32(p.pad_l), i32(p.w + p.pad_r));
            out = s / f32(max(u32((a.y - a.x) * (b.y - b.x)), 1u));
        }
        default: {
            switch p.p {
                case 1u: { out = s; }
                case 2u: { out = sqrt(s); }
                default: { out = pow(s, 1.0 / f32(p.p)); }
            }
        }
    }
    y[i] = activate(out);
}
