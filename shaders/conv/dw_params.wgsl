// Parameters of the strip depthwise kernels (`dw_pad_tex.wgsl`, `dwconv2d_strip.wgsl`). The
// input goes, zero-padded, into an rgba32float texture: plane `pl` (= b * c + channel) is a
// block of `hp` rows x `tw` texels (4 input columns per texel, padded column = ix + pad_l) at
// texel (pl / ppc * tw, pl % ppc * hp), so planes stack down and then across and neither
// texture side exceeds the device limit. Planes run along the grid's y (gy workgroups), then z.
struct DwParams {
    planes: u32, c: u32, h: u32, w: u32,
    oh: u32, ow: u32, pad_t: u32, pad_l: u32,
    tw: u32, hp: u32, ppc: u32, strips: u32,
    has_bias: u32, has_res: u32, gy: u32, _p1: u32,
}

// Texel of plane `pl` at (texel column tx, padded row r).
fn plane_texel(pl: u32, tx: u32, r: u32) -> vec2<u32> {
    return vec2<u32>((pl / p.ppc) * p.tw + tx, (pl % p.ppc) * p.hp + r);
}
