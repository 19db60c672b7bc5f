// f32 products of conv1x1_gemm.wgsl: acc += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3 (4
// consecutive input channels), one FMA each.
fn dot4(w: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(w.w), x3, fma(vec4<f32>(w.z), x2, fma(vec4<f32>(w.y), x1, fma(vec4<f32>(w.x), x0, acc))));
}
