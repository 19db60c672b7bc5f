// Shared dequantiser of packed weights (layout: src/ops/quant.rs). Needs the consts BITS (4, 8:
// codes; 16: f16 halves), SCALE (0 f32, 1 f16, 2 pow2 shift n: scale 2^-n, 4 none) and ZERO
// (asymmetric codes with u8 zero points), and a binding `qm`: the scales' raw words, then the
// zero points' bytes from word p.zoff. A weight value is (code - zero) * scale.

// f16 bits (low 16 of each lane) to f32, without unpack2x16float (which needs a downlevel
// capability some GL ES adapters lack). Stored halves are finite (checked at load).
fn q_half4(h: vec4<u32>) -> vec4<f32> {
    let mag = h & vec4<u32>(0x7fffu);
    let sign = (h & vec4<u32>(0x8000u)) << vec4<u32>(16u);
    let normal = (mag << vec4<u32>(13u)) + vec4<u32>(0x38000000u);
    let sub = bitcast<vec4<u32>>(vec4<f32>(mag) * 5.9604645e-8);
    return bitcast<vec4<f32>>(sign | select(normal, sub, mag < vec4<u32>(0x400u)));
}

fn q_byte(i: u32) -> u32 {
    return (qm[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

// Scale number i (row * ngroups + group).
fn q_scale(i: u32) -> f32 {
    switch SCALE {
        case 0u: { return bitcast<f32>(qm[i]); }
        case 1u: { return q_half4(vec4<u32>(qm[i >> 1u] >> ((i & 1u) * 16u)) & vec4<u32>(0xffffu)).x; }
        case 2u: { return exp2(-f32(bitcast<i32>(q_byte(i) << 24u) >> 24u)); }
        default: { return 1.0; }
    }
}

// Zero point number i (0 for symmetric codes).
fn q_zero(i: u32) -> f32 {
    if (ZERO == 0u) { return 0.0; }
    return f32(q_byte(p.zoff * 4u + i));
}

// Values per texel / 4: how many vec4s one 16-byte texel unpacks to.
const QV4: u32 = select(select(8u, 4u, BITS == 8u), 2u, BITS == 16u);

// The j-th four values (j < QV4) of texel t, as codes (f16 weights: the values).
// Symmetric codes are sign-extended; nibbles run from the low end of each byte.
fn q_codes(t: vec4<u32>, j: u32) -> vec4<f32> {
    if (BITS == 8u) {
        let w = t[j];
        if (ZERO == 1u) {
            return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u));
        }
        return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
    }
    if (BITS == 4u) {
        let w = t[j >> 1u] >> ((j & 1u) * 16u);
        if (ZERO == 1u) {
            return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
        }
        return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(28u, 24u, 20u, 16u)) >> vec4<u32>(28u));
    }
    let a = t[j * 2u];
    let b = t[j * 2u + 1u];
    return q_half4(vec4<u32>(a & 0xffffu, a >> 16u, b & 0xffffu, b >> 16u));
}
