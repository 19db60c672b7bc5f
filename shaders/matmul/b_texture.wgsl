// B operand of gemm_block.wgsl as an rgba32float texture (vector-gather reads on CPU adapters,
// the texture cache on mobile GPUs).
@group(0) @binding(2) var bt: texture_2d<f32>;

fn b_at(col4: u32, row: u32) -> vec4<f32> {
    return textureLoad(bt, vec2<u32>(min(col4, p.n4 - 1u), row), 0);
}
