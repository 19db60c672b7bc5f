// vec4 epilogue store of conv_strip_tex.wgsl, for output widths that are multiples of 4: a
// strip starts at a multiple of 4 pixels (PX is 4 or 8), so with OW % 4 == 0 every flat
// output index o it stores from is a multiple of 4 and n is 4 or 8, and the 4 outputs go out
// as one 16-byte store (on lavapipe a storage access costs a loop over the SIMD lanes per
// access, so one vec4 store replaces four such loops). The residual is read the same way.
@group(0) @binding(4) var<storage, read_write> res: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> y: array<vec4<f32>>;

fn act4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(activate(v.x), activate(v.y), activate(v.z), activate(v.w));
}

// act(v + bias + residual) for the n (4 or 8) outputs from flat output index o of channel co.
fn store(co: u32, o: u32, n: u32, lo: vec4<f32>, hi: vec4<f32>) {
    var bv = 0.0;
    if (p.has_bias != 0u) { bv = bias[co]; }
    let q = o / 4u;
    var v = lo + vec4<f32>(bv);
    if (p.has_res != 0u) { v += res[q]; }
    y[q] = act4(v);
    if (PX > 4u && n > 4u) {
        var u = hi + vec4<f32>(bv);
        if (p.has_res != 0u) { u += res[q + 1u]; }
        y[q + 1u] = act4(u);
    }
}
