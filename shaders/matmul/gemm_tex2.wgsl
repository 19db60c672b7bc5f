// GEMM with both operands read through textures: A (an activation) copied each run by
// to_texture.wgsl into texels of 4 consecutive k (zero-padded past K), B (constant) packed at
// load as texels of 4 consecutive n. Per step of 4 k, an invocation loads TM texels of A and
// 4 * TN4 texels of B and issues 4 * TM * TN4 vec4 FMAs. On lavapipe texture reads take a
// vector-gather path while storage loads with computed offsets are scalar loops per lane.
//   C[b][m][n] = act(sum_k A[b][m][k] * B[b][k][n] + bias[n] + res[b][m][n])
// TM = 4 or 8 rows per invocation, TN4 = 1 or 2 texel columns; named vec4 accumulators.
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

fn b_at(col4: u32, row: u32) -> vec4<f32> {
    return textureLoad(bt, vec2<u32>(min(col4, p.n4 - 1u), row), 0);
}

fn a_at(k4: u32, row: u32) -> vec4<f32> {
    return textureLoad(at, vec2<u32>(k4, row), 0);
}

// acc += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3 (4 consecutive k).
fn dot4(a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(a.w), b3, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.x), b0, acc))));
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c0 = (wid.x * 64u + lid.x) * TN4;
    let m0 = wid.y * TM;
    let bat = wid.z;
    let arow = bat * p.m;
    let r0 = bat * p.b_bk;
    let last = p.m - 1u;
    let kl = p.k - 1u;
    var r0c0 = vec4<f32>(0.0); var r1c0 = vec4<f32>(0.0); var r2c0 = vec4<f32>(0.0); var r3c0 = vec4<f32>(0.0);
    var r4c0 = vec4<f32>(0.0); var r5c0 = vec4<f32>(0.0); var r6c0 = vec4<f32>(0.0); var r7c0 = vec4<f32>(0.0);
    var r0c1 = vec4<f32>(0.0); var r1c1 = vec4<f32>(0.0); var r2c1 = vec4<f32>(0.0); var r3c1 = vec4<f32>(0.0);
    var r4c1 = vec4<f32>(0.0); var r5c1 = vec4<f32>(0.0); var r6c1 = vec4<f32>(0.0); var r7c1 = vec4<f32>(0.0);
    for (var k4 = 0u; k4 < p.k4; k4++) {
        // B rows past K are clamped; they meet A's zero padding.
        let k0 = k4 * 4u;
        let b0r = r0 + min(k0, kl); let b1r = r0 + min(k0 + 1u, kl);
        let b2r = r0 + min(k0 + 2u, kl); let b3r = r0 + min(k0 + 3u, kl);
        let q0 = b_at(c0, b0r); let q1 = b_at(c0, b1r); let q2 = b_at(c0, b2r); let q3 = b_at(c0, b3r);
        let x0 = a_at(k4, arow + min(m0, last)); let x1 = a_at(k4, arow + min(m0 + 1u, last));
        let x2 = a_at(k4, arow + min(m0 + 2u, last)); let x3 = a_at(k4, arow + min(m0 + 3u, last));
        r0c0 = dot4(x0, q0, q1, q2, q3, r0c0); r1c0 = dot4(x1, q0, q1, q2, q3, r1c0);
        r2c0 = dot4(x2, q0, q1, q2, q3, r2c0); r3c0 = dot4(x3, q0, q1, q2, q3, r3c0);
        if (TN4 > 1u) {
            let s0 = b_at(c0 + 1u, b0r); let s1 = b_at(c0 + 1u, b1r);
            let s2 = b_at(c0 + 1u, b2r); let s3 = b_at(c0 + 1u, b3r);
            r0c1 = dot4(x0, s0, s1, s2, s3, r0c1); r1c1 = dot4(x1, s0, s1, s2, s3, r1c1);
            r2c1 = dot4(x2, s0, s1, s2, s3, r2c1); r3c1 = dot4(x3, s0, s1, s2, s3, r3c1);
            if (TM > 4u) {
                let x4 = a_at(k4, arow + min(m0 + 4u, last)); let x5 = a_at(k4, arow + min(m0 + 5u, last));
                let x6 = a_at(k4, arow + min(m0 + 6u, last)); let x7 = a_at(k4, arow + min(m0 + 7u, last));
                r4c0 = dot4(x4, q0, q1, q2, q3, r4c0); r5c0 = dot4(x5, q0, q1, q2, q3, r5c0);
                r6c0 = dot4(x6, q0, q1, q2, q3, r6c0); r7c0 = dot4(x7, q0, q1, q2, q3, r7c0);
                r4c1 = dot4(x4, s0, s1, s2, s3, r4c1); r5c1 = dot4(x5, s0, s1, s2, s3, r5c1);
                r6c1 = dot4(x6, s0, s1, s2, s3, r6c1); r7c1 = dot4(x7, s0, s1, s2, s3, r7c1);
            }
        } else if (TM > 4u) {
            let x4 = a_at(k4, arow + min(m0 + 4u, last)); let x5 = a_at(k4, arow + min(m0 + 5u, last));
            let x6 = a_at(k4, arow + min(m0 + 6u, last)); let x7 = a_at(k4, arow + min(m0 + 7u, last));
            r4c0 = dot4(x4, q0, q1, q2, q3, r4c0); r5c0 = dot4(x5, q0, q1, q2, q3, r5c0);
            r6c0 = dot4(x6, q0, q1, q2, q3, r6c0); r7c0 = dot4(x7, q0, q1, q2, q3, r7c0);
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
