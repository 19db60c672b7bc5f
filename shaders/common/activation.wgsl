// Shared epilogue helpers, prepended to every kernel.
// Every storage binding in wgedge's kernels is declared read_write, inputs included: activations
// live at offsets of one arena buffer, and WebGPU forbids binding one buffer both read-only and
// writable in a dispatch. The kernels never write their inputs.
// ACT selects the activation at pipeline-creation time (no per-element branch cost):
// 0 none, 1 relu, 2 relu6, 3 leaky-relu(ALPHA), 4 sigmoid, 5 tanh, 6 gelu (tanh form),
// 7 silu, 8 hardswish, 9 hardsigmoid (PyTorch's x / 6 + 1/2, clamped to [0, 1]).
override ACT: u32 = 0u;
override ALPHA: f32 = 0.01;

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
        default: { return x; }
    }
}

// tanh through exp of a non-positive argument: never overflows, unlike the naive form.
fn tanh_stable(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - e) / (1.0 + e);
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
