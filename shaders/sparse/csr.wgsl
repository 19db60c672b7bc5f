// CSR SpMV / SpMM on a constant [N, K] weight read as stored: one invocation per weight row n
// and TM rows of A; it walks indptr[n] .. indptr[n + 1], gathering A[m][indices[j]] for its
// rows, so only stored entries are multiplied (empty rows cost nothing, dense rows work too).
// i8 values are summed as codes and scaled once per output. s_val/s_scale: values.wgsl.
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_bs: u32, a_rs: u32, a_ks: u32, has_bias: u32,
    has_res: u32, _p0: u32, _p1: u32, _p2: u32,
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

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    let m0 = gid.y * TM;
    let bat = gid.z;
    if (n >= p.n || m0 >= p.m) { return; }
    var acc: array<f32, TM>;
    var base: array<u32, TM>;
    for (var t = 0u; t < TM; t++) {
        acc[t] = 0.0;
        base[t] = bat * p.a_bs + min(m0 + t, p.m - 1u) * p.a_rs;
    }
    let end = u32(ip[n + 1u]);
    for (var j = u32(ip[n]); j < end; j++) {
        let v = s_val(j);
        let col = u32(ix[j]) * p.a_ks;
        for (var t = 0u; t < TM; t++) { acc[t] += v * a[base[t] + col]; }
    }
    let sc = s_scale(n);
    for (var t = 0u; t < TM; t++) {
        let m = m0 + t;
        if (m < p.m) {
            let o = (bat * p.m + m) * p.n + n;
            var v = acc[t] * sc;
            if (p.has_bias != 0u) { v += bias[n]; }
            if (p.has_res != 0u) { v += res[o]; }
            c[o] = activate(v);
        }
    }
}
