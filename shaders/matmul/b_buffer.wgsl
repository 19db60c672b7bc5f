// B operand of gemm_block.wgsl as a storage buffer of vec4 (the portable path).
@group(0) @binding(2) var<storage, read_write> bb: array<vec4<f32>>;

fn b_at(col4: u32, row: u32) -> vec4<f32> {
    return bb[row * p.n4 + min(col4, p.n4 - 1u)];
}
