// Copies one concat input, viewed as [outer][inner], into columns [offset, offset + inner) of the
// output viewed as [outer][out_inner]. One dispatch per input.
struct Params { n: u32, inner: u32, out_inner: u32, offset: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= p.n) { return; }
    let o = i / p.inner;
    y[o * p.out_inner + p.offset + i % p.inner] = x[i];
}
