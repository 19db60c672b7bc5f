// Matmul with a packed weight read as stored (int8, int4, pow2, f16; never inflated to f32):
//   C[b][m][n] = act(sum_k A[b][m][k] * W[n][k] + bias[n] + res[b][m][n])
// W is [N, K] (the Linear layout) in rows of row_t 16-byte texels, scales per row or per group
// of group_t texels. An invocation computes TM rows of A by R weight rows: per texel it loads R
// weight texels once, unpacks each into QV4 vec4s of codes, and dots them with TM A vectors.
// Per scale group it sums code * x, then adds scale * (sum - zero * sum(x)), so the zero point
// and scale cost one multiply per group, not per weight. Codes past K are 0 and meet A's zeros.
// xv() and wq() come from a_buffer/a_texture and w_buffer/w_texture.
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_bs: u32, a_rs: u32, a_ks: u32, row_t: u32,
    group_t: u32, ngroups: u32, zoff: u32, has_bias: u32,
    has_res: u32, _p0: u32, _p1: u32, _p2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> qm: array<u32>;
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wid.x * 64u + lid.x) * R;
    let m0 = wid.y * TM;
    let bat = wid.z;
    if (n0 >= p.n) { return; }
    var acc: array<f32, 16>;
    for (var g = 0u; g < p.ngroups; g++) {
        let t0 = g * p.group_t;
        let t1 = min(t0 + p.group_t, p.row_t);
        // Zeroed explicitly per group (see conv/qconv2d.wgsl: SwiftShader in Chromium kept the
        // previous group's sums in a loop-scoped array declared without an initializer).
        var part = array<f32, 16>();
        var xs = array<f32, 4>();
        for (var t = t0; t < t1; t++) {
            var wv: array<vec4<u32>, 4>;
            for (var r = 0u; r < R; r++) { wv[r] = wq(n0 + r, t); }
            for (var j = 0u; j < QV4; j++) {
                var cv: array<vec4<f32>, 4>;
                for (var r = 0u; r < R; r++) { cv[r] = q_codes(wv[r], j); }
                for (var i = 0u; i < TM; i++) {
                    let x = xv(bat, m0 + i, t * QV4 + j);
                    if (ZERO == 1u) { xs[i] += (x.x + x.y) + (x.z + x.w); }
                    for (var r = 0u; r < R; r++) { part[i * R + r] += dot(x, cv[r]); }
                }
            }
        }
        for (var r = 0u; r < R; r++) {
            let gi = min(n0 + r, p.n - 1u) * p.ngroups + g;
            let s = q_scale(gi);
            let z = q_zero(gi);
            for (var i = 0u; i < TM; i++) { acc[i * R + r] += s * (part[i * R + r] - z * xs[i]); }
        }
    }
    for (var i = 0u; i < TM; i++) {
        let m = m0 + i;
        if (m >= p.m) { break; }
        for (var r = 0u; r < R; r++) {
            let n = n0 + r;
            if (n >= p.n) { break; }
            let o = (bat * p.m + m) * p.n + n;
            var v = acc[i * R + r];
            if (p.has_bias != 0u) { v += bias[n]; }
            if (p.has_res != 0u) { v += res[o]; }
            c[o] = activate(v);
        }
    }
}
