// Naive GEMM: one invocation per output element, any strides. The second reference kernel.
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_bs: u32, a_rs: u32, a_ks: u32, b_bs: u32,
    b_ks: u32, b_ns: u32, has_bias: u32, has_res: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row = gid.y;
    let bat = gid.z;
    if (col >= p.n || row >= p.m || bat >= p.batch) { return; }
    var acc = 0.0;
    let a0 = bat * p.a_bs + row * p.a_rs;
    let b0 = bat * p.b_bs + col * p.b_ns;
    for (var kk = 0u; kk < p.k; kk++) {
        acc += a[a0 + kk * p.a_ks] * b[b0 + kk * p.b_ks];
    }
    let o = (bat * p.m + row) * p.n + col;
    if (p.has_bias != 0u) { acc += bias[col]; }
    if (p.has_res != 0u) { acc += res[o]; }
    c[o] = activate(acc);
}
