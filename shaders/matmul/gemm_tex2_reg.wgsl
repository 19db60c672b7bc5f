// Two-texture GEMM with larger register blocks, for adapters that run invocations as SIMD lanes
// of a CPU (lavapipe). Same operands as gemm_tex2.wgsl: A copied each run by to_texture.wgsl
// into texels of 4 consecutive k (zero past K), B packed at load as texels of 4 consecutive n.
//   C[b][m][n] = act(sum_k A[b][m][k] * B[b][k][n] + bias[n] + res[b][m][n])
// There a texel load is a per-lane gather plus a transpose, several times the cost of the
// vec4 FMAs it feeds, so the block is sized to feed more FMAs per load: an invocation owns TM
// rows (4, 8 or 16) x TN4 texel columns (1, 2 or 4); per step of 4 k it loads TM + 4 * TN4
// texels for 4 * TM * TN4 vec4 FMAs (16 x 16: 32 loads for 256 FMAs, against 16 for 64 at
// 8 x 8). Accumulators are structs of named vec4s (split into scalars by the compiler; arrays
// indexed in loops would live in memory there), `if`s on the constants fold away, and every
// clamp of a row or column index is computed once, outside the K loop.
// The workgroup is 16 x 4: the 16 lanes along N share their rows of A, so within a SIMD vector
// A's texel coordinates are uniform and B's are consecutive.
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    k4: u32, b_bk: u32, n4: u32, has_bias: u32,
    has_res: u32, _p0: u32, _p1: u32, _p2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var at: texture_2d<f32>;
@group(0) @binding(2) var bt: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

// Rows k .. k + 3 of one texel column of B.
struct BK { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32> }
// One output row of the block: up to 4 texel columns.
struct Row { c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32> }

fn ld_b(col4: u32, r: vec4<u32>) -> BK {
    return BK(
        textureLoad(bt, vec2<u32>(col4, r.x), 0), textureLoad(bt, vec2<u32>(col4, r.y), 0),
        textureLoad(bt, vec2<u32>(col4, r.z), 0), textureLoad(bt, vec2<u32>(col4, r.w), 0),
    );
}

// acc += a.x * B[k] + a.y * B[k + 1] + a.z * B[k + 2] + a.w * B[k + 3].
fn dot4(a: vec4<f32>, b: BK, acc: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(a.w), b.q3, fma(vec4<f32>(a.z), b.q2, fma(vec4<f32>(a.y), b.q1, fma(vec4<f32>(a.x), b.q0, acc))));
}

// One row of A's texel against the TN4 columns of B.
fn acc_row(r: Row, a: vec4<f32>, b0: BK, b1: BK, b2: BK, b3: BK) -> Row {
    var o = r;
    o.c0 = dot4(a, b0, r.c0);
    if (TN4 > 1u) { o.c1 = dot4(a, b1, r.c1); }
    if (TN4 > 2u) {
        o.c2 = dot4(a, b2, r.c2);
        o.c3 = dot4(a, b3, r.c3);
    }
    return o;
}

fn a_at(k4: u32, row: u32) -> vec4<f32> {
    return textureLoad(at, vec2<u32>(k4, row), 0);
}

