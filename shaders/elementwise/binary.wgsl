// a (op) b with numpy broadcasting over up to 8 dims (strides are 0 along broadcast dims).
// OP: 0 add, 1 sub, 2 mul, 3 div (prepended const). The activation epilogue applies after.
struct Params {
    n: u32, rank: u32, same: u32, _p0: u32,
    shape: array<vec4<u32>, 2>,
    a_st: array<vec4<u32>, 2>,
    b_st: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn apply(u: f32, v: f32) -> f32 {
    switch OP {
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return u / v; }
        default: { return u + v; }
    }
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= p.n) { return; }
    if (p.same != 0u) {
        y[i] = activate(apply(a[i], b[i]));
        return;
    }
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let du = u32(d);
        let extent = p.shape[du / 4u][du % 4u];
        let coord = rem % extent;
        rem = rem / extent;
        ia += coord * p.a_st[du / 4u][du % 4u];
        ib += coord * p.b_st[du / 4u][du % 4u];
    }
    y[i] = activate(apply(a[ia], b[ib]));
}
