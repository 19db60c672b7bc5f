// Lp normalisation (P = 1 or 2, prepended const) along one axis of x viewed as
// [outer][len][inner]: one workgroup per (outer, inner) row, a strided pass for the norm, one to
// write x / norm (0 where the norm is 0: the row is all zeros).
struct Params { rows: u32, len: u32, inner: u32, _p0: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = (row / p.inner) * p.len * p.inner + row % p.inner;
    var s = 0.0;
    for (var j = lid; j < p.len; j += WG) {
        let v = x[base + j * p.inner];
        s += select(v * v, abs(v), P == 1u);
    }
    red[lid] = s;
    workgroupBarrier();
    s = reduce_sum(lid);
    let n = select(sqrt(s), s, P == 1u);
    for (var j = lid; j < p.len; j += WG) {
        let k = base + j * p.inner;
        y[k] = select(x[k] / n, 0.0, n == 0.0);
    }
}
