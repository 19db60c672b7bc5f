// f16 bits to f32 for the sparse kernels' stored f16 values.

// f16 bits (low 16) to f32 without unpack2x16float (see q_half4 in quant/dequant.wgsl).
fn s_half(h: u32) -> f32 {
    let mag = h & 0x7fffu;
    let sign = (h & 0x8000u) << 16u;
    let normal = (mag << 13u) + 0x38000000u;
    let sub = bitcast<u32>(f32(mag) * 5.9604645e-8);
    return bitcast<f32>(sign | select(normal, sub, mag < 0x400u));
}
