// Naive direct convolution: one invocation per output element. The second reference kernel.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 64u);
    let total = p.n * p.cout * p.oh * p.ow;
    if (i >= total) { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let co = (i / (p.ow * p.oh)) % p.cout;
    let b = i / (p.ow * p.oh * p.cout);
    let g = co / p.cout_g;
    var acc = 0.0;
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let xc = (b * p.cin + g * p.cin_g + ci) * p.h;
        for (var r = 0u; r < p.kh; r++) {
            let iy = i32(oy * p.stride_h + r * p.dil_h) - i32(p.pad_t);
            if (iy < 0 || iy >= i32(p.h)) { continue; }
            for (var s = 0u; s < p.kw; s++) {
                let ix = i32(ox * p.stride_w + s * p.dil_w) - i32(p.pad_l);
                if (ix < 0 || ix >= i32(p.w)) { continue; }
                acc += x[(xc + u32(iy)) * p.w + u32(ix)] * wt[((co * p.cin_g + ci) * p.kh + r) * p.kw + s];
            }
        }
    }
    if (p.has_bias != 0u) { acc += bias[co]; }
    if (p.has_res != 0u) { acc += res[i]; }
    y[i] = activate(acc);
}
