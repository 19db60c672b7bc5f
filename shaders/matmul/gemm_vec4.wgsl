// Register-blocked GEMM on the "NT" layout with vec4 loads along K:
//   C[b][m][n] = sum_k A[b][m][k] * B[b][n][k]     (K % 4 == 0; B is packed at load if needed)
// Each invocation computes TM rows x TN columns; each step loads TM + TN vec4s and issues
// TM * TN vec4 FMAs, so loads per FMA fall as the block grows. TM = 1 is the GEMV variant.
struct Params {
    m: u32, n: u32, k4: u32, batch: u32,
    a_bs4: u32, b_bs4: u32, has_bias: u32, has_res: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n0 = gid.x * TN;
    let m0 = gid.y * TM;
    let bat = gid.z;
    if (n0 >= p.n || m0 >= p.m || bat >= p.batch) { return; }
    var acc: array<vec4<f32>, TM * TN>;
    var arow: array<u32, TM>;
    var bcol: array<u32, TN>;
    for (var i = 0u; i < TM; i++) { arow[i] = bat * p.a_bs4 + min(m0 + i, p.m - 1u) * p.k4; }
    for (var j = 0u; j < TN; j++) { bcol[j] = bat * p.b_bs4 + min(n0 + j, p.n - 1u) * p.k4; }
    for (var kk = 0u; kk < p.k4; kk++) {
        var av: array<vec4<f32>, TM>;
        for (var i = 0u; i < TM; i++) { av[i] = a[arow[i] + kk]; }
        for (var j = 0u; j < TN; j++) {
            let bv = b[bcol[j] + kk];
            for (var i = 0u; i < TM; i++) { acc[i * TN + j] = fma(av[i], bv, acc[i * TN + j]); }
        }
    }
    for (var i = 0u; i < TM; i++) {
        let row = m0 + i;
        if (row >= p.m) { break; }
        for (var j = 0u; j < TN; j++) {
            let col = n0 + j;
            if (col >= p.n) { break; }
            let o = (bat * p.m + row) * p.n + col;
            let s = acc[i * TN + j];
            var v = (s.x + s.y) + (s.z + s.w);
            if (p.has_bias != 0u) { v += bias[col]; }
            if (p.has_res != 0u) { v += res[o]; }
            c[o] = activate(v);
        }
    }
}
