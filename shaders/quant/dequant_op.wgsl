// Dequantize op: decodes a whole packed weight to f32 with the shared dequantiser, so
// tests compare it with the Rust decoder element by element. One invocation per texel.
struct Params { rows: u32, cols: u32, row_t: u32, group_t: u32, ngroups: u32, zoff: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> qm: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let row = gid.y;
    if (t >= p.row_t || row >= p.rows) { return; }
    let gi = row * p.ngroups + t / p.group_t;
    let s = q_scale(gi);
    let z = q_zero(gi);
    let tex = w[row * p.row_t + t];
    for (var j = 0u; j < QV4; j++) {
        let v = (q_codes(tex, j) - vec4<f32>(z)) * s;
        for (var e = 0u; e < 4u; e++) {
            let col = (t * QV4 + j) * 4u + e;
            if (col < p.cols) { out[row * p.cols + col] = v[e]; }
        }
    }
}
