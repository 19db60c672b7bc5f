// Reduction of x over its reduced dims, for every output (an element of the kept dims).
// Kept and reduced dims arrive merged (adjacent dims of one kind are one dim), as extents and
// input strides; the output is row-major over the kept dims. KIND (prepended const, the
// `ReduceKind` order): 0 sum, 1 mean, 2 max, 3 min, 4 prod, 5 l1, 6 l2, 7 log-sum-exp,
// 8 sum of squares. ROW 0: one invocation per output walks its elements; ROW 1: a workgroup per
// output, each invocation a strided partial, then a tree in workgroup memory.
struct Params {
    n_out: u32, len: u32, krank: u32, rrank: u32,
    k_ext: array<vec4<u32>, 2>,
    k_st: array<vec4<u32>, 2>,
    r_ext: array<vec4<u32>, 2>,
    r_st: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<f32, WG>;

// Offset in x of output o's first element.
fn base_of(o: u32) -> u32 {
    var rem = o;
    var off = 0u;
    for (var d = i32(p.krank) - 1; d >= 0; d--) {
        let du = u32(d);
        let e = p.k_ext[du / 4u][du % 4u];
        off += (rem % e) * p.k_st[du / 4u][du % 4u];
        rem = rem / e;
    }
    return off;
}

// Offset of the r-th reduced element (row-major over the reduced dims) from an output's base.
fn red_off(r: u32) -> u32 {
    var rem = r;
    var off = 0u;
    for (var d = i32(p.rrank) - 1; d >= 0; d--) {
        let du = u32(d);
        let e = p.r_ext[du / 4u][du % 4u];
        off += (rem % e) * p.r_st[du / 4u][du % 4u];
        rem = rem / e;
    }
    return off;
}

// Infinities built at run time (`+ min(p.len, 0u)` is 0): a constant expression that is
// infinite is a shader-creation error in browsers (Tint), though naga accepts it.
fn neg_inf() -> f32 { return bitcast<f32>(0xff800000u + min(p.len, 0u)); }

fn init() -> f32 {
    switch KIND {
        case 2u, 7u: { return neg_inf(); }
        case 3u: { return bitcast<f32>(0x7f800000u + min(p.len, 0u)); }
        case 4u: { return 1.0; }
        default: { return 0.0; }
    }
}

// Folds element v into the accumulator (the first pass of log-sum-exp takes the max).
fn fold(a: f32, v: f32) -> f32 {
    switch KIND {
        case 2u, 7u: { return max(a, v); }
        case 3u: { return min(a, v); }
        case 4u: { return a * v; }
        case 5u: { return a + abs(v); }
        case 6u, 8u: { return a + v * v; }
        default: { return a + v; }
    }
}

// Combines two partials (of the first pass).
fn combine(a: f32, b: f32) -> f32 {
    switch KIND {
        case 2u, 7u: { return max(a, b); }
        case 3u: { return min(a, b); }
        case 4u: { return a * b; }
        default: { return a + b; }
    }
}

fn finish(a: f32) -> f32 {
    switch KIND {
        case 1u: { return a / f32(p.len); }
        case 6u: { return sqrt(a); }
        default: { return a; }
    }
}

// Tree over red[] with `combine` (or a sum when `sum`); every invocation gets the result.
fn tree(lid: u32, sum: bool) -> f32 {
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let b = red[lid + s];
            red[lid] = select(combine(red[lid], b), red[lid] + b, sum);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// One invocation's whole reduction of output o (ROW 0).
fn per_output(o: u32) -> f32 {
    let base = base_of(o);
    var a = init();
    for (var r = 0u; r < p.len; r++) { a = fold(a, x[base + red_off(r)]); }
    if (KIND == 7u) {
        let m = a;
        if (m == neg_inf()) { return m; }
        var s = 0.0;
        for (var r = 0u; r < p.len; r++) { s += exp(x[base + red_off(r)] - m); }
        return m + log(s);
    }
    return finish(a);
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    if (ROW == 0u) {
        // WG outputs per workgroup; no barrier on this path.
        let o = (wid.x + wid.y * nwg.x) * WG + lid;
        if (o < p.n_out) { y[o] = per_output(o); }
        return;
    }
    // Workgroup per output; the exit is uniform (one output per workgroup).
    let o = wid.x + wid.y * nwg.x;
    if (o >= p.n_out) { return; }
    let base = base_of(o);
    var a = init();
    for (var r = lid; r < p.len; r += WG) { a = fold(a, x[base + red_off(r)]); }
    red[lid] = a;
    workgroupBarrier();
    a = tree(lid, false);
    if (KIND == 7u) {
        let m = a;
        var s = 0.0;
        if (m != neg_inf()) {
            for (var r = lid; r < p.len; r += WG) { s += exp(x[base + red_off(r)] - m); }
        }
        red[lid] = s;
        workgroupBarrier();
        s = tree(lid, true);
        a = select(m + log(s), m, m == neg_inf());
    }
    if (lid == 0u) { y[o] = finish(a); }
}
