// Pointwise (1x1, stride 1, no padding, one group) conv as a GEMM per image:
//   Y[b][co][q] = act(sum_ci W[co][ci] * X[b][ci][q] + bias[co] + res[b][co][q])
// W (constant) is an rgba32float texture packed once at upload, texel (ci / 4, co) holding 4
// consecutive input channels (zero past cin); X comes through `x_at` (a texture copied each run
// or vec4 storage loads, see pw_x_*.wgsl), texels of 4 consecutive pixels. Each invocation
// computes TM (4 or 8) output channels x 4 * TN4 (4 or 8) pixels: per step of 4 input channels
// it loads TM texels of W and 4 * TN4 of X and issues 4 * TM * TN4 vec4 FMAs, the shape of the
// two-texture GEMM (gemm_tex2.wgsl) with the constant operand on the left, so the bias is per
// output row. Accumulators are named vec4s (arrays indexed in loops spill on lavapipe).
// The per-step products `dot4` come from a prelude: conv1x1_dot4.wgsl (f32 FMAs) or
// conv1x1_dot4_f16.wgsl (f16 products summed in f32).

fn w_at(k4: u32, co: u32) -> vec4<f32> {
    return textureLoad(wt, vec2<u32>(k4, min(co, p.cout - 1u)), 0);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c0 = (wid.x * 64u + lid.x) * TN4;
    let m0 = wid.y * TM;
    let b = wid.z;
    let xr = b * p.cin;
    let kl = p.cin - 1u;
    var r0c0 = vec4<f32>(0.0); var r1c0 = vec4<f32>(0.0); var r2c0 = vec4<f32>(0.0); var r3c0 = vec4<f32>(0.0);
    var r4c0 = vec4<f32>(0.0); var r5c0 = vec4<f32>(0.0); var r6c0 = vec4<f32>(0.0); var r7c0 = vec4<f32>(0.0);
    var r0c1 = vec4<f32>(0.0); var r1c1 = vec4<f32>(0.0); var r2c1 = vec4<f32>(0.0); var r3c1 = vec4<f32>(0.0);
    var r4c1 = vec4<f32>(0.0); var r5c1 = vec4<f32>(0.0); var r6c1 = vec4<f32>(0.0); var r7c1 = vec4<f32>(0.0);
    for (var k4 = 0u; k4 < p.cin4; k4++) {
        // X rows past cin are clamped to the last channel; they meet W's zero padding.
        let k0 = k4 * 4u;
        let xr0 = xr + min(k0, kl); let xr1 = xr + min(k0 + 1u, kl);
        let xr2 = xr + min(k0 + 2u, kl); let xr3 = xr + min(k0 + 3u, kl);
        let q0 = x_at(c0, xr0); let q1 = x_at(c0, xr1); let q2 = x_at(c0, xr2); let q3 = x_at(c0, xr3);
        let w0 = w_at(k4, m0); let w1 = w_at(k4, m0 + 1u); let w2 = w_at(k4, m0 + 2u); let w3 = w_at(k4, m0 + 3u);
        r0c0 = dot4(w0, q0, q1, q2, q3, r0c0); r1c0 = dot4(w1, q0, q1, q2, q3, r1c0);
        r2c0 = dot4(w2, q0, q1, q2, q3, r2c0); r3c0 = dot4(w3, q0, q1, q2, q3, r3c0);
        if (TN4 > 1u) {
            let s0 = x_at(c0 + 1u, xr0); let s1 = x_at(c0 + 1u, xr1);
            let s2 = x_at(c0 + 1u, xr2); let s3 = x_at(c0 + 1u, xr3);
            r0c1 = dot4(w0, s0, s1, s2, s3, r0c1); r1c1 = dot4(w1, s0, s1, s2, s3, r1c1);
            r2c1 = dot4(w2, s0, s1, s2, s3, r2c1); r3c1 = dot4(w3, s0, s1, s2, s3, r3c1);
            if (TM > 4u) {
                let w4 = w_at(k4, m0 + 4u); let w5 = w_at(k4, m0 + 5u);
                let w6 = w_at(k4, m0 + 6u); let w7 = w_at(k4, m0 + 7u);
                r4c0 = dot4(w4, q0, q1, q2, q3, r4c0); r5c0 = dot4(w5, q0, q1, q2, q3, r5c0);
                r6c0 = dot4(w6, q0, q1, q2, q3, r6c0); r7c0 = dot4(w7, q0, q1, q2, q3, r7c0);
                r4c1 = dot4(w4, s0, s1, s2, s3, r4c1); r5c1 = dot4(w5, s0, s1, s2, s3, r5c1);
                r6c1 = dot4(w6, s0, s1, s2, s3, r6c1); r7c1 = dot4(w7, s0, s1, s2, s3, r7c1);
            }
        } else if (TM > 4u) {
            let w4 = w_at(k4, m0 + 4u); let w5 = w_at(k4, m0 + 5u);
            let w6 = w_at(k4, m0 + 6u); let w7 = w_at(k4, m0 + 7u);
            r4c0 = dot4(w4, q0, q1, q2, q3, r4c0); r5c0 = dot4(w5, q0, q1, q2, q3, r5c0);
            r6c0 = dot4(w6, q0, q1, q2, q3, r6c0); r7c0 = dot4(w7, q0, q1, q2, q3, r7c0);
        }
    }
    store4(b, m0, c0, r0c0); store4(b, m0 + 1u, c0, r1c0); store4(b, m0 + 2u, c0, r2c0); store4(b, m0 + 3u, c0, r3c0);
    if (TN4 > 1u) {
        store4(b, m0, c0 + 1u, r0c1); store4(b, m0 + 1u, c0 + 1u, r1c1);
        store4(b, m0 + 2u, c0 + 1u, r2c1); store4(b, m0 + 3u, c0 + 1u, r3c1);
    }
    if (TM > 4u) {
        store4(b, m0 + 4u, c0, r4c0); store4(b, m0 + 5u, c0, r5c0); store4(b, m0 + 6u, c0, r6c0); store4(b, m0 + 7u, c0, r7c0);
        if (TN4 > 1u) {
            store4(b, m0 + 4u, c0 + 1u, r4c1); store4(b, m0 + 5u, c0 + 1u, r5c1);
            store4(b, m0 + 6u, c0 + 1u, r6c1); store4(b, m0 + 7u, c0 + 1u, r7c1);
        }
    }
}
