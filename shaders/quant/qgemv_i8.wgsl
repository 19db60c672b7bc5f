// int8 x int8 matmul with integer accumulation: A's rows quantised per run by act_q8.wgsl
// (codes and one scale per row, in the texture xq), W's int8 codes read as stored (row-major
// texels, w_buffer/w_texture). Per scale group the i32 sum of code products is exact; then
//   C[m][n] = s_x[m] * sum_g s_w[n][g] * (sum_k qw * qx - z'[n][g] * sum_k qx)
// where asymmetric (u8) weight codes are recentred to signed (code ^ 0x80 = code - 128, so
// z' = z - 128). DOT = 1 uses WGSL's dot4I8Packed (one instruction where the driver has packed
// integer dot products, a polyfill elsewhere), DOT = 0 a portable unpack-and-multiply; which
// runs faster is measured per adapter. R rows of W per invocation (1, 2 or 4), one row of A.
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_bs: u32, a_rs: u32, a_ks: u32, row_t: u32,
    group_t: u32, ngroups: u32, zoff: u32, has_bias: u32,
    has_res: u32, _p0: u32, _p1: u32, _p2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var xq: texture_2d<u32>;
@group(0) @binding(3) var<storage, read_write> qm: array<u32>;
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> c: array<f32>;

fn sext(w: u32) -> vec4<i32> {
    return bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
}

fn idot(a: u32, b: u32) -> i32 {
    if (DOT == 1u) { return dot4I8Packed(a, b); }
    return dot(sext(a), sext(b));
}

// Sum of code products over one texel (16 k); asymmetric weights recentred to signed.
fn tdot(w: vec4<u32>, x: vec4<u32>) -> i32 {
    let f = select(0u, 0x80808080u, ZERO == 1u);
    return (idot(w.x ^ f, x.x) + idot(w.y ^ f, x.y)) + (idot(w.z ^ f, x.z) + idot(w.w ^ f, x.w));
}

// Sum of the 16 activation codes of a texel (for the zero-point term).
fn xsum(x: vec4<u32>) -> i32 {
    let o = 0x01010101u;
    return (idot(o, x.x) + idot(o, x.y)) + (idot(o, x.z) + idot(o, x.w));
}

fn out1(bat: u32, m: u32, n: u32, v: f32) {
    if (n >= p.n) { return; }
    let o = (bat * p.m + m) * p.n + n;
    var y = v;
    if (p.has_bias != 0u) { y += bias[n]; }
    if (p.has_res != 0u) { y += res[o]; }
    c[o] = activate(y);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wid.x * 64u + lid.x) * R;
    let m = wid.y;
    let bat = wid.z;
    if (n0 >= p.n) { return; }
    let row = bat * p.m + m;
    let sx = bitcast<f32>(textureLoad(xq, vec2<u32>(p.row_t, row), 0).x);
    let l = p.n - 1u;
    var a0 = 0.0; var a1 = 0.0; var a2 = 0.0; var a3 = 0.0;
    for (var g = 0u; g < p.ngroups; g++) {
        let t0 = g * p.group_t;
        let t1 = min(t0 + p.group_t, p.row_t);
        var i0 = 0; var i1 = 0; var i2 = 0; var i3 = 0; var xs = 0;
        for (var t = t0; t < t1; t++) {
            let x = textureLoad(xq, vec2<u32>(t, row), 0);
            if (ZERO == 1u) { xs += xsum(x); }
            i0 += tdot(wq(n0, t), x);
            if (R > 1u) { i1 += tdot(wq(n0 + 1u, t), x); }
            if (R > 2u) {
                i2 += tdot(wq(n0 + 2u, t), x);
                i3 += tdot(wq(n0 + 3u, t), x);
            }
        }
        // Zero points: recentred by 128 (0 for symmetric codes, where q_zero is 0).
        let zc = select(0.0, 128.0, ZERO == 1u);
        let xsf = f32(xs);
        var gi = min(n0, l) * p.ngroups + g;
        a0 += q_scale(gi) * (f32(i0) - (q_zero(gi) - zc) * xsf);
        if (R > 1u) {
            gi = min(n0 + 1u, l) * p.ngroups + g;
            a1 += q_scale(gi) * (f32(i1) - (q_zero(gi) - zc) * xsf);
        }
        if (R > 2u) {
            gi = min(n0 + 2u, l) * p.ngroups + g;
            a2 += q_scale(gi) * (f32(i2) - (q_zero(gi) - zc) * xsf);
            gi = min(n0 + 3u, l) * p.ngroups + g;
            a3 += q_scale(gi) * (f32(i3) - (q_zero(gi) - zc) * xsf);
        }
    }
    out1(bat, m, n0, a0 * sx);
    if (R > 1u) { out1(bat, m, n0 + 1u, a1 * sx); }
    if (R > 2u) { out1(bat, m, n0 + 2u, a2 * sx); out1(bat, m, n0 + 3u, a3 * sx); }
}
