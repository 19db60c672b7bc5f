// Parameters of the pointwise-as-GEMM kernels (`conv1x1_gemm.wgsl`): a 1x1, stride-1, unpadded
// conv is, per image, the GEMM Y[cout][hw] = W[cout][cin] x X[cin][hw], whose output is
// already NCHW.
struct PwParams {
    cin: u32, cout: u32, hw: u32, hw4: u32,
    cin4: u32, n: u32, has_bias: u32, has_res: u32,
}
