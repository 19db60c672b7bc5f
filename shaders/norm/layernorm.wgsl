// Layer normalisation over the trailing `len` elements of each row, then * gamma + beta (beta
// only when has_beta: ONNX's bias input is optional, and a dummy buffer stands in for it).
// One workgroup per row; mean first, then the variance about it (two passes: no cancellation).
// RMS (prepended const) 1 is RMS normalisation: no mean, x / sqrt(mean(x^2) + eps) * gamma.
struct Params { rows: u32, len: u32, eps: f32, has_beta: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.len;
    var s = 0.0;
    for (var j = lid; j < p.len; j += WG) { s += x[base + j]; }
    red[lid] = s;
    workgroupBarrier();
    let mean = select(reduce_sum(lid) / f32(p.len), 0.0, RMS == 1u);
    var v = 0.0;
    for (var j = lid; j < p.len; j += WG) { let d = x[base + j] - mean; v += d * d; }
    red[lid] = v;
    workgroupBarrier();
    let rstd = inverseSqrt(reduce_sum(lid) / f32(p.len) + p.eps);
    for (var j = lid; j < p.len; j += WG) {
        let b = select(0.0, beta[j], p.has_beta != 0u);
        y[base + j] = activate((x[base + j] - mean) * rstd * gamma[j] + b);
    }
}
