// Matmul with a packed weight in the K-major layout (src/ops/quant.rs, QPart::CodesKn):
//   C[b][m][n] = act(sum_k A[b][m][k] * W[n][k] + bias[n] + res[b][m][n])
// A texel (kt, n4) unpacks to QV4 vectors of 4 rows n at one k each, so the inner step is an
// outer product as in the f32 block kernels: acc[m][n4] += A[m][k] * codes(k, n4..n4+4), one
// vec4 FMA per 4 weights and row of A, with each texel unpacked once for TM rows. Per scale
// group the partial sums are scaled (and zero-point corrected with the group's sum of A) as a
// vec4 of the 4 rows' scales. An invocation owns TM rows of A by TN4 texel columns (TM * TN4
// <= 8). xv() comes from a_buffer/a_texture, wk() from w_kn_buffer/w_kn_texture.
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_bs: u32, a_rs: u32, a_ks: u32, kts: u32,
    group_kt: u32, ngroups: u32, zoff: u32, has_bias: u32,
    has_res: u32, n4: u32, _p0: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> qm: array<u32>;
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> c: array<f32>;

// Scales (or zero points) of rows 4 n4 .. 4 n4 + 4 for group g, clamped at the last row.
fn scale4(n4: u32, g: u32) -> vec4<f32> {
    let l = p.n - 1u;
    let r = vec4<u32>(min(n4 * 4u, l), min(n4 * 4u + 1u, l), min(n4 * 4u + 2u, l), min(n4 * 4u + 3u, l));
    return vec4<f32>(q_scale(r.x * p.ngroups + g), q_scale(r.y * p.ngroups + g),
                     q_scale(r.z * p.ngroups + g), q_scale(r.w * p.ngroups + g));
}

fn zero4(n4: u32, g: u32) -> vec4<f32> {
    let l = p.n - 1u;
    let r = vec4<u32>(min(n4 * 4u, l), min(n4 * 4u + 1u, l), min(n4 * 4u + 2u, l), min(n4 * 4u + 3u, l));
    return vec4<f32>(q_zero(r.x * p.ngroups + g), q_zero(r.y * p.ngroups + g),
                     q_zero(r.z * p.ngroups + g), q_zero(r.w * p.ngroups + g));
}

// A values per texel row step: the x texel holding k = kt * QV4 + jj and the lane it starts at.
const XQ: u32 = select(4u, 2u, BITS == 16u);

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c0 = (wid.x * 64u + lid.x) * TN4;
    let m0 = wid.y * TM;
    let bat = wid.z;
    if (c0 >= p.n4) { return; }
    var acc: array<vec4<f32>, 8>;
    for (var g = 0u; g < p.ngroups; g++) {
        let kt0 = g * p.group_kt;
        let kt1 = min(kt0 + p.group_kt, p.kts);
        // Zeroed explicitly per group (see conv/qconv2d.wgsl: SwiftShader in Chromium kept the
        // previous group's sums in a loop-scoped array declared without an initializer).
        var part = array<vec4<f32>, 8>();
        var xs = array<f32, 8>();
        for (var kt = kt0; kt < kt1; kt++) {
            var wv: array<vec4<u32>, 4>;
            for (var cc = 0u; cc < TN4; cc++) { wv[cc] = wk(c0 + cc, kt); }
            let k0 = kt * QV4;
            for (var jj = 0u; jj < QV4; jj += XQ) {
                // One texel of A per row covers the next XQ values of k (f16: half a texel).
                let q = (k0 + jj) / 4u;
                let o = (k0 + jj) % 4u;
                var xq: array<vec4<f32>, 8>;
                for (var i = 0u; i < TM; i++) { xq[i] = xv(bat, m0 + i, q); }
                for (var e = 0u; e < XQ; e++) {
                    var cv: array<vec4<f32>, 4>;
                    for (var cc = 0u; cc < TN4; cc++) { cv[cc] = q_codes(wv[cc], jj + e); }
                    for (var i = 0u; i < TM; i++) {
                        let x = xq[i][o + e];
                        if (ZERO == 1u) { xs[i] += x; }
                        for (var cc = 0u; cc < TN4; cc++) {
                            part[i * TN4 + cc] = fma(vec4<f32>(x), cv[cc], part[i * TN4 + cc]);
                        }
                    }
                }
            }
        }
        for (var cc = 0u; cc < TN4; cc++) {
            let s = scale4(c0 + cc, g);
            let z = zero4(c0 + cc, g);
            for (var i = 0u; i < TM; i++) {
                acc[i * TN4 + cc] += s * (part[i * TN4 + cc] - z * xs[i]);
            }
        }
    }
    for (var i = 0u; i < TM; i++) {
        for (var cc = 0u; cc < TN4; cc++) { store4(bat, m0 + i, c0 + cc, acc[i * TN4 + cc]); }
    }
}
