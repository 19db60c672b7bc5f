// Copies a depthwise conv input x ([planes][h][w]) into the zero-padded rgba32float texture
// the strip kernel reads (layout in dw_params.wgsl): one texel (4 consecutive padded columns)
// per invocation. Texture stores and gathers are cheap on lavapipe, while every storage access
// with a computed offset is a loop over the SIMD lanes, so the input is read from storage
// exactly once here and the kernel's overlapping windows come from the texture.
@group(0) @binding(0) var<uniform> p: DwParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var t: texture_storage_2d<rgba32float, write>;

fn xval(base: u32, ix: i32) -> f32 {
    let inside = ix >= 0 && ix < i32(p.w);
    return select(0.0, x[base + u32(clamp(ix, 0, i32(p.w) - 1))], inside);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let pl = wid.y + wid.z * p.gy;
    let i = gid.x;
    if (i >= p.tw * p.hp || pl >= p.planes) { return; }
    let tx = i % p.tw;
    let r = i / p.tw;
    let iy = i32(r) - i32(p.pad_t);
    var v = vec4<f32>(0.0);
    if (iy >= 0 && iy < i32(p.h)) {
        let base = (pl * p.h + u32(iy)) * p.w;
        let ix = i32(tx * 4u) - i32(p.pad_l);
        v = vec4<f32>(xval(base, ix), xval(base, ix + 1), xval(base, ix + 2), xval(base, ix + 3));
    }
    textureStore(t, plane_texel(pl, tx, r), v);
}
