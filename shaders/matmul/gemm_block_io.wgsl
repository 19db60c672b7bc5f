// Parameters, bindings and A row addressing shared by the block GEMM kernels (gemm_block.wgsl
// with f32 products, gemm_block_f16.wgsl with f16 products); B comes from the b_buffer.wgsl /
// b_texture.wgsl prelude and the epilogue from store4.wgsl.
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_bs: u32, a_rs: u32, a_ks: u32, b_bk: u32,
    n4: u32, has_bias: u32, has_res: u32, _p0: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

// Index of A[row][0] of this batch (from `a0`), rows past M clamped to the last.
fn a_row(a0: u32, row: u32) -> u32 {
    return a0 + min(row, p.m - 1u) * p.a_rs;
}
