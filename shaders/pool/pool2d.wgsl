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
    // -inf (as ONNX MaxPool): a window of -inf inputs gives -inf, not -FLT_MAX. Made at run
    // time (`min(p.n, 0u)` is 0): WGSL makes a constant expression that evaluates to an
    // infinity a shader-creation error, which browsers (Tint) enforce and naga does not.
    var m = bitcast<f32>(0xff800000u + min(p.n, 0u));
    var s = 0.0;
    var cnt = 0u;
    // Only the taps inside the input are visited (a hostile window of 40000 taps over a 2x2
    // input costs 4, not 40000), in the same ascending order as the CPU reference.
    let y0 = i32(oy * p.stride_h) - i32(p.pad_t);
    let x0 = i32(ox * p.stride_w) - i32(p.pad_l);
    let r0 = max(0, -y0);
    let r1 = min(i32(p.kh), i32(p.h) - y0);
    let q0 = max(0, -x0);
    let q1 = min(i32(p.kw), i32(p.w) - x0);
    for (var r = r0; r < r1; r++) {
        let row = (nc * p.h + u32(y0 + r)) * p.w;
        for (var q = q0; q < q1; q++) {
            let v = x[row + u32(x0 + q)];
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
