// y = permute(x): for each output element, decode its coordinates and gather from x with the
// input strides reordered by the permutation (up to 8 dims).
struct Params {
    n: u32, rank: u32, _p0: u32, _p1: u32,
    shape: array<vec4<u32>, 2>,
    in_st: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= p.n) { return; }
    var rem = i;
    var src = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let du = u32(d);
        let extent = p.shape[du / 4u][du % 4u];
        src += (rem % extent) * p.in_st[du / 4u][du % 4u];
        rem = rem / extent;
    }
    y[i] = x[src];
}
