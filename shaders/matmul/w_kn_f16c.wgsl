enable f16;
// Weight columns for qgemv_kn.wgsl from f16 weights read as f16 and multiplied in f16
// (adapters with `shader-f16`, sessions that allow reduced precision): A's two values of a
// K-major texel are rounded to f16, the two products of each column are formed and added with
// one vec4<f16> multiply and one FMA, and that 2-term partial joins the f32 accumulator. The
// weight is already f16, so only A's rounding, the product and one addition are new error
// (w_kn_f16.wgsl converts the weight to f32 instead and multiplies in f32).
@group(0) @binding(2) var<storage, read_write> wh: array<vec4<f16>>;

const NORM: f32 = 1.0;

fn wh4(n4: u32, k: u32) -> vec4<f16> {
    return wh[((k / 2u) * p.n4 + min(n4, p.n4 - 1u)) * 2u + (k & 1u)];
}

fn col_fma(n4: u32, kt: u32, xa: vec4<f32>, xb: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    let k0 = kt * 2u;
    let x = vec2<f16>(xa.xy);
    let h = fma(vec4<f16>(x.y), wh4(n4, k0 + 1u), vec4<f16>(x.x) * wh4(n4, k0));
    return acc + vec4<f32>(h);
}
