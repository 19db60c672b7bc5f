// Workgroup-tiled GEMM for GPUs with fast workgroup memory (discrete, integrated and mobile
// GPUs): a WG x WG workgroup computes a (WG * TM) x (WG * TN) block of C. Per step of BK along
// K it stages a BM x BK tile of A and a BK x BN tile of B in workgroup memory — each element
// loaded from storage once per workgroup instead of once per invocation, neighbouring
// invocations loading neighbouring elements — then each invocation accumulates TM x TN outputs
// in registers from the tiles. Invocation (x, y) owns rows y + i * WG and columns x + j * WG, so
// neighbouring invocations read neighbouring tile words (no bank conflicts on the B tile) and
// store neighbouring outputs. Any layout (strides), any M, N, K: tiles are zero-filled past the
// edges. TM, TN, WG, BK come from the prepended const header.
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

const BM: u32 = WG * TM;
const BN: u32 = WG * TN;
const THREADS: u32 = WG * WG;
// A tile stored k-major ([BK][BM]) and B tile [BK][BN]: the inner loop reads one row of each.
var<workgroup> ta: array<f32, BK * BM>;
var<workgroup> tb: array<f32, BK * BN>;

@compute @workgroup_size(WG, WG, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>) {
    let bat = wid.z;
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tid = lid.y * WG + lid.x;
    let abase = bat * p.a_bs;
    let bbase = bat * p.b_bs;
    var acc: array<f32, TM * TN>;
    for (var i = 0u; i < TM * TN; i++) { acc[i] = 0.0; }
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // Consecutive invocations take consecutive k of one row of A (contiguous when A is
        // row-major) and consecutive columns of one row of B (contiguous when B is [K, N]).
        for (var e = tid; e < BM * BK; e += THREADS) {
            let mi = e / BK;
            let ki = e % BK;
            let gm = m0 + mi;
            let gk = k0 + ki;
            var v = 0.0;
            if (gm < p.m && gk < p.k) { v = a[abase + gm * p.a_rs + gk * p.a_ks]; }
            ta[ki * BM + mi] = v;
        }
        for (var e = tid; e < BK * BN; e += THREADS) {
            let ki = e / BN;
            let ni = e % BN;
            let gn = n0 + ni;
            let gk = k0 + ki;
            var v = 0.0;
            if (gn < p.n && gk < p.k) { v = b[bbase + gk * p.b_ks + gn * p.b_ns]; }
            tb[ki * BN + ni] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<f32, TM>;
            var bv: array<f32, TN>;
            for (var i = 0u; i < TM; i++) { av[i] = ta[kk * BM + lid.y + i * WG]; }
            for (var j = 0u; j < TN; j++) { bv[j] = tb[kk * BN + lid.x + j * WG]; }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) { acc[i * TN + j] += av[i] * bv[j]; }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        let row = m0 + lid.y + i * WG;
        if (row >= p.m) { break; }
        for (var j = 0u; j < TN; j++) {
            let col = n0 + lid.x + j * WG;
            if (col >= p.n) { continue; }
            let o = (bat * p.m + row) * p.n + col;
            var v = acc[i * TN + j];
            if (p.has_bias != 0u) { v += bias[col]; }
            if (p.has_res != 0u) { v += res[o]; }
            c[o] = activate(v);
        }
    }
}
