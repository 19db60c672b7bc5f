// Parameters of the packed-weight conv kernels: the conv's (as in conv/params.wgsl, with
// cblocks = output-channel blocks per group) and the packed weight's layout (src/ops/quant.rs):
// row_t texels per output channel, group_t texels per scale group, ngroups groups per channel,
// zoff = the word in `qm` where the zero points start. A weight row is the OIHW weight of one
// output channel flattened in (ci, r, s) order: K index (ci * kh + r) * kw + s.
struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, oh: u32, ow: u32, groups: u32,
    kh: u32, kw: u32, stride_h: u32, stride_w: u32,
    pad_t: u32, pad_l: u32, dil_h: u32, dil_w: u32,
    cin_g: u32, cout_g: u32, cblocks: u32, has_bias: u32,
    has_res: u32, row_t: u32, group_t: u32, ngroups: u32,
    zoff: u32, _p0: u32, _p1: u32, _p2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> qm: array<u32>;
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
