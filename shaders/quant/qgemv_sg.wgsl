// GEMV with a packed weight for GPUs with subgroups: as qgemv_wg.wgsl (a workgroup of 64 per
// output, threads striding over the row's texels with coalesced 16-byte loads), but each
// subgroup sums its lanes with subgroupAdd, so the workgroup-memory step adds one value per
// subgroup instead of running a six-step tree with a barrier each. Needs the adapter's
// subgroup feature (naga takes the builtins without an `enable` directive).
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_bs: u32, a_rs: u32, a_ks: u32, row_t: u32,
    group_t: u32, ngroups: u32, zoff: u32, has_bias: u32,
    has_res: u32, _p0: u32, _p1: u32, _p2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> qm: array<u32>;
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> c: array<f32>;

// One slot per invocation: subgroup leaders store their subgroup's sum, the others 0, so the
// result does not depend on how invocations are grouped into subgroups.
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(subgroup_invocation_id) sg_lane: u32) {
    let n = wid.x;
    let m = wid.y;
    let bat = wid.z;
    var sum = 0.0;
    for (var t = lid.x; t < p.row_t; t += 64u) {
        let tex = wq(n, t);
        var d = 0.0;
        var xs = 0.0;
        for (var j = 0u; j < QV4; j++) {
            let x = xv(bat, m, t * QV4 + j);
            d += dot(x, q_codes(tex, j));
            if (ZERO == 1u) { xs += (x.x + x.y) + (x.z + x.w); }
        }
        let gi = n * p.ngroups + t / p.group_t;
        sum += q_scale(gi) * (d - q_zero(gi) * xs);
    }
    let total = subgroupAdd(sum);
    red[lid.x] = select(0.0, total, sg_lane == 0u);
    workgroupBarrier();
    if (lid.x == 0u && n < p.n && m < p.m) {
        var v = 0.0;
        for (var i = 0u; i < 64u; i++) { v += red[i]; }
        let o = (bat * p.m + m) * p.n + n;
        if (p.has_bias != 0u) { v += bias[o % p.n]; }
        if (p.has_res != 0u) { v += res[o]; }
        c[o] = activate(v);
    }
}
