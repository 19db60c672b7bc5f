enable f16;
// f16 products of conv1x1_gemm.wgsl (adapters with `shader-f16`, sessions that allow reduced
// precision): per step of 4 input channels the weight texel and the 4 input texels are rounded
// to f16, the 4 products per output multiplied and summed as vec4<f16> (dot4_f16.wgsl), and
// that 4-term partial is added to the f32 accumulator, so the sum over input channels stays f32
// (error ~ sqrt(cin) * 2^-11 relative to the terms, not cin * 2^-11).
fn dot4(w: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    return acc + dot4h(vec4<f16>(w), vec4<f16>(x0), vec4<f16>(x1), vec4<f16>(x2), vec4<f16>(x3));
}
