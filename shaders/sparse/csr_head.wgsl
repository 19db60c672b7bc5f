// Bindings and parameters shared by the CSR texture kernels (csr_tex.wgsl, csr_stage.wgsl):
// A's per-run rgba32float texture `at`, the row (or (chunk, row)) group pointers `gp`, the
// groups' column texture `tc` and value texture `tv` (tex_vals.wgsl), i8 row scales `ss`, and
// the epilogue's bias, residual and output (tex_store.wgsl).
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    has_bias: u32, has_res: u32, _p0: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var at: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> gp: array<u32>;
@group(0) @binding(3) var tc: texture_2d<u32>;
@group(0) @binding(4) var tv: texture_2d<u32>;
@group(0) @binding(5) var<storage, read_write> ss: array<f32>;
@group(0) @binding(6) var<storage, read_write> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> res: array<f32>;
@group(0) @binding(8) var<storage, read_write> c: array<f32>;
