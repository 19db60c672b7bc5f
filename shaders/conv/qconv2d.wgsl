// Direct convolution on a packed weight (int8, int4, pow2, f16) read as stored, never inflated
// to f32. Each invocation computes R output channels (of one group) x PX consecutive output
// pixels. It walks the R weight rows texel by texel (K index k = (ci * kh + r) * kw + s, the
// OIHW flattening), unpacks each texel once into QV4 vec4s of codes, gathers the four input
// taps of each vec4 for its PX pixels (zero outside the padded image and past K) and dots them
// with the codes. Per scale group it sums code * x, then adds scale * (sum - zero * sum(x)), so
// scale and zero point cost one multiply per group (as quant/qmatmul.wgsl). The epilogue
// (bias, residual, activation) is conv2d_tiled.wgsl's. qw() comes from qw_buffer/qw_texture.
// PW = 1 specialises pointwise convs (1x1, stride 1, no padding): tap k is input channel k at
// the output pixel itself, always inside the image, so the gather needs no bounds or counters.

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let npix = p.oh * p.ow;
    let pix0 = gid.x * PX;
    let g = gid.y / p.cblocks;
    let cl0 = (gid.y % p.cblocks) * R;
    let b = gid.z;
    if (pix0 >= npix || g >= p.groups || b >= p.n) { return; }
    let hw = i32(p.h * p.w);
    // Per pixel: the top-left tap's row, column and offset in an input plane (may be negative).
    var oy: array<i32, PX>;
    var ox: array<i32, PX>;
    var po: array<i32, PX>;
    for (var q = 0u; q < PX; q++) {
        let pix = min(pix0 + q, npix - 1u);
        oy[q] = i32((pix / p.ow) * p.stride_h) - i32(p.pad_t);
        ox[q] = i32((pix % p.ow) * p.stride_w) - i32(p.pad_l);
        po[q] = oy[q] * i32(p.w) + ox[q];
    }
    // Weight rows of the R channels; channels past the group's last repeat it (dropped below).
    var rows: array<u32, R>;
    for (var r = 0u; r < R; r++) { rows[r] = g * p.cout_g + min(cl0 + r, p.cout_g - 1u); }
    // The group's first input plane.
    let xg = (b * p.cin + g * p.cin_g) * p.h * p.w;
    let ih = vec4<i32>(i32(p.h));
    let iw = vec4<i32>(i32(p.w));
    // The K index as counters (ci, r, s), advanced one tap at a time.
    var kc = 0u;
    var kr = 0u;
    var ks = 0u;
    var acc: array<f32, PX * R>;
    for (var gi = 0u; gi < p.ngroups; gi++) {
        let t0 = gi * p.group_t;
        let t1 = min(t0 + p.group_t, p.row_t);
        // Zeroed explicitly for each group (a declaration without initializer should be too,
        // but Chromium's WebGPU on SwiftShader kept the previous group's sums).
        var part = array<f32, PX * R>();
        var xs = array<f32, PX>();
        for (var t = t0; t < t1; t++) {
            var wv: array<vec4<u32>, R>;
            for (var r = 0u; r < R; r++) { wv[r] = qw(rows[r], t); }
            for (var j = 0u; j < QV4; j++) {
                // The four taps of this vec4: offset in the group's input, row and column shift,
                // and whether the tap exists (K is padded to whole texels with zero codes).
                var off: vec4<i32>;
                var dy: vec4<i32>;
                var dx: vec4<i32>;
                var ok: vec4<bool>;
                for (var e = 0u; e < 4u; e++) {
                    ok[e] = kc < p.cin_g;
                    if (PW == 1u) {
                        off[e] = i32(kc) * hw;
                        kc++;
                        continue;
                    }
                    dy[e] = i32(kr * p.dil_h);
                    dx[e] = i32(ks * p.dil_w);
                    off[e] = i32(kc) * hw + dy[e] * i32(p.w) + dx[e];
                    ks++;
                    if (ks == p.kw) {
                        ks = 0u;
                        kr++;
                        if (kr == p.kh) {
                            kr = 0u;
                            kc++;
                        }
                    }
                }
                var cv: array<vec4<f32>, R>;
                for (var r = 0u; r < R; r++) { cv[r] = q_codes(wv[r], j); }
                for (var q = 0u; q < PX; q++) {
                    var inside = ok;
                    if (PW == 0u) {
                        let iy = vec4<i32>(oy[q]) + dy;
                        let ix = vec4<i32>(ox[q]) + dx;
                        inside = ok & (iy >= vec4<i32>(0)) & (iy < ih) & (ix >= vec4<i32>(0)) & (ix < iw);
                    }
                    let idx = select(vec4<u32>(0u), vec4<u32>(xg) + bitcast<vec4<u32>>(vec4<i32>(po[q]) + off), inside);
                    let xv = select(vec4<f32>(0.0), vec4<f32>(x[idx.x], x[idx.y], x[idx.z], x[idx.w]), inside);
                    if (ZERO == 1u) { xs[q] += (xv.x + xv.y) + (xv.z + xv.w); }
                    for (var r = 0u; r < R; r++) { part[q * R + r] += dot(xv, cv[r]); }
                }
            }
        }
        for (var r = 0u; r < R; r++) {
            let si = rows[r] * p.ngroups + gi;
            let s = q_scale(si);
            let z = q_zero(si);
            for (var q = 0u; q < PX; q++) { acc[q * R + r] += s * (part[q * R + r] - z * xs[q]); }
        }
    }
    for (var q = 0u; q < PX; q++) {
        let pix = pix0 + q;
        if (pix >= npix) { break; }
        for (var r = 0u; r < R; r++) {
            let cl = cl0 + r;
            if (cl >= p.cout_g) { break; }
            let co = g * p.cout_g + cl;
            let o = (b * p.cout + co) * npix + pix;
            var v = acc[q * R + r];
            if (p.has_bias != 0u) { v += bias[co]; }
            if (p.has_res != 0u) { v += res[o]; }
            y[o] = activate(v);
        }
    }
}
