// Transposed convolution, gather form: output (oy, ox) sums x[iy][ix] * w[ci][co][ky][kx] over
// the taps with oy + pad_t = iy * stride_h + ky * dil_h (and likewise along W), so every output
// is written by one invocation and no atomics are needed. An invocation computes 4 output
// channels (a vec4) x PX outputs of one row that share a phase r = ox mod stride_w: outputs
// ox = r + stride_w * m for m = m0 .. m0 + PX - 1. Outputs of one phase meet the same kx taps,
// and for each tap their inputs are consecutive (ix = m + (r + pad_l - kx * dil_w) / stride_w),
// so one weight vec4 serves PX inputs.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// Input at column ix of the row starting at `row`; 0 outside the image.
fn xv(row: u32, ix: i32) -> f32 {
    let inside = ix >= 0 && ix < i32(p.w);
    return select(0.0, x[row + u32(clamp(ix, 0, i32(p.w) - 1))], inside);
}

// Weight of output channel co of the group (tap at index `base` of channel 0); 0 past cout_g.
fn wv(base: u32, co: u32) -> f32 {
    let ok = co < p.cout_g;
    return select(0.0, wt[base + min(co, p.cout_g - 1u) * p.kh * p.kw], ok);
}

// Stores output channel co of group g (channel g * cout_g + co): act(v + bias + residual), in
// the CPU reference's order.
fn store(b: u32, g: u32, co: u32, oy: u32, ox: u32, v: f32) {
    if (co >= p.cout_g || ox >= p.ow) { return; }
    let oc = g * p.cout_g + co;
    let o = ((b * p.cout + oc) * p.oh + oy) * p.ow + ox;
    var s = v;
    if (p.has_bias != 0u) { s += bias[oc]; }
    if (p.has_res != 0u) { s += res[o]; }
    y[o] = activate(s);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let mblk = gid.x % p.mblocks;
    let t = gid.x / p.mblocks;
    let r = t % p.stride_w;
    let oy = t / p.stride_w;
    let g = gid.y / p.cblocks;
    let co0 = (gid.y % p.cblocks) * 4u;
    let b = gid.z;
    if (oy >= p.oh || g >= p.groups || b >= p.n) { return; }
    let m0 = i32(mblk * PX);
    let sh = i32(p.stride_h);
    let sw = i32(p.stride_w);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let ty = i32(oy + p.pad_t) - i32(ky * p.dil_h);
        if (ty < 0 || ty % sh != 0 || ty / sh >= i32(p.h)) { continue; }
        let iy = u32(ty / sh);
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = i32(r + p.pad_l) - i32(kx * p.dil_w);
            // tx may be negative: the tap applies when it is a multiple of the stride.
            if (((tx % sw) + sw) % sw != 0) { continue; }
            let ix0 = m0 + tx / sw;
            for (var ci = 0u; ci < p.cin_g; ci++) {
                let c = g * p.cin_g + ci;
                let row = ((b * p.cin + c) * p.h + iy) * p.w;
                let base = ((c * p.cout_g) * p.kh + ky) * p.kw + kx;
                let w4 = vec4<f32>(wv(base, co0), wv(base, co0 + 1u), wv(base, co0 + 2u), wv(base, co0 + 3u));
                a0 = fma(vec4<f32>(xv(row, ix0)), w4, a0);
                if (PX > 1u) { a1 = fma(vec4<f32>(xv(row, ix0 + 1)), w4, a1); }
                if (PX > 2u) {
                    a2 = fma(vec4<f32>(xv(row, ix0 + 2)), w4, a2);
                    a3 = fma(vec4<f32>(xv(row, ix0 + 3)), w4, a3);
                }
            }
        }
    }
    for (var q = 0u; q < PX; q++) {
        var a = a0;
        if (q == 1u) { a = a1; }
        if (q == 2u) { a = a2; }
        if (q == 3u) { a = a3; }
        let ox = r + p.stride_w * (u32(m0) + q);
        store(b, g, co0, oy, ox, a.x);
        store(b, g, co0 + 1u, oy, ox, a.y);
        store(b, g, co0 + 2u, oy, ox, a.z);
        store(b, g, co0 + 3u, oy, ox, a.w);
    }
}
