// Shared epilogue helpers, prepended to every kernel.
// Every storage binding in wgedge's kernels is declared read_write, inputs included: activations
// live at offsets of one arena buffer, and WebGPU forbids binding one buffer both read-only and
// writable in a dispatch. The kernels never write their inputs.
// ACT selects the activation at pipeline-creation time (no per-element branch cost):
// 0 none, 1 relu, 2 relu6, 3 leaky-relu(ALPHA), 4 sigmoid, 5 tanh, 6 gelu (tanh form),
// 7 silu, 8 hardswish, 9 hardsigmoid (PyTorch's x / 6 + 1/2, clamped to [0, 1]), 10 erf,
// 11 gelu (erf form), 12 elu(ALPHA), 13 celu(ALPHA), 14 softplus, 15 softsign, 16 mish,
// 17 thresholded relu(ALPHA), 18 neg, 19 abs, 20 selu(ALPHA, gamma = BETA), 21 hard
// sigmoid(ALPHA x + BETA), 22 clip(ALPHA, BETA). The codes and CPU formulas are the
// `activations!` table in src/ops/mod.rs.
override ACT: u32 = 0u;
override ALPHA: f32 = 0.01;
override BETA: f32 = 0.0;

fn activate(x: f32) -> f32 {
    switch ACT {
        case 1u: { return max(x, 0.0); }
        case 2u: { return clamp(x, 0.0, 6.0); }
        case 3u: { return select(ALPHA * x, x, x >= 0.0); }
        case 4u: { return 1.0 / (1.0 + exp(-x)); }
        case 5u: { return tanh_stable(x); }
        case 6u: {
            let u = 0.7978845608 * (x + 0.044715 * x * x * x);
            return 0.5 * x * (1.0 + tanh_stable(u));
        }
        case 7u: { return x / (1.0 + exp(-x)); }
        case 8u: { return x * clamp(x + 3.0, 0.0, 6.0) / 6.0; }
        case 9u: { return clamp(x / 6.0 + 0.5, 0.0, 1.0); }
        case 10u: { return erf_approx(x); }
        case 11u: { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678)); }
        case 12u: { return select(ALPHA * (exp(x) - 1.0), x, x >= 0.0); }
        case 13u: { return max(x, 0.0) + min(ALPHA * (exp(x / ALPHA) - 1.0), 0.0); }
        case 14u: { return softplus(x); }
        case 15u: { return x / (1.0 + abs(x)); }
        case 16u: { return x * tanh_stable(softplus(x)); }
        case 17u: { return select(0.0, x, x > ALPHA); }
        case 18u: { return -x; }
        case 19u: { return abs(x); }
        // No expression of the constants alone: it would be evaluated when the pipeline is
        // made, and BETA * ALPHA overflows for clip's extreme bounds (a creation error).
        case 20u: { return select(BETA * (ALPHA * (exp(x) - 1.0)), BETA * x, x > 0.0); }
        case 21u: { return clamp(ALPHA * x + BETA, 0.0, 1.0); }
        case 22u: { return min(max(x, ALPHA), BETA); }
        default: { return x; }
    }
}

// tanh through exp of a non-positive argument: never overflows, unlike the naive form. Below
// |x| = 0.1, 1 - e^-2|x| cancels (relative error ulp(1) / 2|x|, 1e-3 at 3e-5), so the Taylor
// series to x^7 is used there (its first omitted term is below 3e-10 relative).
fn tanh_stable(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.1) {
        let x2 = x * x;
        return x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
    }
    let e = exp(-2.0 * a);
    return sign(x) * (1.0 - e) / (1.0 + e);
}

// ln(1 + u) for u >= 0: the series to u^4 below u = 0.01 (omitted terms under 2e-9 relative),
// where 1 + u rounds away u's low bits and GPUs' log near 1 has only an absolute error bound
// (2^-21), which would be a large relative error of a small result.
fn log1p_pos(u: f32) -> f32 {
    if (u < 0.01) {
        return u * (1.0 + u * (-0.5 + u * (1.0 / 3.0 - u * 0.25)));
    }
    return log(1.0 + u);
}

// ln(1 + e^x) without overflow: max(x, 0) + ln(1 + e^-|x|).
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log1p_pos(exp(-abs(x)));
}

// erf by Abramowitz & Stegun 7.1.26: 1 - t (a1 + t (a2 + ...)) e^(-x^2), t = 1 / (1 + p|x|);
// its absolute error is at most 1.5e-7, plus a few f32 roundings (about 1e-7 more): tests allow
// 1e-5. The CPU reference is the exact erf.
fn erf_approx(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
        + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-z * z));
}

// Flattened invocation index for 1-D work split over a 2-D grid (65535 workgroups per dimension).
fn flat_id(gid: vec3<u32>, nwg: vec3<u32>, wg_size: u32) -> u32 {
    return gid.x + gid.y * nwg.x * wg_size;
}

// Rank-1 update of a 4x4 block held as a matrix: column i += b * x[i], as four vec4 FMAs.
// Accumulating into named matrices keeps output blocks in registers with no array indexing
// (arrays indexed in loops may spill to memory).
fn rank1(m: mat4x4<f32>, b: vec4<f32>, x: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(fma(b, vec4<f32>(x.x), m[0]), fma(b, vec4<f32>(x.y), m[1]),
                       fma(b, vec4<f32>(x.z), m[2]), fma(b, vec4<f32>(x.w), m[3]));
}
