// Direct convolution reading both operands through textures: the input x copied each run by
// to_texture.wgsl into an r32float texture (texel (ix, (b * cin + c) * h + iy)), the weights
// packed at load into rgba32float texels (texel (cblk, g * taps + t): tap t of output channels
// 4 * cblk .. 4 * cblk + 4 of group g, cout_g padded to 8). Each invocation computes 8 output
// channels (two texel columns) for PX = 4 or 8 consecutive output pixels; accumulators are named
// vec4 variables (o<pixel><channel quad>). On lavapipe texture reads take a vector-gather path
// while storage loads with computed offsets are scalar loops per lane.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var xt: texture_2d<f32>;
@group(0) @binding(2) var wt: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn store8(b: u32, g: u32, cl0: u32, pix: u32, lo: vec4<f32>, hi: vec4<f32>) {
    let npix = p.oh * p.ow;
    if (pix >= npix) { return; }
    for (var c = 0u; c < 8u; c++) {
        let cl = cl0 + c;
        if (cl >= p.cout_g) { return; }
        let co = g * p.cout_g + cl;
        let o = (b * p.cout + co) * npix + pix;
        var v = select(hi[c & 3u], lo[c & 3u], c < 4u);
        if (p.has_bias != 0u) { v += bias[co]; }
        if (p.has_res != 0u) { v += res[o]; }
        y[o] = activate(v);
    }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let cblocks = p.cout_gp / 8u;
    let pix0 = gid.x * PX;
    let blk = min(gid.y, cblocks * p.groups - 1u);
    let g = blk / cblocks;
    let cl0 = (blk % cblocks) * 8u;
    let b = gid.z;
    let q0 = origin(pix0); let q1 = origin(pix0 + 1u); let q2 = origin(pix0 + 2u); let q3 = origin(pix0 + 3u);
    let q4 = origin(pix0 + 4u); let q5 = origin(pix0 + 5u); let q6 = origin(pix0 + 6u); let q7 = origin(pix0 + 7u);
    var o0a = vec4<f32>(0.0); var o0b = vec4<f32>(0.0); var o1a = vec4<f32>(0.0); var o1b = vec4<f32>(0.0);
    var o2a = vec4<f32>(0.0); var o2b = vec4<f32>(0.0); var o3a = vec4<f32>(0.0); var o3b = vec4<f32>(0.0);
    var o4a = vec4<f32>(0.0); var o4b = vec4<f32>(0.0); var o5a = vec4<f32>(0.0); var o5b = vec4<f32>(0.0);
    var o6a = vec4<f32>(0.0); var o6b = vec4<f32>(0.0); var o7a = vec4<f32>(0.0); var o7b = vec4<f32>(0.0);
    let tc = cl0 / 4u;
    var trow = g * p.cin_g * p.kh * p.kw;
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let row0 = i32((b * p.cin + g * p.cin_g + ci) * p.h);
        for (var r = 0u; r < p.kh; r++) {
            let dy = i32(r * p.dil_h);
            for (var s = 0u; s < p.kw; s++) {
                let d = vec2<i32>(dy, i32(s * p.dil_w));
                let wa = textureLoad(wt, vec2<u32>(tc, trow), 0);
                let wb = textureLoad(wt, vec2<u32>(tc + 1u, trow), 0);
                trow += 1u;
                let x0 = vec4<f32>(xval(row0, q0.x + d.x, q0.y + d.y)); let x1 = vec4<f32>(xval(row0, q1.x + d.x, q1.y + d.y));
                let x2 = vec4<f32>(xval(row0, q2.x + d.x, q2.y + d.y)); let x3 = vec4<f32>(xval(row0, q3.x + d.x, q3.y + d.y));
                o0a = fma(wa, x0, o0a); o0b = fma(wb, x0, o0b); o1a = fma(wa, x1, o1a); o1b = fma(wb, x1, o1b);
                o2a = fma(wa, x2, o2a); o2b = fma(wb, x2, o2b); o3a = fma(wa, x3, o3a); o3b = fma(wb, x3, o3b);
                if (PX > 4u) {
                    let x4 = vec4<f32>(xval(row0, q4.x + d.x, q4.y + d.y)); let x5 = vec4<f32>(xval(row0, q5.x + d.x, q5.y + d.y));
                    let x6 = vec4<f32>(xval(row0, q6.x + d.x, q6.y + d.y)); let x7 = vec4<f32>(xval(row0, q7.x + d.x, q7.y + d.y));
                    o4a = fma(wa, x4, o4a); o4b = fma(wb, x4, o4b); o5a = fma(wa, x5, o5a); o5b = fma(wb, x5, o5b);
                    o6a = fma(wa, x6, o6a); o6b = fma(wb, x6, o6b); o7a = fma(wa, x7, o7a); o7b = fma(wb, x7, o7b);
                }
            }
        }
    }
    if (gid.y >= cblocks * p.groups) { return; }
    store8(b, g, cl0, pix0, o0a, o0b); store8(b, g, cl0, pix0 + 1u, o1a, o1b);
    store8(b, g, cl0, pix0 + 2u, o2a, o2b); store8(b, g, cl0, pix0 + 3u, o3a, o3b);
    if (PX > 4u) {
        store8(b, g, cl0, pix0 + 4u, o4a, o4b); store8(b, g, cl0, pix0 + 5u, o5a, o5b);
        store8(b, g, cl0, pix0 + 6u, o6a, o6b); store8(b, g, cl0, pix0 + 7u, o7a, o7b);
    }
}
