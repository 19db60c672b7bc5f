// Pointwise GEMM operand X straight from storage as aligned vec4s (HW a multiple of 4, so a
// vec4 never straddles two channels): no per-run copy, and the residual and output move as
// vec4s too. On lavapipe a storage access costs a loop over the SIMD lanes whatever its width,
// so vec4 accesses carry four values for the price of one.
@group(0) @binding(0) var<uniform> p: PwParams;
@group(0) @binding(1) var wt: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> y: array<vec4<f32>>;

// Texel `c4` (4 pixels) of X row `row` (= image * cin + channel), clamped to the row.
fn x_at(c4: u32, row: u32) -> vec4<f32> {
    return x[row * p.hw4 + min(c4, p.hw4 - 1u)];
}

fn store4(b: u32, co: u32, c4: u32, v: vec4<f32>) {
    if (co >= p.cout || c4 >= p.hw4) { return; }
    var s = v;
    if (p.has_bias != 0u) { s += vec4<f32>(bias[co]); }
    let o = (b * p.cout + co) * p.hw4 + c4;
    if (p.has_res != 0u) { s += res[o]; }
    y[o] = vec4<f32>(activate(s.x), activate(s.y), activate(s.z), activate(s.w));
}
