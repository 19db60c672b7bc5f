// Register-blocked GEMM over a B re-laid-out at load as [K][N4] vec4 texels (zero-padded),
// read through `b_at(col4, row)` from the prelude: a texture (gemm_tex) or a storage buffer
// (gemm_bcast). Rows of all batches of B are stacked: row = batch * b_bk + k.
//   C[b][m][n] = act(sum_k A[b][m][k] * B[b][k][n] + bias[n] + res[b][m][n])
// A workgroup shares TM rows of A (TM = 1, 4 or 8): A loads have the same address in every
// invocation. Each invocation owns TN4 texel columns (1 or 2; up to 4 when TM = 1).
// The accumulators are named vec4 variables, not arrays or matrices: on CPU-based adapters
// (lavapipe) indexed arrays and matrix variables spill, and this form ran about 2x faster.
// `if`s on the constants TM / TN4 fold away at compile time. No early return before the loads,
// so the execution mask stays full for them. Parameters and bindings: gemm_block_io.wgsl.

fn axpy(x: f32, b: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(x), b, acc);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c0 = (wid.x * 64u + lid.x) * TN4;
    let m0 = wid.y * TM;
    let bat = wid.z;
    let a0 = bat * p.a_bs;
    let r0 = bat * p.b_bk;
    let ks = p.a_ks;
    if (TM == 1u) {
        // GEMV: one row of A, up to 4 texel columns per invocation.
        let ra = a_row(a0, m0);
        var v0 = vec4<f32>(0.0); var v1 = vec4<f32>(0.0); var v2 = vec4<f32>(0.0); var v3 = vec4<f32>(0.0);
        for (var kk = 0u; kk < p.k; kk++) {
            let x = a[ra + kk * ks];
            v0 = axpy(x, b_at(c0, r0 + kk), v0);
            if (TN4 > 1u) { v1 = axpy(x, b_at(c0 + 1u, r0 + kk), v1); }
            if (TN4 > 2u) { v2 = axpy(x, b_at(c0 + 2u, r0 + kk), v2); v3 = axpy(x, b_at(c0 + 3u, r0 + kk), v3); }
        }
        store4(bat, m0, c0, v0);
        if (TN4 > 1u) { store4(bat, m0, c0 + 1u, v1); }
        if (TN4 > 2u) { store4(bat, m0, c0 + 2u, v2); store4(bat, m0, c0 + 3u, v3); }
        return;
    }
    // r<i>c<j>: output row m0 + i, texel column c0 + j.
    var r0c0 = vec4<f32>(0.0); var r1c0 = vec4<f32>(0.0); var r2c0 = vec4<f32>(0.0); var r3c0 = vec4<f32>(0.0);
    var r4c0 = vec4<f32>(0.0); var r5c0 = vec4<f32>(0.0); var r6c0 = vec4<f32>(0.0); var r7c0 = vec4<f32>(0.0);
    var r0c1 = vec4<f32>(0.0); var r1c1 = vec4<f32>(0.0); var r2c1 = vec4<f32>(0.0); var r3c1 = vec4<f32>(0.0);
    var r4c1 = vec4<f32>(0.0); var r5c1 = vec4<f32>(0.0); var r6c1 = vec4<f32>(0.0); var r7c1 = vec4<f32>(0.0);
    let ra0 = a_row(a0, m0); let ra1 = a_row(a0, m0 + 1u); let ra2 = a_row(a0, m0 + 2u); let ra3 = a_row(a0, m0 + 3u);
    let ra4 = a_row(a0, m0 + 4u); let ra5 = a_row(a0, m0 + 5u); let ra6 = a_row(a0, m0 + 6u); let ra7 = a_row(a0, m0 + 7u);
    for (var kk = 0u; kk < p.k; kk++) {
        let o = kk * ks;
        let b0 = b_at(c0, r0 + kk);
        let x0 = a[ra0 + o]; let x1 = a[ra1 + o]; let x2 = a[ra2 + o]; let x3 = a[ra3 + o];
        r0c0 = axpy(x0, b0, r0c0); r1c0 = axpy(x1, b0, r1c0); r2c0 = axpy(x2, b0, r2c0); r3c0 = axpy(x3, b0, r3c0);
        if (TN4 > 1u) {
            let b1 = b_at(c0 + 1u, r0 + kk);
            r0c1 = axpy(x0, b1, r0c1); r1c1 = axpy(x1, b1, r1c1); r2c1 = axpy(x2, b1, r2c1); r3c1 = axpy(x3, b1, r3c1);
            if (TM > 4u) {
                let x4 = a[ra4 + o]; let x5 = a[ra5 + o]; let x6 = a[ra6 + o]; let x7 = a[ra7 + o];
                r4c0 = axpy(x4, b0, r4c0); r5c0 = axpy(x5, b0, r5c0); r6c0 = axpy(x6, b0, r6c0); r7c0 = axpy(x7, b0, r7c0);
                r4c1 = axpy(x4, b1, r4c1); r5c1 = axpy(x5, b1, r5c1); r6c1 = axpy(x6, b1, r6c1); r7c1 = axpy(x7, b1, r7c1);
            }
        } else if (TM > 4u) {
            let x4 = a[ra4 + o]; let x5 = a[ra5 + o]; let x6 = a[ra6 + o]; let x7 = a[ra7 + o];
            r4c0 = axpy(x4, b0, r4c0); r5c0 = axpy(x5, b0, r5c0); r6c0 = axpy(x6, b0, r6c0); r7c0 = axpy(x7, b0, r7c0);
        }
    }
    store4(bat, m0, c0, r0c0); store4(bat, m0 + 1u, c0, r1c0); store4(bat, m0 + 2u, c0, r2c0); store4(bat, m0 + 3u, c0, r3c0);
    if (TN4 > 1u) {
        store4(bat, m0, c0 + 1u, r0c1); store4(bat, m0 + 1u, c0 + 1u, r1c1);
        store4(bat, m0 + 2u, c0 + 1u, r2c1); store4(bat, m0 + 3u, c0 + 1u, r3c1);
    }
    if (TM > 4u) {
        store4(bat, m0 + 4u, c0, r4c0); store4(bat, m0 + 5u, c0, r5c0); store4(bat, m0 + 6u, c0, r6c0); store4(bat, m0 + 7u, c0, r7c0);
        if (TN4 > 1u) {
            store4(bat, m0 + 4u, c0 + 1u, r4c1); store4(bat, m0 + 5u, c0 + 1u, r5c1);
            store4(bat, m0 + 6u, c0 + 1u, r6c1); store4(bat, m0 + 7u, c0 + 1u, r7c1);
        }
    }
}
