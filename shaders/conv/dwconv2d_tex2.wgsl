// Depthwise convolution reading the input (copied per run into an r32float texture, texel
// (ix, (b * c + ch) * h + iy)) and the weights (packed at load as rgba32float texels: texel
// (t / 4, ch) holds taps 4 * (t / 4) .. + 4 of channel ch) through textures. Each invocation
// computes PX = 4 or 8 consecutive output pixels of one channel (named accumulators).
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var xt: texture_2d<f32>;
@group(0) @binding(2) var wt: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn store1(b: u32, c: u32, pix: u32, v: f32) {
    let npix = p.oh * p.ow;
    if (pix >= npix) { return; }
    let o = (b * p.cout + c) * npix + pix;
    var x = v;
    if (p.has_bias != 0u) { x += bias[c]; }
    if (p.has_res != 0u) { x += res[o]; }
    y[o] = activate(x);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pix0 = gid.x * PX;
    let c = gid.y;
    let b = gid.z;
    let row0 = i32((b * p.cin + c) * p.h);
    let q0 = origin(pix0); let q1 = origin(pix0 + 1u); let q2 = origin(pix0 + 2u); let q3 = origin(pix0 + 3u);
    let q4 = origin(pix0 + 4u); let q5 = origin(pix0 + 5u); let q6 = origin(pix0 + 6u); let q7 = origin(pix0 + 7u);
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    var t = 0u;
    for (var r = 0u; r < p.kh; r++) {
        let dy = i32(r * p.dil_h);
        for (var s = 0u; s < p.kw; s++) {
            let dx = i32(s * p.dil_w);
            let w = textureLoad(wt, vec2<u32>(t >> 2u, c), 0)[t & 3u];
            t += 1u;
            let x = vec4<f32>(xval(row0, q0.x + dy, q0.y + dx), xval(row0, q1.x + dy, q1.y + dx),
                              xval(row0, q2.x + dy, q2.y + dx), xval(row0, q3.x + dy, q3.y + dx));
            lo = fma(vec4<f32>(w), x, lo);
            if (PX > 4u) {
                let z = vec4<f32>(xval(row0, q4.x + dy, q4.y + dx), xval(row0, q5.x + dy, q5.y + dx),
                                  xval(row0, q6.x + dy, q6.y + dx), xval(row0, q7.x + dy, q7.y + dx));
                hi = fma(vec4<f32>(w), z, hi);
            }
        }
    }
    if (c >= p.cout) { return; }
    store1(b, c, pix0, lo.x); store1(b, c, pix0 + 1u, lo.y); store1(b, c, pix0 + 2u, lo.z); store1(b, c, pix0 + 3u, lo.w);
    if (PX > 4u) {
        store1(b, c, pix0 + 4u, hi.x); store1(b, c, pix0 + 5u, hi.y); store1(b, c, pix0 + 6u, hi.z); store1(b, c, pix0 + 7u, hi.w);
    }
}
