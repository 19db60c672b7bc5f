enable f16;
// The product step of the f16-product ("f16c") kernels, for adapters with `shader-f16` and
// sessions that allow reduced precision: a run of 4 terms w[j] * x_j (j = 0..4, each x_j a
// vec4 of outputs) multiplied and summed in f16 (vec4<f16> FMAs: twice the f32 rate on Mali,
// Adreno and Apple GPUs), returned in f32 for the caller to add to its f32 accumulator. So f16
// rounding touches each term a bounded number of times (operands, the first product, 3 FMAs)
// and the long sum stays f32: the error grows like sqrt(K) * 2^-11 of a term, not K * 2^-11.
// Values past f16's range (|x| > 65504) become infinite: the caller opted in.
fn dot4h(w: vec4<f16>, x0: vec4<f16>, x1: vec4<f16>, x2: vec4<f16>, x3: vec4<f16>) -> vec4<f32> {
    return vec4<f32>(fma(vec4<f16>(w.w), x3, fma(vec4<f16>(w.z), x2, fma(vec4<f16>(w.y), x1, vec4<f16>(w.x) * x0))));
}
