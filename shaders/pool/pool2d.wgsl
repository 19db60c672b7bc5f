// Max / average pooling (NCHW): one invocation per output element.
// MODE: 0 max, 1 average over the taps inside the input, 2 average counting padding.
struct Params {
    n: u32, c: u32, h: u32, w: u32,
    oh: u32, ow: u32, kh: u32, kw: u32,
    stride_h: u32, stride_w: u32, pad_t: u32, pad_l: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 64u);
    if (i >= p.n * p.c * p.oh * p.ow) { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let nc = i / (p.ow * p.oh);
    // -inf (as ONNX MaxPool): a window of -inf inputs gives -inf, not -FLT_MAX.
    var m = bitcast<f32>(0xff800000u);
    var s = 0.0;
    var cnt = 0u;
    for (var r = 0u; r < p.kh; r++) {
        let iy = i32(oy * p.stride_h + r) - i32(p.pad_t);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var q = 0u; q < p.kw; q++) {
            let ix = i32(ox * p.stride_w + q) - i32(p.pad_l);
            if (ix < 0 || ix >= i32(p.w)) { continue; }
            let v = x[(nc * p.h + u32(iy)) * p.w + u32(ix)];
            m = max(m, v);
            s += v;
            cnt++;
        }
    }
    var out: f32;
    switch MODE {
        case 0u: { out = m; }
        case 1u: { out = s / f32(max(cnt, 1u)); }
        default: { out = s / f32(p.kh * p.kw); }
    }
    y[i] = activate(out);
}
