enable f16;
// gemm_block.wgsl with f16 products (adapters with `shader-f16`, and only when the session
// allows reduced precision): B (packed [K][N4] vec4 at load, from the b_buffer / b_texture
// prelude) and A are converted to f16 as they are read, and each run of 4 k is multiplied and
// summed in f16 and added to an f32 accumulator (dot4_f16.wgsl says why the error then grows
// like sqrt(K) * 2^-11). Same parameters and bindings (gemm_block_io.wgsl), block shapes, grid
// and named accumulators as gemm_block.wgsl; the loop steps 4 k at a time.

// A[row][k0 .. k0 + 4] in f16, zero past K (so the clamped B rows there add nothing).
fn a4(ra: u32, k0: u32) -> vec4<f16> {
    let l = p.k - 1u;
    let s = p.a_ks;
    let v = vec4<f32>(a[ra + min(k0, l) * s], a[ra + min(k0 + 1u, l) * s],
                      a[ra + min(k0 + 2u, l) * s], a[ra + min(k0 + 3u, l) * s]);
    return vec4<f16>(select(vec4<f32>(0.0), v, vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.k)));
}

// B texel (col4, k) of this batch in f16, the row clamped into K.
fn bh(col4: u32, r0: u32, k: u32) -> vec4<f16> {
    return vec4<f16>(b_at(col4, r0 + min(k, p.k - 1u)));
}

// acc + the f16 sum of x[j] * b_j over the 4 k of a run (dot4_f16.wgsl).
fn run4(x: vec4<f16>, b0: vec4<f16>, b1: vec4<f16>, b2: vec4<f16>, b3: vec4<f16>, acc: vec4<f32>) -> vec4<f32> {
    return acc + dot4h(x, b0, b1, b2, b3);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c0 = (wid.x * 64u + lid.x) * TN4;
    let m0 = wid.y * TM;
    let bat = wid.z;
    let a0 = bat * p.a_bs;
    let r0 = bat * p.b_bk;
    if (TM == 1u) {
        let ra = a_row(a0, m0);
        var v0 = vec4<f32>(0.0); var v1 = vec4<f32>(0.0); var v2 = vec4<f32>(0.0); var v3 = vec4<f32>(0.0);
        for (var k0 = 0u; k0 < p.k; k0 += 4u) {
            let x = a4(ra, k0);
            v0 = run4(x, bh(c0, r0, k0), bh(c0, r0, k0 + 1u), bh(c0, r0, k0 + 2u), bh(c0, r0, k0 + 3u), v0);
            if (TN4 > 1u) {
                let c = c0 + 1u;
                v1 = run4(x, bh(c, r0, k0), bh(c, r0, k0 + 1u), bh(c, r0, k0 + 2u), bh(c, r0, k0 + 3u), v1);
            }
            if (TN4 > 2u) {
                let c = c0 + 2u;
                v2 = run4(x, bh(c, r0, k0), bh(c, r0, k0 + 1u), bh(c, r0, k0 + 2u), bh(c, r0, k0 + 3u), v2);
                let d = c0 + 3u;
                v3 = run4(x, bh(d, r0, k0), bh(d, r0, k0 + 1u), bh(d, r0, k0 + 2u), bh(d, r0, k0 + 3u), v3);
            }
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
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let b00 = bh(c0, r0, k0); let b01 = bh(c0, r0, k0 + 1u); let b02 = bh(c0, r0, k0 + 2u); let b03 = bh(c0, r0, k0 + 3u);
        let x0 = a4(ra0, k0); let x1 = a4(ra1, k0); let x2 = a4(ra2, k0); let x3 = a4(ra3, k0);
        r0c0 = run4(x0, b00, b01, b02, b03, r0c0); r1c0 = run4(x1, b00, b01, b02, b03, r1c0);
        r2c0 = run4(x2, b00, b01, b02, b03, r2c0); r3c0 = run4(x3, b00, b01, b02, b03, r3c0);
        if (TN4 > 1u) {
            let c = c0 + 1u;
            let b10 = bh(c, r0, k0); let b11 = bh(c, r0, k0 + 1u); let b12 = bh(c, r0, k0 + 2u); let b13 = bh(c, r0, k0 + 3u);
            r0c1 = run4(x0, b10, b11, b12, b13, r0c1); r1c1 = run4(x1, b10, b11, b12, b13, r1c1);
            r2c1 = run4(x2, b10, b11, b12, b13, r2c1); r3c1 = run4(x3, b10, b11, b12, b13, r3c1);
            if (TM > 4u) {
                let x4 = a4(ra4, k0); let x5 = a4(ra5, k0); let x6 = a4(ra6, k0); let x7 = a4(ra7, k0);
                r4c0 = run4(x4, b00, b01, b02, b03, r4c0); r5c0 = run4(x5, b00, b01, b02, b03, r5c0);
                r6c0 = run4(x6, b00, b01, b02, b03, r6c0); r7c0 = run4(x7, b00, b01, b02, b03, r7c0);
                r4c1 = run4(x4, b10, b11, b12, b13, r4c1); r5c1 = run4(x5, b10, b11, b12, b13, r5c1);
                r6c1 = run4(x6, b10, b11, b12, b13, r6c1); r7c1 = run4(x7, b10, b11, b12, b13, r7c1);
            }
        } else if (TM > 4u) {
            let x4 = a4(ra4, k0); let x5 = a4(ra5, k0); let x6 = a4(ra6, k0); let x7 = a4(ra7, k0);
            r4c0 = run4(x4, b00, b01, b02, b03, r4c0); r5c0 = run4(x5, b00, b01, b02, b03, r5c0);
            r6c0 = run4(x6, b00, b01, b02, b03, r6c0); r7c0 = run4(x7, b00, b01, b02, b03, r7c0);
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
