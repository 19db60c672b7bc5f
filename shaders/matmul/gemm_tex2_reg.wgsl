// Two-texture GEMM with larger register blocks, for adapters that run invocations as SIMD lanes
// of a CPU (lavapipe). Same operands as gemm_tex2.wgsl: A copied each run by to_texture.wgsl
// into texels of 4 consecutive k (zero past K), B packed at load as texels of 4 consecutive n.
//   C[b][m][n] = act(sum_k A[b][m][k] * B[b][k][n] + bias[n] + res[b][m][n])
// There a texel load is a per-lane gather plus a transpose, several times the cost of the
// vec4 FMAs it feeds, so the block is sized to feed more FMAs per load: an invocation owns TM
// rows (4, 8, 16 or 32) x TN4 texel columns (1, 2 or 4); per step of 4 k it loads TM + 4 * TN4
// texels for 4 * TM * TN4 vec4 FMAs (16 x 16: 32 loads for 256 FMAs, against 16 for 64 at
// 8 x 8; 32 x 16: 48 for 512). Accumulators are structs of named vec4s (split into scalars by the compiler; arrays
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
// 4 consecutive output rows.
struct Quad { r0: Row, r1: Row, r2: Row, r3: Row }

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

// Rows `a` (texture rows of A, clamped) of one quad against the TN4 columns of B.
fn acc_quad(q: Quad, k4: u32, a: vec4<u32>, b0: BK, b1: BK, b2: BK, b3: BK) -> Quad {
    return Quad(
        acc_row(q.r0, a_at(k4, a.x), b0, b1, b2, b3), acc_row(q.r1, a_at(k4, a.y), b0, b1, b2, b3),
        acc_row(q.r2, a_at(k4, a.z), b0, b1, b2, b3), acc_row(q.r3, a_at(k4, a.w), b0, b1, b2, b3),
    );
}

fn store_row(bat: u32, row: u32, col4: u32, r: Row) {
    store4(bat, row, col4, r.c0);
    if (TN4 > 1u) { store4(bat, row, col4 + 1u, r.c1); }
    if (TN4 > 2u) {
        store4(bat, row, col4 + 2u, r.c2);
        store4(bat, row, col4 + 3u, r.c3);
    }
}

fn store_quad(bat: u32, row: u32, col4: u32, q: Quad) {
    store_row(bat, row, col4, q.r0); store_row(bat, row + 1u, col4, q.r1);
    store_row(bat, row + 2u, col4, q.r2); store_row(bat, row + 3u, col4, q.r3);
}

// Texture rows of A for output rows m .. m + 3 (rows past M read row M - 1; not stored).
fn a_rows(arow: u32, m: u32) -> vec4<u32> {
    return vec4<u32>(arow) + min(vec4<u32>(m) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u));
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * TN4;
    let m0 = gid.y * TM;
    let bat = gid.z;
    let arow = bat * p.m;
    let r0 = bat * p.b_bk;
    let kl = p.k - 1u;
    let nl = p.n4 - 1u;
    // Columns past N read the last texel column (their outputs are not stored).
    let cc0 = min(c0, nl); let cc1 = min(c0 + 1u, nl); let cc2 = min(c0 + 2u, nl); let cc3 = min(c0 + 3u, nl);
    let a0 = a_rows(arow, m0); let a1 = a_rows(arow, m0 + 4u);
    let a2 = a_rows(arow, m0 + 8u); let a3 = a_rows(arow, m0 + 12u);
    let a4 = a_rows(arow, m0 + 16u); let a5 = a_rows(arow, m0 + 20u);
    let a6 = a_rows(arow, m0 + 24u); let a7 = a_rows(arow, m0 + 28u);
    let zr = Row(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    let z = Quad(zr, zr, zr, zr);
    var q0 = z; var q1 = z; var q2 = z; var q3 = z; var q4 = z; var q5 = z; var q6 = z; var q7 = z;
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
        q0 = acc_quad(q0, k4, a0, b0, b1, b2, b3);
        if (TM > 4u) { q1 = acc_quad(q1, k4, a1, b0, b1, b2, b3); }
        if (TM > 8u) {
            q2 = acc_quad(q2, k4, a2, b0, b1, b2, b3);
            q3 = acc_quad(q3, k4, a3, b0, b1, b2, b3);
        }
        if (TM > 16u) {
            q4 = acc_quad(q4, k4, a4, b0, b1, b2, b3);
            q5 = acc_quad(q5, k4, a5, b0, b1, b2, b3);
            q6 = acc_quad(q6, k4, a6, b0, b1, b2, b3);
            q7 = acc_quad(q7, k4, a7, b0, b1, b2, b3);
        }
    }
    store_quad(bat, m0, c0, q0);
    if (TM > 4u) { store_quad(bat, m0 + 4u, c0, q1); }
    if (TM > 8u) {
        store_quad(bat, m0 + 8u, c0, q2);
        store_quad(bat, m0 + 12u, c0, q3);
    }
    if (TM > 16u) {
        store_quad(bat, m0 + 16u, c0, q4); store_quad(bat, m0 + 20u, c0, q5);
        store_quad(bat, m0 + 24u, c0, q6); store_quad(bat, m0 + 28u, c0, q7);
    }
}
