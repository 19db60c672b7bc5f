// Group (and instance) normalisation: x [N, C, inner] with C in `groups` groups of `cpg`
// channels; one workgroup per (image, group) row of len = cpg * inner contiguous elements: mean,
// then the variance about it (two passes), then * scale[c] + bias[c] per channel.
struct Params { rows: u32, len: u32, inner: u32, cpg: u32, groups: u32, eps: f32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> scale: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
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
    let mean = reduce_sum(lid) / f32(p.len);
    var v = 0.0;
    for (var j = lid; j < p.len; j += WG) { let d = x[base + j] - mean; v += d * d; }
    red[lid] = v;
    workgroupBarrier();
    let rstd = inverseSqrt(reduce_sum(lid) / f32(p.len) + p.eps);
    let c0 = (row % p.groups) * p.cpg;
    for (var j = lid; j < p.len; j += WG) {
        let c = c0 + j / p.inner;
        y[base + j] = (x[base + j] - mean) * rstd * scale[c] + bias[c];
    }
}
