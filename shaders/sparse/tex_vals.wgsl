// Sparse weights on the texture path (`ops/sparse.rs`, "texture layout"): parts re-laid at
// upload into rgba32uint textures w texels wide (texel t at (t % w, t / w)), values in their
// stored type: VALS 0 f32 bits (4 per texel), 1 f16 (8 per texel, low half first), 2 i8 codes
// (16 per texel, low byte first) times the row's f32 scale. Lavapipe turns texture loads into
// vector gathers where storage loads with computed offsets go lane by lane; real GPUs read
// them through the texture cache. The kernel declares `tv` (values texture) and `ss` (row
// scales).

// Texel t of a part: a part is one row when it has at most 2048 texels (`sparse::TEX_WIDTH`),
// else rows of 2048, so t % 2048 and t / 2048 address both. A shift and a mask, not a
// division by the texture's width read at run time: integer division has no vector
// instruction on CPU adapters, so lavapipe divided lane by lane, twice per load.
fn t_at(t: u32) -> vec2<u32> {
    return vec2<u32>(t & 2047u, t >> 11u);
}

// The 4 values starting at value index 4 * q (a CSR group of 4 entries, or one row of a
// 4-wide BSR block).
fn t_vals4(q: u32) -> vec4<f32> {
    if (VALS == 0u) {
        return bitcast<vec4<f32>>(textureLoad(tv, t_at(q), 0));
    }
    if (VALS == 1u) {
        let t = textureLoad(tv, t_at(q >> 1u), 0);
        let w = select(t.xy, t.zw, (q & 1u) == 1u);
        return vec4<f32>(s_half(w.x & 0xffffu), s_half(w.x >> 16u),
                         s_half(w.y & 0xffffu), s_half(w.y >> 16u));
    }
    let w = textureLoad(tv, t_at(q >> 2u), 0)[q & 3u];
    let s = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u),
                      bitcast<i32>(w << 8u), bitcast<i32>(w));
    return vec4<f32>(s >> vec4<u32>(24u));
}

// The scale of weight row n (1 unless i8 values).
fn t_scale(n: u32) -> f32 {
    if (VALS == 2u) { return ss[n]; }
    return 1.0;
}
