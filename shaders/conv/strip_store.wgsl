// Scalar epilogue store of conv_strip_tex.wgsl (any output width).
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// act(v + bias + residual) for the n valid outputs from flat output index o of channel co.
fn store(co: u32, o: u32, n: u32, lo: vec4<f32>, hi: vec4<f32>) {
    var bv = 0.0;
    if (p.has_bias != 0u) { bv = bias[co]; }
    for (var e = 0u; e < PX; e++) {
        if (e >= n) { return; }
        var v = select(hi[e & 3u], lo[e & 3u], e < 4u) + bv;
        if (p.has_res != 0u) { v += res[o + e]; }
        y[o + e] = activate(v);
    }
}