fn store_row(bat: u32, row: u32, col4: u32, r: Row) {
    store4(bat, row, col4, r.c0);
    if (TN4 > 1u) { store4(bat, row, col4 + 1u, r.c1); }
    if (TN4 > 2u) {
        store4(bat, row, col4 + 2u, r.c2);
        store4(bat, row, col4 + 3u, r.c3);
    }
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * TN4;
    let m0 = gid.y * TM;
    let bat = gid.z;
    let arow = bat * p.m;
    let r0 = bat * p.b_bk;
    let last = p.m - 1u;
    let kl = p.k - 1u;
    let nl = p.n4 - 1u;
    // Columns past N read the last texel column (their outputs are not stored).
    let cc0 = min(c0, nl); let cc1 = min(c0 + 1u, nl); let cc2 = min(c0 + 2u, nl); let cc3 = min(c0 + 3u, nl);
    // Rows past M read row M - 1 (not stored either).
    let a0 = arow + min(m0, last); let a1 = arow + min(m0 + 1u, last);
    let a2 = arow + min(m0 + 2u, last); let a3 = arow + min(m0 + 3u, last);
    let a4 = arow + min(m0 + 4u, last); let a5 = arow + min(m0 + 5u, last);
    let a6 = arow + min(m0 + 6u, last); let a7 = arow + min(m0 + 7u, last);
    let a8 = arow + min(m0 + 8u, last); let a9 = arow + min(m0 + 9u, last);
    let a10 = arow + min(m0 + 10u, last); let a11 = arow + min(m0 + 11u, last);
    let a12 = arow + min(m0 + 12u, last); let a13 = arow + min(m0 + 13u, last);
    let a14 = arow + min(m0 + 14u, last); let a15 = arow + min(m0 + 15u, last);
    let z = Row(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var w0 = z; var w1 = z; var w2 = z; var w3 = z; var w4 = z; var w5 = z; var w6 = z; var w7 = z;
    var w8 = z; var w9 = z; var w10 = z; var w11 = z; var w12 = z; var w13 = z; var w14 = z; var w15 = z;
    // All 4-k steps but the last read B rows k .. k + 3 unclamped.
    let kfull = p.k / 4u;
    for (var k4 = 0u; k4 < p.k4; k4++) {
        var rows = vec4<u32>(r0 + k4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
        if (k4 >= kfull) {
            // The last, partial step: B rows past K are clamped; they meet A's zero padding.
            rows = vec4<u32>(r0) + min(vec4<u32>(k4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(kl));
        }
        let b0 = ld_b(cc0, rows);
        var b1 = b0; var b2 = b0; var b3 = b0;
        if (TN4 > 1u) { b1 = ld_b(cc1, rows); }
        if (TN4 > 2u) { b2 = ld_b(cc2, rows); b3 = ld_b(cc3, rows); }
        w0 = acc_row(w0, a_at(k4, a0), b0, b1, b2, b3);
        w1 = acc_row(w1, a_at(k4, a1), b0, b1, b2, b3);
        w2 = acc_row(w2, a_at(k4, a2), b0, b1, b2, b3);
        w3 = acc_row(w3, a_at(k4, a3), b0, b1, b2, b3);
        if (TM > 4u) {
            w4 = acc_row(w4, a_at(k4, a4), b0, b1, b2, b3);
            w5 = acc_row(w5, a_at(k4, a5), b0, b1, b2, b3);
            w6 = acc_row(w6, a_at(k4, a6), b0, b1, b2, b3);
            w7 = acc_row(w7, a_at(k4, a7), b0, b1, b2, b3);
        }
        if (TM > 8u) {
            w8 = acc_row(w8, a_at(k4, a8), b0, b1, b2, b3);
            w9 = acc_row(w9, a_at(k4, a9), b0, b1, b2, b3);
            w10 = acc_row(w10, a_at(k4, a10), b0, b1, b2, b3);
            w11 = acc_row(w11, a_at(k4, a11), b0, b1, b2, b3);
            w12 = acc_row(w12, a_at(k4, a12), b0, b1, b2, b3);
            w13 = acc_row(w13, a_at(k4, a13), b0, b1, b2, b3);
            w14 = acc_row(w14, a_at(k4, a14), b0, b1, b2, b3);
            w15 = acc_row(w15, a_at(k4, a15), b0, b1, b2, b3);
        }
    }
    store_row(bat, m0, c0, w0); store_row(bat, m0 + 1u, c0, w1);
    store_row(bat, m0 + 2u, c0, w2); store_row(bat, m0 + 3u, c0, w3);
    if (TM > 4u) {
        store_row(bat, m0 + 4u, c0, w4); store_row(bat, m0 + 5u, c0, w5);
        store_row(bat, m0 + 6u, c0, w6); store_row(bat, m0 + 7u, c0, w7);
    }
    if (TM > 8u) {
        store_row(bat, m0 + 8u, c0, w8); store_row(bat, m0 + 9u, c0, w9);
        store_row(bat, m0 + 10u, c0, w10); store_row(bat, m0 + 11u, c0, w11);
        store_row(bat, m0 + 12u, c0, w12); store_row(bat, m0 + 13u, c0, w13);
        store_row(bat, m0 + 14u, c0, w14); store_row(bat, m0 + 15u, c0, w15);
    }
}
