// CSR SpMV / SpMM on the texture path. At upload each weight row's entries are cut into groups
// of 4 (the last padded with zero values at column 0): `gp` holds each row's first group, one
// texel of `tc` the group's 4 columns, `tv` its 4 values (tex_vals.wgsl). A is read through a
// per-run rgba32float texture `at` (texel (k / 4, row)), so every operand is a texture gather.
// One invocation per weight row n and TM (1, 2 or 4) rows of A; named accumulators, because
// arrays indexed in loops live in memory on lavapipe.
// Params and bindings: csr_head.wgsl.

// A[row][cols.x], ..., A[row][cols.w].
fn a4(cols: vec4<u32>, row: u32) -> vec4<f32> {
    return vec4<f32>(
        textureLoad(at, vec2<u32>(cols.x >> 2u, row), 0)[cols.x & 3u],
        textureLoad(at, vec2<u32>(cols.y >> 2u, row), 0)[cols.y & 3u],
        textureLoad(at, vec2<u32>(cols.z >> 2u, row), 0)[cols.z & 3u],
        textureLoad(at, vec2<u32>(cols.w >> 2u, row), 0)[cols.w & 3u]);
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
        let cols = textureLoad(tc, t_at(g), 0);
        let v = t_vals4(g);
        acc0 += v * a4(cols, r0);
        if (TM > 1u) { acc1 += v * a4(cols, r1); }
        if (TM > 2u) {
            acc2 += v * a4(cols, r2);
            acc3 += v * a4(cols, r3);
        }
    }
    let one = vec4<f32>(1.0);
    t_store(r0, n, dot(acc0, one));
    if (TM > 1u && m0 + 1u < p.m) { t_store(r1, n, dot(acc1, one)); }
    if (TM > 2u && m0 + 2u < p.m) { t_store(r2, n, dot(acc2, one)); }
    if (TM > 2u && m0 + 3u < p.m) { t_store(r3, n, dot(acc3, one)); }
}
