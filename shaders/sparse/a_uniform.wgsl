// Copies A, viewed as [rows][cols], into a node-private buffer that the next dispatch reads as
// a uniform array of vec4s: element r * cols4 + q holds A[r][4q .. 4q + 4], zero past the last
// column. For csr_uni.wgsl (why a uniform: see there).
struct Params { rows: u32, cols: u32, cols4: u32, _p0: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> xs: array<vec4<f32>>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let q = gid.x;
    let r = gid.y;
    if (q >= p.cols4 || r >= p.rows) { return; }
    var v = vec4<f32>(0.0);
    let col = q * 4u;
    let row = r * p.cols;
    if (col < p.cols) { v.x = x[row + col]; }
    if (col + 1u < p.cols) { v.y = x[row + col + 1u]; }
    if (col + 2u < p.cols) { v.z = x[row + col + 2u]; }
    if (col + 3u < p.cols) { v.w = x[row + col + 3u]; }
    xs[r * p.cols4 + q] = v;
}
