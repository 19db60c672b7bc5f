// Register-blocked convolution for CPU-like adapters (lavapipe): the input is copied once per
// run, zero-padded, into the rgba32float plane texture of the strip depthwise kernel
// (dw_pad_tex.wgsl; layout in dw_params.wgsl, one plane per image and input channel), and the
// weights are packed once at upload into texels of 4 output channels per tap (texel
// (cblk, g * cin_g * KH * KW + tap), cout_g padded to 8). Each invocation computes 8 output
// channels x PX (4 or 8) consecutive outputs of one output row: per input channel and kernel
// row it loads the NT texels the strip's windows cover, and per tap 2 weight texels, then adds
// one vec4 FMA per output channel and 4 outputs (weight broadcast x window). The window
// geometry (KH x KW taps, stride SH x SW, dilation DH x DW) is compiled in, so every tap loop
// has a constant trip count and every column pick is a constant index; accumulators are named
// vec4s carried through the calls (arrays indexed in loops spill on lavapipe). This is the
// implicit GEMM over (8 channels) x (PX pixels) with K = cin_g * KH * KW gathered from the
// texture, with the gather's index arithmetic folded into constants.
// The residual and output bindings and the epilogue store `store(co, o, n, lo, hi)` come from a
// prelude: strip_store.wgsl (scalar, any width) or strip_store_vec4.wgsl (vec4 stores, output
// widths that are multiples of 4); the sum over input channels and taps `accumulate` from
// conv_strip_acc.wgsl (f32 FMAs) or conv_strip_acc_f16.wgsl (f16 products summed in f32).
struct SParams {
    planes: u32, cin: u32, h: u32, w: u32,
    oh: u32, ow: u32, tw: u32, hp: u32,
    ppc: u32, strips: u32, cout: u32, cout_g: u32,
    cin_g: u32, cblocks: u32, groups: u32, gy: u32,
    has_bias: u32, has_res: u32, _p0: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: SParams;
@group(0) @binding(1) var xt: texture_2d<f32>;
@group(0) @binding(2) var wt: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;

const SPAN: u32 = (PX - 1u) * SW + (KW - 1u) * DW + 1u;
const NT: u32 = (SPAN + 3u) / 4u;

// Output channel c (0..8) x pixels 0..4 (`l`) and 4..8 (`h`).
struct Acc {
    l0: vec4<f32>, l1: vec4<f32>, l2: vec4<f32>, l3: vec4<f32>,
    l4: vec4<f32>, l5: vec4<f32>, l6: vec4<f32>, l7: vec4<f32>,
    h0: vec4<f32>, h1: vec4<f32>, h2: vec4<f32>, h3: vec4<f32>,
    h4: vec4<f32>, h5: vec4<f32>, h6: vec4<f32>, h7: vec4<f32>,
}

// Texel of plane `pl` at (texel column tx, padded row r), as dw_params.wgsl lays planes out.
fn plane_texel(pl: u32, tx: u32, r: u32) -> vec2<u32> {
    return vec2<u32>((pl / p.ppc) * p.tw + tx, (pl % p.ppc) * p.hp + r);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    // Blocks of 8 output channels: (image * groups + group) * cblocks + block.
    let blk = wid.y + wid.z * p.gy;
    let strip = gid.x % p.strips;
    let oy = gid.x / p.strips;
    if (oy >= p.oh || blk >= (p.planes / p.cin) * p.groups * p.cblocks) { return; }
    let cb = blk % p.cblocks;
    let bg = blk / p.cblocks;
    let g = bg % p.groups;
    let b = bg / p.groups;
    let ox0 = strip * PX;
    // The group's input planes from pl0 and weight rows from w0, this strip's texel column and
    // padded row in each plane, this block's weight texel column.
    let a = accumulate(b * p.cin + g * p.cin_g, g * p.cin_g * KH * KW, (ox0 * SW) / 4u, oy * SH, cb * 2u);
    let npix = p.oh * p.ow;
    let n = min(PX, p.ow - ox0);
    let cl0 = cb * 8u;
    let o0 = (b * p.cout + g * p.cout_g + cl0) * npix + oy * p.ow + ox0;
    let c = p.cout_g - cl0;
    store(g * p.cout_g + cl0, o0, n, a.l0, a.h0);
    if (c > 1u) { store(g * p.cout_g + cl0 + 1u, o0 + npix, n, a.l1, a.h1); }
    if (c > 2u) { store(g * p.cout_g + cl0 + 2u, o0 + 2u * npix, n, a.l2, a.h2); }
    if (c > 3u) { store(g * p.cout_g + cl0 + 3u, o0 + 3u * npix, n, a.l3, a.h3); }
    if (c > 4u) { store(g * p.cout_g + cl0 + 4u, o0 + 4u * npix, n, a.l4, a.h4); }
    if (c > 5u) { store(g * p.cout_g + cl0 + 5u, o0 + 5u * npix, n, a.l5, a.h5); }
    if (c > 6u) { store(g * p.cout_g + cl0 + 6u, o0 + 6u * npix, n, a.l6, a.h6); }
    if (c > 7u) { store(g * p.cout_g + cl0 + 7u, o0 + 7u * npix, n, a.l7, a.h7); }
}
