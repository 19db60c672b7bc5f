// Weight columns for qgemv_kn.wgsl from a normalised texture holding the K-major codes as they
// are: int8 codes as rgba8snorm (asymmetric: rgba8unorm), f16 halves as rgba16float, one texel
// = the 4 rows n of one k. The texture unit converts to f32 (code / 127, code / 255, or the
// half), so no unpacking runs here; NORM undoes the normalisation once per scale group.
// Texel (n4 * QV4 + k % QV4, k / QV4) holds k: the K-major texels' bytes, viewed 4 or 8 at a time.
@group(0) @binding(2) var wt: texture_2d<f32>;

const NORM: f32 = select(select(1.0, 127.0, BITS == 8u && ZERO == 0u), 255.0, BITS == 8u && ZERO == 1u);

fn wn(n4: u32, k: u32) -> vec4<f32> {
    return textureLoad(wt, vec2<u32>(min(n4, p.n4 - 1u) * QV4 + k % QV4, k / QV4), 0);
}

fn col_fma(n4: u32, kt: u32, xa: vec4<f32>, xb: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    let k0 = kt * QV4;
    var a = fma(vec4<f32>(xa.x), wn(n4, k0), acc);
    a = fma(vec4<f32>(xa.y), wn(n4, k0 + 1u), a);
    if (QV4 > 2u) {
        a = fma(vec4<f32>(xa.z), wn(n4, k0 + 2u), a);
        a = fma(vec4<f32>(xa.w), wn(n4, k0 + 3u), a);
    }
    return a;
}
