// Direct convolution with the weights as an rgba32float texture: texel (cblk, g * taps + t)
// holds the weights of tap t for output channels 4*cblk .. 4*cblk + 4 of group g (cout_g padded
// to 8). Each invocation owns 8 output channels (two texel columns) of PX consecutive output
// pixels; the pixels belong to the workgroup (workgroup_id.y), so input loads are uniform across
// it when groups == 1. No early return before the loads.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var wt: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(8, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let npix = p.oh * p.ow;
    let cblocks = p.cout_gp / 8u;
    let blk = min(wid.x * 8u + lid.x, cblocks * p.groups - 1u);
    let g = blk / cblocks;
    let cl0 = (blk % cblocks) * 8u;
    let pix0 = wid.y * PX;
    let b = wid.z;
    var oy0: array<i32, PX>;
    var ox0: array<i32, PX>;
    for (var q = 0u; q < PX; q++) {
        let pix = min(pix0 + q, npix - 1u);
        oy0[q] = i32((pix / p.ow) * p.stride_h) - i32(p.pad_t);
        ox0[q] = i32((pix % p.ow) * p.stride_w) - i32(p.pad_l);
    }
    var acc0: array<vec4<f32>, PX>;
    var acc1: array<vec4<f32>, PX>;
    let taps = p.cin_g * p.kh * p.kw;
    var trow = g * taps;
    let tc = cl0 / 4u;
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let xc = (b * p.cin + g * p.cin_g + ci) * p.h;
        for (var r = 0u; r < p.kh; r++) {
            let dy = i32(r * p.dil_h);
            for (var s = 0u; s < p.kw; s++) {
                let dx = i32(s * p.dil_w);
                let w0 = textureLoad(wt, vec2<u32>(tc, trow), 0);
                let w1 = textureLoad(wt, vec2<u32>(tc + 1u, trow), 0);
                trow += 1u;
                for (var q = 0u; q < PX; q++) {
                    let iy = oy0[q] + dy;
                    let ix = ox0[q] + dx;
                    let inside = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
                    let idx = select(0u, (xc + u32(iy)) * p.w + u32(ix), inside);
                    let v = select(0.0, x[idx], inside);
                    acc0[q] = fma(w0, vec4<f32>(v), acc0[q]);
                    acc1[q] = fma(w1, vec4<f32>(v), acc1[q]);
                }
            }
        }
    }
    if (wid.x * 8u + lid.x >= cblocks * p.groups) { return; }
    for (var q = 0u; q < PX; q++) {
        let pix = pix0 + q;
        if (pix >= npix) { break; }
        for (var c = 0u; c < 8u; c++) {
            let cl = cl0 + c;
            if (cl >= p.cout_g) { break; }
            let co = g * p.cout_g + cl;
            let o = (b * p.cout + co) * npix + pix;
            var v = select(acc1[q][c & 3u], acc0[q][c & 3u], c < 4u);
            if (p.has_bias != 0u) { v += bias[co]; }
            if (p.has_res != 0u) { v += res[o]; }
            y[o] = activate(v);
        }
    }
}
