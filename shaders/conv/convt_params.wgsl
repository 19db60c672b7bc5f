// ConvTranspose2d parameters (NCHW input, weights [cin][cout / groups][kh][kw]).
struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, oh: u32, ow: u32, groups: u32,
    kh: u32, kw: u32, stride_h: u32, stride_w: u32,
    pad_t: u32, pad_l: u32, dil_h: u32, dil_w: u32,
    cin_g: u32, cout_g: u32, has_bias: u32, mblocks: u32,
    cblocks: u32, has_res: u32, _p1: u32, _p2: u32,
}
