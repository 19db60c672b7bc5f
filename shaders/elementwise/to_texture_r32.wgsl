// Copies x, viewed as [rows][cols], into an r32float texture, texel (col, row) = x[row][col],
// so a later kernel can read the activation through the texture path.
struct Params { rows: u32, cols: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var t: texture_storage_2d<r32float, write>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.cols || gid.y >= p.rows) { return; }
    textureStore(t, vec2<u32>(gid.x, gid.y), vec4<f32>(x[gid.y * p.cols + gid.x], 0.0, 0.0, 0.0));
}
