// Dynamic int8 quantisation of activations, one workgroup per row of A: s = max|x| / 127 (1 for
// an all-zero row), q = round(x / s) in -127..127. Writes the row's codes as texels of 16
// (texel (t, row), 4 codes per u32, low byte first, zero past K) and its scale at texel
// (row_t, row), for the int8 x int8 matmul (qgemv_i8.wgsl).
struct Params { rows: u32, k: u32, row_t: u32, stride: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var xq: texture_storage_2d<rgba32uint, write>;

var<workgroup> red: array<f32, 64>;

fn code(v: f32, inv: f32) -> u32 {
    return u32(i32(clamp(round(v * inv), -127.0, 127.0))) & 0xffu;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x + wid.y * p.stride;
    let live = row < p.rows;
    let r = min(row, p.rows - 1u);
    var m = 0.0;
    for (var k = lid.x; k < p.k; k += 64u) { m = max(m, abs(x[r * p.k + k])); }
    red[lid.x] = m;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid.x < s) { red[lid.x] = max(red[lid.x], red[lid.x + s]); }
        workgroupBarrier();
    }
    let amax = red[0];
    let scale = select(amax / 127.0, 1.0, amax == 0.0);
    let inv = 1.0 / scale;
    if (!live) { return; }
    for (var t = lid.x; t < p.row_t; t += 64u) {
        var w = vec4<u32>(0u);
        for (var e = 0u; e < 16u; e++) {
            let k = t * 16u + e;
            if (k < p.k) { w[e / 4u] |= code(x[r * p.k + k], inv) << ((e % 4u) * 8u); }
        }
        textureStore(xq, vec2<u32>(t, r), w);
    }
    if (lid.x == 0u) { textureStore(xq, vec2<u32>(p.row_t, r), vec4<u32>(bitcast<u32>(scale), 0u, 0u, 0u)); }
}
