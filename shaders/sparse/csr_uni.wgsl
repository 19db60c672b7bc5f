// CSR SpMV / SpMM with A read from a uniform buffer. The weight is in the staged layout with
// one chunk (`ops/sparse.rs`, [`SPart::StagePtr`] with a chunk of 65536 columns): `gp[n]` is
// weight row n's first group of 8 entries, one texel of `tc` holds a group's 8 columns as u16
// (low half first), `tv` its values (tex_vals.wgsl: quads 2g and 2g + 1). A's rows are copied
// each run (a_uniform.wgsl) into `xu`, row r's columns 4q .. 4q + 3 at xu[r * K4 + q].
//
// Why: every stored entry needs A at its own column, a gather across the invocations. On
// lavapipe a gather from a uniform array is a vector gather, where a texture load per entry
// (csr_tex.wgsl) pays coordinate, bounds and format work per lane, and a storage or
// workgroup load with a computed offset goes lane by lane: on a 4096 x 4096 SpMV at 5 %
// density this kernel's loop ran about 2x faster than the same loop gathering from A's texture.
// A uniform binding holds 64 KiB (WebGPU's default limit), so A's rows must fit 4096 vec4s
// (K <= 16384 for one row); larger A takes the other CSR kernels.
//
// One invocation per weight row n and TM (1, 2, 4) rows of A; named accumulators.
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    has_bias: u32, has_res: u32, k4: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> xu: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read_write> gp: array<u32>;
@group(0) @binding(3) var tc: texture_2d<u32>;
@group(0) @binding(4) var tv: texture_2d<u32>;
@group(0) @binding(5) var<storage, read_write> ss: array<f32>;
@group(0) @binding(6) var<storage, read_write> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> res: array<f32>;
@group(0) @binding(8) var<storage, read_write> c: array<f32>;

// A's row starting at xu[b] at column col.
fn xg(b: u32, col: u32) -> f32 {
    return xu[b + (col >> 2u)][col & 3u];
}

// A's row at xu[b] at a group's 8 columns (`cw`: two u16 a word), times its two value quads.
fn dot8(b: u32, cw: vec4<u32>, v0: vec4<f32>, v1: vec4<f32>) -> vec4<f32> {
    let x0 = vec4<f32>(xg(b, cw.x & 0xffffu), xg(b, cw.x >> 16u),
                       xg(b, cw.y & 0xffffu), xg(b, cw.y >> 16u));
    let x1 = vec4<f32>(xg(b, cw.z & 0xffffu), xg(b, cw.z >> 16u),
                       xg(b, cw.w & 0xffffu), xg(b, cw.w >> 16u));
    return v0 * x0 + v1 * x1;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    let m0 = gid.y * TM;
    if (n >= p.n || m0 >= p.m) { return; }
    // Rows of A (and of the output) in the batch-flattened [batch * m] view; rows past the
    // end repeat the last one and are not stored.
    let r0 = gid.z * p.m + m0;
    let last = gid.z * p.m + p.m - 1u;
    let r1 = min(r0 + 1u, last);
    let r2 = min(r0 + 2u, last);
    let r3 = min(r0 + 3u, last);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let end = gp[n + 1u];
    for (var g = gp[n]; g < end; g++) {
        let cw = textureLoad(tc, t_at(g), 0);
        let v0 = t_vals4(2u * g);
        let v1 = t_vals4(2u * g + 1u);
        acc0 += dot8(r0 * p.k4, cw, v0, v1);
        if (TM > 1u) { acc1 += dot8(r1 * p.k4, cw, v0, v1); }
        if (TM > 2u) {
            acc2 += dot8(r2 * p.k4, cw, v0, v1);
            acc3 += dot8(r3 * p.k4, cw, v0, v1);
        }
    }
    let one = vec4<f32>(1.0);
    t_store(r0, n, dot(acc0, one));
    if (TM > 1u && m0 + 1u < p.m) { t_store(r1, n, dot(acc1, one)); }
    if (TM > 2u && m0 + 2u < p.m) { t_store(r2, n, dot(acc2, one)); }
    if (TM > 2u && m0 + 3u < p.m) { t_store(r3, n, dot(acc3, one)); }
}
