// BSR SpMV / SpMM for blocks R x 4 (R = 1, 2, 4 or 8 weight rows, 4 columns of K) on the
// texture path: `bp` holds each block row's first block (as stored), `tc` the blocks' column
// indices (4 per texel, as stored), `tv` the blocks' values (row i of block b is value quad
// b * R + i, tex_vals.wgsl). One 4-wide block meets exactly one texel of A's per-run
// rgba32float texture `at`, so a block costs one A gather and R vec4 multiply-adds. One
// invocation per block row and row of A; named accumulators (arrays spill on lavapipe).
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    has_bias: u32, has_res: u32, _p0: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var at: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> bp: array<i32>;
@group(0) @binding(3) var tc: texture_2d<u32>;
@group(0) @binding(4) var tv: texture_2d<u32>;
@group(0) @binding(5) var<storage, read_write> ss: array<f32>;
@group(0) @binding(6) var<storage, read_write> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> res: array<f32>;
@group(0) @binding(8) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let br = gid.x;
    let m = gid.y;
    let n0 = br * R;
    if (n0 >= p.n || m >= p.m) { return; }
    let row = gid.z * p.m + m;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    let end = u32(bp[br + 1u]);
    for (var b = u32(bp[br]); b < end; b++) {
        let bc = textureLoad(tc, t_at(b >> 2u), 0)[b & 3u];
        let x = textureLoad(at, vec2<u32>(bc, row), 0);
        let q = b * R;
        acc0 += t_vals4(q) * x;
        if (R > 1u) { acc1 += t_vals4(q + 1u) * x; }
        if (R > 2u) {
            acc2 += t_vals4(q + 2u) * x;
            acc3 += t_vals4(q + 3u) * x;
        }
        if (R > 4u) {
            acc4 += t_vals4(q + 4u) * x;
            acc5 += t_vals4(q + 5u) * x;
            acc6 += t_vals4(q + 6u) * x;
            acc7 += t_vals4(q + 7u) * x;
        }
    }
    let one = vec4<f32>(1.0);
    t_store(row, n0, dot(acc0, one));
    if (R > 1u) { t_store(row, n0 + 1u, dot(acc1, one)); }
    if (R > 2u) {
        t_store(row, n0 + 2u, dot(acc2, one));
        t_store(row, n0 + 3u, dot(acc3, one));
    }
    if (R > 4u) {
        t_store(row, n0 + 4u, dot(acc4, one));
        t_store(row, n0 + 5u, dot(acc5, one));
        t_store(row, n0 + 6u, dot(acc6, one));
        t_store(row, n0 + 7u, dot(acc7, one));
    }
}
