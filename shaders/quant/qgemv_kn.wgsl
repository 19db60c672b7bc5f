// GEMV (one row of A per invocation) on a packed weight in the K-major layout (codes unpacked
// here from w_kn_buffer/w_kn_texture, or converted by the texture unit with w_kn_norm), written with
// named vec4 accumulators and one function per texel instead of indexed arrays: on CPU
// adapters (lavapipe) arrays indexed in loops live in memory, and this form ran faster. Each
// invocation owns TN4 (1, 2 or 4) texel columns (4 rows of W each); per texel of QV4 k it loads
// A once and issues QV4 vec4 FMAs per column. Scales and zero points as in qmatmul_kn.wgsl.
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

fn rows4(n4: u32, g: u32) -> vec4<u32> {
    let l = p.n - 1u;
    let b = n4 * 4u;
    return vec4<u32>(min(b, l), min(b + 1u, l), min(b + 2u, l), min(b + 3u, l)) * p.ngroups + vec4<u32>(g);
}

fn scale4(n4: u32, g: u32) -> vec4<f32> {
    let r = rows4(n4, g);
    return vec4<f32>(q_scale(r.x), q_scale(r.y), q_scale(r.z), q_scale(r.w));
}

fn zero4(n4: u32, g: u32) -> vec4<f32> {
    let r = rows4(n4, g);
    return vec4<f32>(q_zero(r.x), q_zero(r.y), q_zero(r.z), q_zero(r.w));
}

// The weight source defines col_fma (the FMAs of one texel column) and NORM (what its values
// are scaled by: 1 for codes unpacked here, 127 or 255 for snorm/unorm textures).

// acc + sum over the texel's QV4 k of A[k] * codes(k, 4 rows); xa holds A for the first 4 k
// (f16: 2), xb the next 4 (int4 only).
fn texel_fma(t: vec4<u32>, xa: vec4<f32>, xb: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    var a = fma(vec4<f32>(xa.x), q_codes(t, 0u), acc);
    a = fma(vec4<f32>(xa.y), q_codes(t, 1u), a);
    if (QV4 > 2u) {
        a = fma(vec4<f32>(xa.z), q_codes(t, 2u), a);
        a = fma(vec4<f32>(xa.w), q_codes(t, 3u), a);
    }
    if (QV4 > 4u) {
        a = fma(vec4<f32>(xb.x), q_codes(t, 4u), a);
        a = fma(vec4<f32>(xb.y), q_codes(t, 5u), a);
        a = fma(vec4<f32>(xb.z), q_codes(t, 6u), a);
        a = fma(vec4<f32>(xb.w), q_codes(t, 7u), a);
    }
    return a;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c0 = (wid.x * 64u + lid.x) * TN4;
    let m = wid.y;
    let bat = wid.z;
    if (c0 >= p.n4) { return; }
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    for (var g = 0u; g < p.ngroups; g++) {
        let kt0 = g * p.group_kt;
        let kt1 = min(kt0 + p.group_kt, p.kts);
        var p0 = vec4<f32>(0.0); var p1 = vec4<f32>(0.0); var p2 = vec4<f32>(0.0); var p3 = vec4<f32>(0.0);
        var xs = vec4<f32>(0.0);
        for (var kt = kt0; kt < kt1; kt++) {
            var xa: vec4<f32>;
            var xb = vec4<f32>(0.0);
            if (BITS == 16u) {
                let t = xv(bat, m, kt / 2u);
                xa = select(vec4<f32>(t.xy, 0.0, 0.0), vec4<f32>(t.zw, 0.0, 0.0), (kt & 1u) == 1u);
            } else if (BITS == 4u) {
                xa = xv(bat, m, kt * 2u);
                xb = xv(bat, m, kt * 2u + 1u);
            } else {
                xa = xv(bat, m, kt);
            }
            if (ZERO == 1u) { xs += xa + xb; }
            p0 = col_fma(c0, kt, xa, xb, p0);
            if (TN4 > 1u) { p1 = col_fma(c0 + 1u, kt, xa, xb, p1); }
            if (TN4 > 2u) {
                p2 = col_fma(c0 + 2u, kt, xa, xb, p2);
                p3 = col_fma(c0 + 3u, kt, xa, xb, p3);
            }
        }
        let x = (xs.x + xs.y) + (xs.z + xs.w);
        a0 += scale4(c0, g) * (NORM * p0 - zero4(c0, g) * x);
        if (TN4 > 1u) { a1 += scale4(c0 + 1u, g) * (NORM * p1 - zero4(c0 + 1u, g) * x); }
        if (TN4 > 2u) {
            a2 += scale4(c0 + 2u, g) * (NORM * p2 - zero4(c0 + 2u, g) * x);
            a3 += scale4(c0 + 3u, g) * (NORM * p3 - zero4(c0 + 3u, g) * x);
        }
    }
    store4(bat, m, c0, a0);
    if (TN4 > 1u) { store4(bat, m, c0 + 1u, a1); }
    if (TN4 > 2u) { store4(bat, m, c0 + 2u, a2); store4(bat, m, c0 + 3u, a3); }
}
