// A operand of the packed-weight matmul from an rgba32float texture written by
// to_texture.wgsl (texel (q, bat * M + row) = A[bat][row][4q .. 4q + 4], zero past K).
@group(0) @binding(1) var at: texture_2d<f32>;

fn xv(bat: u32, row: u32, q: u32) -> vec4<f32> {
    return textureLoad(at, vec2<u32>(q, bat * p.m + min(row, p.m - 1u)), 0);
}
