// Softmax along one axis of x viewed as [outer][len][inner]: one workgroup per (outer, inner) row,
// a strided pass for the max, one for the sum of exp, one to write; reductions in workgroup memory.
// LOG (prepended const) 1 writes log-softmax, x - max - log(sum), instead.
struct Params { rows: u32, len: u32, inner: u32, _p0: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    // Uniform exit: every invocation of the workgroup takes the same branch.
    if (row >= p.rows) { return; }
    let base = (row / p.inner) * p.len * p.inner + row % p.inner;
    // -FLT_MAX by its bits: the decimal -3.4028235e38 lies past f32's range before rounding,
    // which browsers (Tint) reject as a shader-creation error and naga accepts.
    var m = bitcast<f32>(0xff7fffffu);
    for (var j = lid; j < p.len; j += WG) { m = max(m, x[base + j * p.inner]); }
    red[lid] = m;
    workgroupBarrier();
    m = reduce_max(lid);
    var s = 0.0;
    for (var j = lid; j < p.len; j += WG) { s += exp(x[base + j * p.inner] - m); }
    red[lid] = s;
    workgroupBarrier();
    s = reduce_sum(lid);
    let inv = 1.0 / s;
    let ls = log(s);
    for (var j = lid; j < p.len; j += WG) {
        let k = base + j * p.inner;
        if (LOG == 1u) {
            y[k] = (x[k] - m) - ls;
        } else {
            y[k] = exp(x[k] - m) * inv;
        }
    }
}
