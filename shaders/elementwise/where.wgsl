// y = cond ? a : b with numpy broadcasting over up to 8 dims (strides are 0 along broadcast
// dims). cond is a bool value: one byte per element, packed four to a u32 word (the memory
// plan rounds its range up to whole words), so element i is byte i % 4 of word i / 4.
struct Params {
    n: u32, rank: u32, _p0: u32, _p1: u32,
    shape: array<vec4<u32>, 2>,
    c_st: array<vec4<u32>, 2>,
    a_st: array<vec4<u32>, 2>,
    b_st: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> cond: array<u32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= p.n) { return; }
    var rem = i;
    var ic = 0u;
    var ia = 0u;
    var ib = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let du = u32(d);
        let extent = p.shape[du / 4u][du % 4u];
        let coord = rem % extent;
        rem = rem / extent;
        ic += coord * p.c_st[du / 4u][du % 4u];
        ia += coord * p.a_st[du / 4u][du % 4u];
        ib += coord * p.b_st[du / 4u][du % 4u];
    }
    let c = (cond[ic / 4u] >> (8u * (ic % 4u))) & 0xffu;
    y[i] = select(b[ib], a[ia], c != 0u);
}
