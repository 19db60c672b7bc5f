// Copies x, viewed as [rows][cols], into an rgba32float texture: texel (c4, r) holds
// x[r][4*c4 .. 4*c4 + 4], zero past the last column. Lets later kernels read an activation
// through the texture path (vector gathers on CPU adapters).
struct Params { rows: u32, cols: u32, cols4: u32, _p0: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var t: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c4 = gid.x;
    let r = gid.y;
    if (c4 >= p.cols4 || r >= p.rows) { return; }
    var v = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        let col = c4 * 4u + e;
        if (col < p.cols) { v[e] = x[r * p.cols + col]; }
    }
    textureStore(t, vec2<u32>(c4, r), v);
}
