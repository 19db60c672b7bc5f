// Depthwise convolution (groups == cin == cout) on a packed weight read as stored: each
// invocation computes PX consecutive output pixels of one channel. The channel's kh * kw taps
// (one or a few texels) are dequantised once per invocation, (code - zero) * scale exactly as
// the CPU decoder, and each is reused for the PX pixels, summed in the reference's (r, s)
// order. The epilogue is dwconv2d.wgsl's. qw() comes from qw_buffer.wgsl.

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let npix = p.oh * p.ow;
    let pix0 = gid.x * PX;
    let c = gid.y;
    let b = gid.z;
    if (pix0 >= npix || c >= p.cout || b >= p.n) { return; }
    var oy0: array<i32, PX>;
    var ox0: array<i32, PX>;
    for (var q = 0u; q < PX; q++) {
        let pix = min(pix0 + q, npix - 1u);
        oy0[q] = i32((pix / p.ow) * p.stride_h) - i32(p.pad_t);
        ox0[q] = i32((pix % p.ow) * p.stride_w) - i32(p.pad_l);
    }
    // The channel's taps, dequantised once ((code - zero) * scale, as the CPU decoder) into
    // registers; then the loop is dwconv2d.wgsl's, tap by tap in the reference's (r, s) order.
    // kh * kw <= 32 (the fit check sends larger kernels to the general packed kernel).
    var wts: array<f32, 32>;
    let taps = p.kh * p.kw;
    for (var t = 0u; t < p.row_t; t++) {
        let tex = qw(c, t);
        let si = c * p.ngroups + t / p.group_t;
        let s = q_scale(si);
        let z = q_zero(si);
        for (var j = 0u; j < QV4; j++) {
            let wv = (q_codes(tex, j) - vec4<f32>(z)) * s;
            let k0 = (t * QV4 + j) * 4u;
            for (var e = 0u; e < 4u; e++) {
                if (k0 + e < taps) { wts[k0 + e] = wv[e]; }
            }
        }
    }
    var acc: array<f32, PX>;
    let xc = (b * p.cin + c) * p.h;
    for (var r = 0u; r < p.kh; r++) {
        let dy = i32(r * p.dil_h);
        for (var s = 0u; s < p.kw; s++) {
            let dx = i32(s * p.dil_w);
            let wv = wts[r * p.kw + s];
            for (var q = 0u; q < PX; q++) {
                let iy = oy0[q] + dy;
                let ix = ox0[q] + dx;
                let inside = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
                let idx = select(0u, (xc + u32(iy)) * p.w + u32(ix), inside);
                acc[q] += wv * select(0.0, x[idx], inside);
            }
        }
    }
    for (var q = 0u; q < PX; q++) {
        let pix = pix0 + q;
        if (pix >= npix) { break; }
        let o = (b * p.cout + c) * npix + pix;
        var v = acc[q];
        if (p.has_bias != 0u) { v += bias[c]; }
        if (p.has_res != 0u) { v += res[o]; }
        y[o] = activate(v);
    }
}
