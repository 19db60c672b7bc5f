// N:4 sparse matmul (NK = 1 or 2 kept values in every group of 4 columns) on the texture path.
// At upload the kept values are re-laid K-major: value quad t of weight row n (its kept slots
// 4t .. 4t + 3, covering groups 4t / NK ..) sits in texel (t / QPT) * N + n of `tv` (QPT quads
// a texel: 1 f32, 2 f16, 4 i8), and the quad's four 2-bit positions in the group form byte t of
// row n's position stream, 16 bytes a texel of `tp` (texel (t / 16) * N + n). Texel i is at
// t_at(i) (tex_vals.wgsl).
//
// Why: a group of 4 columns is exactly one texel of A's per-run rgba32float texture, and every
// invocation reads the same A texel at the same step (a uniform load), so a kept value costs
// one component select instead of a gather; adjacent invocations (weight rows) read adjacent
// value texels; a 2:4 weight streams half the value bytes of the dense one plus 1 byte of
// positions per 4 kept values. One invocation per weight row and row of A.
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    has_bias: u32, has_res: u32, _p0: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var at: texture_2d<f32>;
@group(0) @binding(2) var tp: texture_2d<u32>;
@group(0) @binding(3) var tv: texture_2d<u32>;
@group(0) @binding(4) var<storage, read_write> ss: array<f32>;
@group(0) @binding(5) var<storage, read_write> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> res: array<f32>;
@group(0) @binding(7) var<storage, read_write> c: array<f32>;

// Value quad t of weight row n (tex_vals.wgsl's decoding on K-major coordinates).
fn quad(n: u32, t: u32) -> vec4<f32> {
    if (VALS == 0u) {
        return bitcast<vec4<f32>>(textureLoad(tv, t_at(t * p.n + n), 0));
    }
    if (VALS == 1u) {
        let x = textureLoad(tv, t_at((t >> 1u) * p.n + n), 0);
        let w = select(x.xy, x.zw, (t & 1u) == 1u);
        return vec4<f32>(s_half(w.x & 0xffffu), s_half(w.x >> 16u),
                         s_half(w.y & 0xffffu), s_half(w.y >> 16u));
    }
    let w = textureLoad(tv, t_at((t >> 2u) * p.n + n), 0)[t & 3u];
    let s = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u),
                      bitcast<i32>(w << 8u), bitcast<i32>(w));
    return vec4<f32>(s >> vec4<u32>(24u));
}

// Component `i` (0..3) of x without indexing a vector by a run-time value.
fn pick(x: vec4<f32>, i: u32) -> f32 {
    return select(select(x.x, x.y, i == 1u), select(x.z, x.w, i == 3u), i >= 2u);
}

// The quad's four kept values times A's entries at their positions (`pb`: 4 x 2 bits) in
// A texels x0 .. x3 (NK = 2 uses x0 for slots 0-1 and x1 for slots 2-3).
fn madd(v: vec4<f32>, pb: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>,
        x3: vec4<f32>) -> f32 {
    if (NK == 2u) {
        return v.x * pick(x0, pb & 3u) + v.y * pick(x0, (pb >> 2u) & 3u)
             + v.z * pick(x1, (pb >> 4u) & 3u) + v.w * pick(x1, (pb >> 6u) & 3u);
    }
    return v.x * pick(x0, pb & 3u) + v.y * pick(x1, (pb >> 2u) & 3u)
         + v.z * pick(x2, (pb >> 4u) & 3u) + v.w * pick(x3, (pb >> 6u) & 3u);
}

// A's texels of row `r` for value quad t (4 / NK groups of 4 columns); texels past K read 0.
fn a_at(r: u32, g: u32, k4: u32) -> vec4<f32> {
    if (g >= k4) { return vec4<f32>(0.0); }
    return textureLoad(at, vec2<u32>(g, r), 0);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    // One row of A per invocation: y over the batch-flattened [batch * m] rows.
    let r = gid.y;
    if (n >= p.n || r >= p.m * p.batch) { return; }
    let k4 = p.k / 4u;
    let quads = (k4 * NK + 3u) / 4u;
    var acc = 0.0;
    for (var t = 0u; t < quads; t++) {
        let pb = (textureLoad(tp, t_at((t >> 4u) * p.n + n), 0)[(t >> 2u) & 3u]
            >> ((t & 3u) * 8u)) & 0xffu;
        let v = quad(n, t);
        let g = t * (4u / NK);
        let x0 = a_at(r, g, k4);
        let x1 = a_at(r, g + 1u, k4);
        var x2 = x0;
        var x3 = x1;
        if (NK == 1u) {
            x2 = a_at(r, g + 2u, k4);
            x3 = a_at(r, g + 3u, k4);
        }
        acc += madd(v, pb, x0, x1, x2, x3);
    }
    t_store(r, n, acc);
}
