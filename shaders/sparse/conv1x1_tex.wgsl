// Sparse 1x1 convolution (stride 1, no padding, one group), after Elsen et al., "Fast Sparse
// ConvNets" (CVPR 2020): the weight [Cout, Cin] is CSR in the texture layout (groups of 4
// entries, tex_vals.wgsl); the input [N, Cin, H*W] is copied each run into an rgba32float
// texture whose texel (p / 4, n * Cin + ci) holds 4 consecutive pixels of channel ci. Each
// stored weight multiplies a vector of pixels, so the pixels fill the lanes and a pruned weight
// costs nothing. Invocations: x = blocks of PX texels (4 * PX pixels), y = output channel
// (adjacent invocations share the weight row: uniform loads), z = image of the batch.
struct Params {
    cin: u32, cout: u32, hw: u32, hw4: u32,
    has_bias: u32, has_res: u32, _p0: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var xt: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> gp: array<u32>;
@group(0) @binding(3) var tc: texture_2d<u32>;
@group(0) @binding(4) var tv: texture_2d<u32>;
@group(0) @binding(5) var<storage, read_write> ss: array<f32>;
@group(0) @binding(6) var<storage, read_write> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> res: array<f32>;
@group(0) @binding(8) var<storage, read_write> c: array<f32>;

fn px4(q: u32, row: u32, cols: vec4<u32>, v: vec4<f32>) -> vec4<f32> {
    return v.x * textureLoad(xt, vec2<u32>(q, row + cols.x), 0)
         + v.y * textureLoad(xt, vec2<u32>(q, row + cols.y), 0)
         + v.z * textureLoad(xt, vec2<u32>(q, row + cols.z), 0)
         + v.w * textureLoad(xt, vec2<u32>(q, row + cols.w), 0);
}

fn store4(q: u32, co: u32, img: u32, acc: vec4<f32>) {
    let sc = t_scale(co);
    for (var e = 0u; e < 4u; e++) {
        let px = q * 4u + e;
        if (px < p.hw) {
            let o = (img * p.cout + co) * p.hw + px;
            var v = acc[e] * sc;
            if (p.has_bias != 0u) { v += bias[co]; }
            if (p.has_res != 0u) { v += res[o]; }
            c[o] = activate(v);
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let q0 = gid.x * PX;
    let co = gid.y;
    let img = gid.z;
    if (q0 >= p.hw4 || co >= p.cout) { return; }
    let row = img * p.cin;
    let q1 = min(q0 + 1u, p.hw4 - 1u);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    let end = gp[co + 1u];
    for (var g = gp[co]; g < end; g++) {
        let cols = textureLoad(tc, t_at(g), 0);
        let v = t_vals4(g);
        acc0 += px4(q0, row, cols, v);
        if (PX > 1u) { acc1 += px4(q1, row, cols, v); }
    }
    store4(q0, co, img, acc0);
    if (PX > 1u && q0 + 1u < p.hw4) { store4(q1, co, img, acc1); }
}
