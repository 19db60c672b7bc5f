// f32 GEMV for GPUs with subgroups: one workgroup of 64 per output, the threads striding over
// K (consecutive threads read consecutive k, so a B row stored along K — the Linear layout —
// is read coalesced), each subgroup summing its lanes with subgroupAdd. The workgroup step then
// adds one value per subgroup instead of running a six-step tree with a barrier each (the
// f32 counterpart of quant/qgemv_sg.wgsl). Any strides, any K. Needs the adapter's subgroup
// feature (naga takes the builtins without an `enable` directive).
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

// One slot per invocation: subgroup leaders store their subgroup's sum, the others 0, so the
// result does not depend on the adapter's subgroup size.
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(subgroup_invocation_id) sg_lane: u32) {
    // Clamped rather than returned early: every invocation must reach subgroupAdd and the
    // barrier; the store below is skipped for the clamped ones.
    let n = min(wid.x, p.n - 1u);
    let m = min(wid.y, p.m - 1u);
    let bat = wid.z;
    let a0 = bat * p.a_bs + m * p.a_rs;
    let b0 = bat * p.b_bs + n * p.b_ns;
    var sum = 0.0;
    for (var kk = lid.x; kk < p.k; kk += 64u) {
        sum = fma(a[a0 + kk * p.a_ks], b[b0 + kk * p.b_ks], sum);
    }
    let total = subgroupAdd(sum);
    red[lid.x] = select(0.0, total, sg_lane == 0u);
    workgroupBarrier();
    if (lid.x == 0u && wid.x < p.n && wid.y < p.m) {
        var v = 0.0;
        for (var i = 0u; i < 64u; i++) { v += red[i]; }
        let o = (bat * p.m + m) * p.n + n;
        if (p.has_bias != 0u) { v += bias[n]; }
        if (p.has_res != 0u) { v += res[o]; }
        c[o] = activate(v);
    }
}
