// Kept values of a sparse weight as stored (`ops/sparse.rs`): VALS 0 f32 (one per word), 1 f16
// (two per word, low half first), 2 i8 (four per word, low byte first) times the row's f32
// scale. The kernel declares `sv` (values, u32 words) and `ss` (row scales); s_half is in
// half.wgsl.

// Stored value j (i8: the code; the row scale is applied once per output by s_scale).
fn s_val(j: u32) -> f32 {
    if (VALS == 0u) { return bitcast<f32>(sv[j]); }
    if (VALS == 1u) { return s_half((sv[j >> 1u] >> ((j & 1u) * 16u)) & 0xffffu); }
    return f32(bitcast<i32>(sv[j >> 2u] << ((3u - (j & 3u)) * 8u)) >> 24u);
}

// The scale of weight row n (1 unless i8 values).
fn s_scale(n: u32) -> f32 {
    if (VALS == 2u) { return ss[n]; }
    return 1.0;
}
