enable f16;
// Weight columns for qgemv_kn.wgsl from f16 weights read as f16 (adapters with `shader-f16`):
// the K-major texels' halves as vec4<f16> (the 4 rows n of one k), converted with one vector
// conversion instead of the bit unpacking adapters without the feature use.
@group(0) @binding(2) var<storage, read_write> wh: array<vec4<f16>>;

const NORM: f32 = 1.0;

fn wn(n4: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(wh[((k / 2u) * p.n4 + min(n4, p.n4 - 1u)) * 2u + (k & 1u)]);
}

fn col_fma(n4: u32, kt: u32, xa: vec4<f32>, xb: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    let k0 = kt * 2u;
    return fma(vec4<f32>(xa.y), wn(n4, k0 + 1u), fma(vec4<f32>(xa.x), wn(n4, k0), acc));
}
