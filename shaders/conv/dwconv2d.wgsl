// Depthwise convolution (groups == cin == cout): each invocation computes PX consecutive output
// pixels of one channel, so each of the kh*kw weights is loaded once and reused PX times.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

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
    var acc: array<f32, PX>;
    let xc = (b * p.cin + c) * p.h;
    for (var r = 0u; r < p.kh; r++) {
        let dy = i32(r * p.dil_h);
        for (var s = 0u; s < p.kw; s++) {
            let dx = i32(s * p.dil_w);
            let wv = wt[(c * p.kh + r) * p.kw + s];
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
