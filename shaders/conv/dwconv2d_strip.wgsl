// Depthwise convolution over the padded rgba32float input texture (dw_pad_tex.wgsl): each
// invocation computes a strip of PX = 4 or 8 outputs along W of one channel, in named vec4
// accumulators. The window geometry is compiled in (KH x KW taps, stride SH x SW, dilation
// DH x DW), so every tap loop has a constant trip count and the column picks below are
// constant indices: the row's texels go into `cols` and each tap is one vec4 FMA per 4
// outputs. Weights are an rgba32float texture, row `channel * KH + ky` holding that kernel
// row's KW taps. A strip starts at padded column ox0 * SW, a multiple of 4 (PX is), so its
// NT texels per input row start on a texel.
@group(0) @binding(0) var<uniform> p: DwParams;
@group(0) @binding(1) var xt: texture_2d<f32>;
@group(0) @binding(2) var wt: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// Input columns one strip reads per row, and the texels holding them (at most 8: checked by
// the kernel's fit).
const SPAN: u32 = (PX - 1u) * SW + (KW - 1u) * DW + 1u;
const NT: u32 = (SPAN + 3u) / 4u;

struct Acc { lo: vec4<f32>, hi: vec4<f32> }

// Adds kernel row `wrow` (KW <= 8 taps) applied to input texture row `ty` (texels from tx0).
fn row(a: Acc, tx0: u32, ty: u32, wrow: u32) -> Acc {
    let w0 = textureLoad(wt, vec2<u32>(0u, wrow), 0);
    var w1 = vec4<f32>(0.0);
    if (KW > 4u) { w1 = textureLoad(wt, vec2<u32>(1u, wrow), 0); }
    let wk = array<f32, 8>(w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w);
    var cols: array<f32, 32>;
    for (var t = 0u; t < NT; t++) {
        let q = textureLoad(xt, vec2<u32>(tx0 + t, ty), 0);
        cols[4u * t] = q.x;
        cols[4u * t + 1u] = q.y;
        cols[4u * t + 2u] = q.z;
        cols[4u * t + 3u] = q.w;
    }
    var lo = a.lo;
    var hi = a.hi;
    for (var kx = 0u; kx < KW; kx++) {
        let s = kx * DW;
        let w = vec4<f32>(wk[kx]);
        lo = fma(w, vec4<f32>(cols[s], cols[s + SW], cols[s + 2u * SW], cols[s + 3u * SW]), lo);
        if (PX > 4u) {
            hi = fma(w, vec4<f32>(cols[s + 4u * SW], cols[s + 5u * SW], cols[s + 6u * SW], cols[s + 7u * SW]), hi);
        }
    }
    return Acc(lo, hi);
}

fn store1(o: u32, q: u32, n: u32, b: f32, v: f32) {
    if (q >= n) { return; }
    var s = v + b;
    if (p.has_res != 0u) { s += res[o + q]; }
    y[o + q] = activate(s);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let pl = wid.y + wid.z * p.gy;
    let strip = gid.x % p.strips;
    let oy = gid.x / p.strips;
    if (oy >= p.oh || pl >= p.planes) { return; }
    let ch = pl % p.c;
    let ox0 = strip * PX;
    let origin = plane_texel(pl, (ox0 * SW) / 4u, oy * SH);
    let w0 = ch * KH;
    // One call per kernel row, each with a constant row: the guards fold away.
    var a = row(Acc(vec4<f32>(0.0), vec4<f32>(0.0)), origin.x, origin.y, w0);
    if (KH > 1u) { a = row(a, origin.x, origin.y + DH, w0 + 1u); }
    if (KH > 2u) { a = row(a, origin.x, origin.y + 2u * DH, w0 + 2u); }
    if (KH > 3u) { a = row(a, origin.x, origin.y + 3u * DH, w0 + 3u); }
    if (KH > 4u) { a = row(a, origin.x, origin.y + 4u * DH, w0 + 4u); }
    if (KH > 5u) { a = row(a, origin.x, origin.y + 5u * DH, w0 + 5u); }
    if (KH > 6u) { a = row(a, origin.x, origin.y + 6u * DH, w0 + 6u); }
    var b = 0.0;
    if (p.has_bias != 0u) { b = bias[ch]; }
    let o = (pl * p.oh + oy) * p.ow + ox0;
    let n = min(PX, p.ow - ox0);
    store1(o, 0u, n, b, a.lo.x);
    store1(o, 1u, n, b, a.lo.y);
    store1(o, 2u, n, b, a.lo.z);
    store1(o, 3u, n, b, a.lo.w);
    if (PX > 4u) {
        store1(o, 4u, n, b, a.hi.x);
        store1(o, 5u, n, b, a.hi.y);
        store1(o, 6u, n, b, a.hi.z);
        store1(o, 7u, n, b, a.hi.w);
    }
}
