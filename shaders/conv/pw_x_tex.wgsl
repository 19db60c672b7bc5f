// Pointwise GEMM operand X through a texture: the input copied each run by to_texture.wgsl
// into rgba32float texels of 4 consecutive pixels of one (image, channel) row, zero past HW, so
// any HW works; outputs are stored one scalar at a time.
@group(0) @binding(0) var<uniform> p: PwParams;
@group(0) @binding(1) var wt: texture_2d<f32>;
@group(0) @binding(2) var xt: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// Texel `c4` (4 pixels) of X row `row` (= image * cin + channel); past HW: the last texel,
// whose results are never stored.
fn x_at(c4: u32, row: u32) -> vec4<f32> {
    return textureLoad(xt, vec2<u32>(min(c4, p.hw4 - 1u), row), 0);
}

// act(v + bias + residual) for pixels 4 * c4 .. 4 * c4 + 4 of output channel `co` of image `b`.
fn store4(b: u32, co: u32, c4: u32, v: vec4<f32>) {
    if (co >= p.cout || c4 >= p.hw4) { return; }
    var bv = 0.0;
    if (p.has_bias != 0u) { bv = bias[co]; }
    let o0 = (b * p.cout + co) * p.hw + c4 * 4u;
    for (var e = 0u; e < 4u; e++) {
        if (c4 * 4u + e >= p.hw) { return; }
        var s = v[e] + bv;
        if (p.has_res != 0u) { s += res[o0 + e]; }
        y[o0 + e] = activate(s);
    }
}
