// Global average pooling: [N, C, H, W] -> [N, C, 1, 1], one invocation per (n, c) plane.
struct Params { planes: u32, hw: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 64u);
    if (i >= p.planes) { return; }
    var s = 0.0;
    for (var j = 0u; j < p.hw; j++) { s += x[i * p.hw + j]; }
    y[i] = activate(s / f32(p.hw));
}
