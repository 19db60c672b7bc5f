// Register-blocked GEMM for any layout (transposes, K not a multiple of 4): each invocation
// computes a TM x TN block of C with scalar loads; TM/TN come from the prepended const header.
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
    let n0 = gid.x * TN;
    let m0 = gid.y * TM;
    let bat = gid.z;
    if (n0 >= p.n || m0 >= p.m || bat >= p.batch) { return; }
    var acc: array<f32, TM * TN>;
    var arow: array<u32, TM>;
    var bcol: array<u32, TN>;
    // Rows/columns past the edge are clamped to the last one and their results dropped at the store.
    for (var i = 0u; i < TM; i++) { arow[i] = bat * p.a_bs + min(m0 + i, p.m - 1u) * p.a_rs; }
    for (var j = 0u; j < TN; j++) { bcol[j] = bat * p.b_bs + min(n0 + j, p.n - 1u) * p.b_ns; }
    for (var kk = 0u; kk < p.k; kk++) {
        var av: array<f32, TM>;
        for (var i = 0u; i < TM; i++) { av[i] = a[arow[i] + kk * p.a_ks]; }
        for (var j = 0u; j < TN; j++) {
            let bv = b[bcol[j] + kk * p.b_ks];
            for (var i = 0u; i < TM; i++) { acc[i * TN + j] += av[i] * bv; }
        }
    }
    for (var i = 0u; i < TM; i++) {
        let row = m0 + i;
        if (row >= p.m) { break; }
        for (var j = 0u; j < TN; j++) {
            let col = n0 + j;
            if (col >= p.n) { break; }
            let o = (bat * p.m + row) * p.n + col;
            var v = acc[i * TN + j];
            if (p.has_bias != 0u) { v += bias[col]; }
            if (p.has_res != 0u) { v += res[o]; }
            c[o] = activate(v);
        }
    }
}
