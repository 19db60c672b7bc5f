// Input of the texture conv kernels: x copied per run into an r32float texture, texel
// (ix, (b * cin + c) * h + iy). Reads p (conv Params) and the kernel's `xt` binding.

// Input value at (iy, ix) of the plane starting at texture row `row0`; 0 in the padding.
fn xval(row0: i32, iy: i32, ix: i32) -> f32 {
    let inside = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
    let v = textureLoad(xt, vec2<i32>(clamp(ix, 0, i32(p.w) - 1), row0 + clamp(iy, 0, i32(p.h) - 1)), 0).x;
    return select(0.0, v, inside);
}

// Top-left input coordinate (iy, ix) of output pixel `pix` (clamped to the last pixel).
fn origin(pix: u32) -> vec2<i32> {
    let q = min(pix, p.oh * p.ow - 1u);
    return vec2<i32>(i32((q / p.ow) * p.stride_h) - i32(p.pad_t), i32((q % p.ow) * p.stride_w) - i32(p.pad_l));
}
