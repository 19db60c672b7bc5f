// CSR SpMV/SpMM, one workgroup of 64 per (weight row n, row of A): the threads stride over the
// row's stored entries (adjacent threads load adjacent indices and values) and reduce through
// workgroup memory. Workgroups: x + y * width = n (width in params), z = batch * M row.
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_bs: u32, a_rs: u32, a_ks: u32, has_bias: u32,
    has_res: u32, width: u32, _p1: u32, _p2: u32,
    _p3: u32, _p4: u32, _p5: u32, _p6: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> ip: array<i32>;
@group(0) @binding(3) var<storage, read_write> ix: array<i32>;
@group(0) @binding(4) var<storage, read_write> sv: array<u32>;
@group(0) @binding(5) var<storage, read_write> ss: array<f32>;
@group(0) @binding(6) var<storage, read_write> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> res: array<f32>;
@group(0) @binding(8) var<storage, read_write> c: array<f32>;

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = wid.x + wid.y * p.width;
    let row = wid.z;
    // Uniform per workgroup: the whole workgroup leaves together.
    if (n >= p.n) { return; }
    let bat = row / p.m;
    let m = row % p.m;
    let base = bat * p.a_bs + m * p.a_rs;
    var sum = 0.0;
    let end = u32(ip[n + 1u]);
    for (var j = u32(ip[n]) + lid.x; j < end; j += 64u) {
        sum += s_val(j) * a[base + u32(ix[j]) * p.a_ks];
    }
    red[lid.x] = sum;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid.x < s) { red[lid.x] += red[lid.x + s]; }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        let o = row * p.n + n;
        var v = red[0] * s_scale(n);
        if (p.has_bias != 0u) { v += bias[n]; }
        if (p.has_res != 0u) { v += res[o]; }
        c[o] = activate(v);
    }
}
