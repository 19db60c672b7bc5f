// GEMM (TM = 4 or 8 rows of A by TN4 = 1 or 2 texel columns per invocation) on a packed weight
// in the K-major layout, written out with named accumulators (arrays indexed in loops live in
// memory on CPU adapters). Per texel of QV4 k: TN4 weight texels and TM A texels are loaded,
// each weight vector is unpacked once and used by TM rows (outer product, one vec4 FMA per 4
// weights and row). Partial sums per scale group, then scale and zero-point correction as in
// qmatmul_kn.wgsl. Written out unrolled: no loops over rows or columns.
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

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// A for the texel's k: xa the first 4 (f16: 2, in .xy), xb the next 4 (int4).
fn xa_at(bat: u32, row: u32, kt: u32) -> vec4<f32> {
    if (BITS == 16u) {
        let t = xv(bat, row, kt / 2u);
        return select(vec4<f32>(t.xy, 0.0, 0.0), vec4<f32>(t.zw, 0.0, 0.0), (kt & 1u) == 1u);
    }
    if (BITS == 4u) { return xv(bat, row, kt * 2u); }
    return xv(bat, row, kt);
}

fn xb_at(bat: u32, row: u32, kt: u32) -> vec4<f32> {
    if (BITS == 4u) { return xv(bat, row, kt * 2u + 1u); }
    return vec4<f32>(0.0);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c0 = (wid.x * 64u + lid.x) * TN4;
    let m0 = wid.y * TM;
    let bat = wid.z;
    if (c0 >= p.n4) { return; }
    var a00 = vec4<f32>(0.0);
    var a01 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0);
    var a21 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0);
    var a31 = vec4<f32>(0.0);
    var a40 = vec4<f32>(0.0);
    var a41 = vec4<f32>(0.0);
    var a50 = vec4<f32>(0.0);
    var a51 = vec4<f32>(0.0);
    var a60 = vec4<f32>(0.0);
    var a61 = vec4<f32>(0.0);
    var a70 = vec4<f32>(0.0);
    var a71 = vec4<f32>(0.0);
    for (var g = 0u; g < p.ngroups; g++) {
        let kt0 = g * p.group_kt;
        let kt1 = min(kt0 + p.group_kt, p.kts);
        var p00 = vec4<f32>(0.0);
        var p01 = vec4<f32>(0.0);
        var p10 = vec4<f32>(0.0);
        var p11 = vec4<f32>(0.0);
        var p20 = vec4<f32>(0.0);
        var p21 = vec4<f32>(0.0);
        var p30 = vec4<f32>(0.0);
        var p31 = vec4<f32>(0.0);
        var p40 = vec4<f32>(0.0);
        var p41 = vec4<f32>(0.0);
        var p50 = vec4<f32>(0.0);
        var p51 = vec4<f32>(0.0);
        var p60 = vec4<f32>(0.0);
        var p61 = vec4<f32>(0.0);
        var p70 = vec4<f32>(0.0);
        var p71 = vec4<f32>(0.0);
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        var s2 = vec4<f32>(0.0);
        var s3 = vec4<f32>(0.0);
        var s4 = vec4<f32>(0.0);
        var s5 = vec4<f32>(0.0);
        var s6 = vec4<f32>(0.0);
        var s7 = vec4<f32>(0.0);
        var xa0 = vec4<f32>(0.0); var xb0 = vec4<f32>(0.0);
        var xa1 = vec4<f32>(0.0); var xb1 = vec4<f32>(0.0);
        var xa2 = vec4<f32>(0.0); var xb2 = vec4<f32>(0.0);
        var xa3 = vec4<f32>(0.0); var xb3 = vec4<f32>(0.0);
        var xa4 = vec4<f32>(0.0); var xb4 = vec4<f32>(0.0);
        var xa5 = vec4<f32>(0.0); var xb5 = vec4<f32>(0.0);
        var xa6 = vec4<f32>(0.0); var xb6 = vec4<f32>(0.0);
        var xa7 = vec4<f32>(0.0); var xb7 = vec4<f32>(0.0);
        for (var kt = kt0; kt < kt1; kt++) {
            let w0 = wk(c0, kt);
            var w1 = vec4<u32>(0u);
            if (TN4 > 1u) { w1 = wk(c0 + 1u, kt); }
            xa0 = xa_at(bat, m0 + 0u, kt); xb0 = xb_at(bat, m0 + 0u, kt);
            xa1 = xa_at(bat, m0 + 1u, kt); xb1 = xb_at(bat, m0 + 1u, kt);
            xa2 = xa_at(bat, m0 + 2u, kt); xb2 = xb_at(bat, m0 + 2u, kt);
            xa3 = xa_at(bat, m0 + 3u, kt); xb3 = xb_at(bat, m0 + 3u, kt);
            if (TM > 4u) { xa4 = xa_at(bat, m0 + 4u, kt); xb4 = xb_at(bat, m0 + 4u, kt); }
            if (TM > 4u) { xa5 = xa_at(bat, m0 + 5u, kt); xb5 = xb_at(bat, m0 + 5u, kt); }
            if (TM > 4u) { xa6 = xa_at(bat, m0 + 6u, kt); xb6 = xb_at(bat, m0 + 6u, kt); }
            if (TM > 4u) { xa7 = xa_at(bat, m0 + 7u, kt); xb7 = xb_at(bat, m0 + 7u, kt); }
            if (ZERO == 1u) {
                s0 += xa0 + xb0;
                s1 += xa1 + xb1;
                s2 += xa2 + xb2;
                s3 += xa3 + xb3;
                if (TM > 4u) { s4 += xa4 + xb4; }
                if (TM > 4u) { s5 += xa5 + xb5; }
                if (TM > 4u) { s6 += xa6 + xb6; }
                if (TM > 4u) { s7 += xa7 + xb7; }
            }
            {
                let u0 = q_codes(w0, 0u);
                p00 = fma(vec4<f32>(xa0.x), u0, p00);
                p10 = fma(vec4<f32>(xa1.x), u0, p10);
                p20 = fma(vec4<f32>(xa2.x), u0, p20);
                p30 = fma(vec4<f32>(xa3.x), u0, p30);
                if (TM > 4u) {
                    p40 = fma(vec4<f32>(xa4.x), u0, p40);
                    p50 = fma(vec4<f32>(xa5.x), u0, p50);
                    p60 = fma(vec4<f32>(xa6.x), u0, p60);
                    p70 = fma(vec4<f32>(xa7.x), u0, p70);
                }
                if (TN4 > 1u) {
                    let u1 = q_codes(w1, 0u);
                    p01 = fma(vec4<f32>(xa0.x), u1, p01);
                    p11 = fma(vec4<f32>(xa1.x), u1, p11);
                    p21 = fma(vec4<f32>(xa2.x), u1, p21);
                    p31 = fma(vec4<f32>(xa3.x), u1, p31);
                    if (TM > 4u) {
                        p41 = fma(vec4<f32>(xa4.x), u1, p41);
                        p51 = fma(vec4<f32>(xa5.x), u1, p51);
                        p61 = fma(vec4<f32>(xa6.x), u1, p61);
                        p71 = fma(vec4<f32>(xa7.x), u1, p71);
                    }
                }
            }
            {
                let u0 = q_codes(w0, 1u);
                p00 = fma(vec4<f32>(xa0.y), u0, p00);
                p10 = fma(vec4<f32>(xa1.y), u0, p10);
                p20 = fma(vec4<f32>(xa2.y), u0, p20);
                p30 = fma(vec4<f32>(xa3.y), u0, p30);
                if (TM > 4u) {
                    p40 = fma(vec4<f32>(xa4.y), u0, p40);
                    p50 = fma(vec4<f32>(xa5.y), u0, p50);
                    p60 = fma(vec4<f32>(xa6.y), u0, p60);
                    p70 = fma(vec4<f32>(xa7.y), u0, p70);
                }
                if (TN4 > 1u) {
                    let u1 = q_codes(w1, 1u);
                    p01 = fma(vec4<f32>(xa0.y), u1, p01);
                    p11 = fma(vec4<f32>(xa1.y), u1, p11);
                    p21 = fma(vec4<f32>(xa2.y), u1, p21);
                    p31 = fma(vec4<f32>(xa3.y), u1, p31);
                    if (TM > 4u) {
                        p41 = fma(vec4<f32>(xa4.y), u1, p41);
                        p51 = fma(vec4<f32>(xa5.y), u1, p51);
                        p61 = fma(vec4<f32>(xa6.y), u1, p61);
                        p71 = fma(vec4<f32>(xa7.y), u1, p71);
                    }
                }
            }
            if (QV4 > 2u) {
                let u0 = q_codes(w0, 2u);
                p00 = fma(vec4<f32>(xa0.z), u0, p00);
                p10 = fma(vec4<f32>(xa1.z), u0, p10);
                p20 = fma(vec4<f32>(xa2.z), u0, p20);
                p30 = fma(vec4<f32>(xa3.z), u0, p30);
                if (TM > 4u) {
                    p40 = fma(vec4<f32>(xa4.z), u0, p40);
                    p50 = fma(vec4<f32>(xa5.z), u0, p50);
                    p60 = fma(vec4<f32>(xa6.z), u0, p60);
                    p70 = fma(vec4<f32>(xa7.z), u0, p70);
                }
                if (TN4 > 1u) {
                    let u1 = q_codes(w1, 2u);
                    p01 = fma(vec4<f32>(xa0.z), u1, p01);
                    p11 = fma(vec4<f32>(xa1.z), u1, p11);
                    p21 = fma(vec4<f32>(xa2.z), u1, p21);
                    p31 = fma(vec4<f32>(xa3.z), u1, p31);
                    if (TM > 4u) {
                        p41 = fma(vec4<f32>(xa4.z), u1, p41);
                        p51 = fma(vec4<f32>(xa5.z), u1, p51);
                        p61 = fma(vec4<f32>(xa6.z), u1, p61);
                        p71 = fma(vec4<f32>(xa7.z), u1, p71);
                    }
                }
            }
            if (QV4 > 2u) {
                let u0 = q_codes(w0, 3u);
                p00 = fma(vec4<f32>(xa0.w), u0, p00);
                p10 = fma(vec4<f32>(xa1.w), u0, p10);
                p20 = fma(vec4<f32>(xa2.w), u0, p20);
                p30 = fma(vec4<f32>(xa3.w), u0, p30);
                if (TM > 4u) {
                    p40 = fma(vec4<f32>(xa4.w), u0, p40);
                    p50 = fma(vec4<f32>(xa5.w), u0, p50);
                    p60 = fma(vec4<f32>(xa6.w), u0, p60);
                    p70 = fma(vec4<f32>(xa7.w), u0, p70);
                }
                if (TN4 > 1u) {
                    let u1 = q_codes(w1, 3u);
                    p01 = fma(vec4<f32>(xa0.w), u1, p01);
                    p11 = fma(vec4<f32>(xa1.w), u1, p11);
                    p21 = fma(vec4<f32>(xa2.w), u1, p21);
                    p31 = fma(vec4<f32>(xa3.w), u1, p31);
                    if (TM > 4u) {
                        p41 = fma(vec4<f32>(xa4.w), u1, p41);
                        p51 = fma(vec4<f32>(xa5.w), u1, p51);
                        p61 = fma(vec4<f32>(xa6.w), u1, p61);
                        p71 = fma(vec4<f32>(xa7.w), u1, p71);
                    }
                }
            }
            if (QV4 > 4u) {
                let u0 = q_codes(w0, 4u);
                p00 = fma(vec4<f32>(xb0.x), u0, p00);
                p10 = fma(vec4<f32>(xb1.x), u0, p10);
                p20 = fma(vec4<f32>(xb2.x), u0, p20);
                p30 = fma(vec4<f32>(xb3.x), u0, p30);
                if (TM > 4u) {
                    p40 = fma(vec4<f32>(xb4.x), u0, p40);
                    p50 = fma(vec4<f32>(xb5.x), u0, p50);
                    p60 = fma(vec4<f32>(xb6.x), u0, p60);
                    p70 = fma(vec4<f32>(xb7.x), u0, p70);
                }
                if (TN4 > 1u) {
                    let u1 = q_codes(w1, 4u);
                    p01 = fma(vec4<f32>(xb0.x), u1, p01);
                    p11 = fma(vec4<f32>(xb1.x), u1, p11);
                    p21 = fma(vec4<f32>(xb2.x), u1, p21);
                    p31 = fma(vec4<f32>(xb3.x), u1, p31);
                    if (TM > 4u) {
                        p41 = fma(vec4<f32>(xb4.x), u1, p41);
                        p51 = fma(vec4<f32>(xb5.x), u1, p51);
                        p61 = fma(vec4<f32>(xb6.x), u1, p61);
                        p71 = fma(vec4<f32>(xb7.x), u1, p71);
                    }
                }
            }
            if (QV4 > 4u) {
                let u0 = q_codes(w0, 5u);
                p00 = fma(vec4<f32>(xb0.y), u0, p00);
                p10 = fma(vec4<f32>(xb1.y), u0, p10);
                p20 = fma(vec4<f32>(xb2.y), u0, p20);
                p30 = fma(vec4<f32>(xb3.y), u0, p30);
                if (TM > 4u) {
                    p40 = fma(vec4<f32>(xb4.y), u0, p40);
                    p50 = fma(vec4<f32>(xb5.y), u0, p50);
                    p60 = fma(vec4<f32>(xb6.y), u0, p60);
                    p70 = fma(vec4<f32>(xb7.y), u0, p70);
                }
                if (TN4 > 1u) {
                    let u1 = q_codes(w1, 5u);
                    p01 = fma(vec4<f32>(xb0.y), u1, p01);
                    p11 = fma(vec4<f32>(xb1.y), u1, p11);
                    p21 = fma(vec4<f32>(xb2.y), u1, p21);
                    p31 = fma(vec4<f32>(xb3.y), u1, p31);
                    if (TM > 4u) {
                        p41 = fma(vec4<f32>(xb4.y), u1, p41);
                        p51 = fma(vec4<f32>(xb5.y), u1, p51);
                        p61 = fma(vec4<f32>(xb6.y), u1, p61);
                        p71 = fma(vec4<f32>(xb7.y), u1, p71);
                    }
                }
            }
            if (QV4 > 4u) {
                let u0 = q_codes(w0, 6u);
                p00 = fma(vec4<f32>(xb0.z), u0, p00);
                p10 = fma(vec4<f32>(xb1.z), u0, p10);
                p20 = fma(vec4<f32>(xb2.z), u0, p20);
                p30 = fma(vec4<f32>(xb3.z), u0, p30);
                if (TM > 4u) {
                    p40 = fma(vec4<f32>(xb4.z), u0, p40);
                    p50 = fma(vec4<f32>(xb5.z), u0, p50);
                    p60 = fma(vec4<f32>(xb6.z), u0, p60);
                    p70 = fma(vec4<f32>(xb7.z), u0, p70);
                }
                if (TN4 > 1u) {
                    let u1 = q_codes(w1, 6u);
                    p01 = fma(vec4<f32>(xb0.z), u1, p01);
                    p11 = fma(vec4<f32>(xb1.z), u1, p11);
                    p21 = fma(vec4<f32>(xb2.z), u1, p21);
                    p31 = fma(vec4<f32>(xb3.z), u1, p31);
                    if (TM > 4u) {
                        p41 = fma(vec4<f32>(xb4.z), u1, p41);
                        p51 = fma(vec4<f32>(xb5.z), u1, p51);
                        p61 = fma(vec4<f32>(xb6.z), u1, p61);
                        p71 = fma(vec4<f32>(xb7.z), u1, p71);
                    }
                }
            }
            if (QV4 > 4u) {
                let u0 = q_codes(w0, 7u);
                p00 = fma(vec4<f32>(xb0.w), u0, p00);
                p10 = fma(vec4<f32>(xb1.w), u0, p10);
                p20 = fma(vec4<f32>(xb2.w), u0, p20);
                p30 = fma(vec4<f32>(xb3.w), u0, p30);
                if (TM > 4u) {
                    p40 = fma(vec4<f32>(xb4.w), u0, p40);
                    p50 = fma(vec4<f32>(xb5.w), u0, p50);
                    p60 = fma(vec4<f32>(xb6.w), u0, p60);
                    p70 = fma(vec4<f32>(xb7.w), u0, p70);
                }
                if (TN4 > 1u) {
                    let u1 = q_codes(w1, 7u);
                    p01 = fma(vec4<f32>(xb0.w), u1, p01);
                    p11 = fma(vec4<f32>(xb1.w), u1, p11);
                    p21 = fma(vec4<f32>(xb2.w), u1, p21);
                    p31 = fma(vec4<f32>(xb3.w), u1, p31);
                    if (TM > 4u) {
                        p41 = fma(vec4<f32>(xb4.w), u1, p41);
                        p51 = fma(vec4<f32>(xb5.w), u1, p51);
                        p61 = fma(vec4<f32>(xb6.w), u1, p61);
                        p71 = fma(vec4<f32>(xb7.w), u1, p71);
                    }
                }
            }
        }
        {
            let sc = scale4(c0 + 0u, g);
            let zc = zero4(c0 + 0u, g);
            a00 += sc * (p00 - zc * hsum(s0));
            a10 += sc * (p10 - zc * hsum(s1));
            a20 += sc * (p20 - zc * hsum(s2));
            a30 += sc * (p30 - zc * hsum(s3));
            if (TM > 4u) {
                a40 += sc * (p40 - zc * hsum(s4));
                a50 += sc * (p50 - zc * hsum(s5));
                a60 += sc * (p60 - zc * hsum(s6));
                a70 += sc * (p70 - zc * hsum(s7));
            }
        }
        if (TN4 > 1u) {
            let sc = scale4(c0 + 1u, g);
            let zc = zero4(c0 + 1u, g);
            a01 += sc * (p01 - zc * hsum(s0));
            a11 += sc * (p11 - zc * hsum(s1));
            a21 += sc * (p21 - zc * hsum(s2));
            a31 += sc * (p31 - zc * hsum(s3));
            if (TM > 4u) {
                a41 += sc * (p41 - zc * hsum(s4));
                a51 += sc * (p51 - zc * hsum(s5));
                a61 += sc * (p61 - zc * hsum(s6));
                a71 += sc * (p71 - zc * hsum(s7));
            }
        }
    }
    store4(bat, m0 + 0u, c0 + 0u, a00);
    store4(bat, m0 + 1u, c0 + 0u, a10);
    store4(bat, m0 + 2u, c0 + 0u, a20);
    store4(bat, m0 + 3u, c0 + 0u, a30);
    if (TM > 4u) { store4(bat, m0 + 4u, c0 + 0u, a40); }
    if (TM > 4u) { store4(bat, m0 + 5u, c0 + 0u, a50); }
    if (TM > 4u) { store4(bat, m0 + 6u, c0 + 0u, a60); }
    if (TM > 4u) { store4(bat, m0 + 7u, c0 + 0u, a70); }
    if (TN4 > 1u) { store4(bat, m0 + 0u, c0 + 1u, a01); }
    if (TN4 > 1u) { store4(bat, m0 + 1u, c0 + 1u, a11); }
    if (TN4 > 1u) { store4(bat, m0 + 2u, c0 + 1u, a21); }
    if (TN4 > 1u) { store4(bat, m0 + 3u, c0 + 1u, a31); }
    if (TM > 4u && TN4 > 1u) { store4(bat, m0 + 4u, c0 + 1u, a41); }
    if (TM > 4u && TN4 > 1u) { store4(bat, m0 + 5u, c0 + 1u, a51); }
    if (TM > 4u && TN4 > 1u) { store4(bat, m0 + 6u, c0 + 1u, a61); }
    if (TM > 4u && TN4 > 1u) { store4(bat, m0 + 7u, c0 + 1u, a71); }
}
