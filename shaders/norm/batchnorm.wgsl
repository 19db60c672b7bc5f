// Inference batch norm on channel axis 1: y = (x - mean) / sqrt(var + eps) * gamma + beta.
struct Params { n: u32, channels: u32, inner: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> variance: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= p.n) { return; }
    let c = (i / p.inner) % p.channels;
    let scale = gamma[c] / sqrt(variance[c] + p.eps);
    y[i] = activate((x[i] - mean[c]) * scale + beta[c]);
}
