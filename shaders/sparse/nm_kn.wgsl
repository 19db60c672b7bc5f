// N:4 sparse GEMV / GEMM (NK = 1 or 2 kept values in every group of 4 columns, f32 values)
// laid out like the dense `tex` GEMV's weight: by texel columns of 4 weight rows. At upload
// (`ops/sparse.rs`, [`SPart::NmKnVals`] / [`SPart::NmKnPos`]) slot s of group g of rows
// 4c .. 4c + 3 becomes texel (g * NK + s) * C4 + c of `tv` (C4 = ceil(N / 4)); the 2-bit
// positions of rows 4c + o in group g are bits (g % 2) * 16 + o * 4 (slot 0) and + 2 (slot 1)
// of word (g % 8) / 2 of texel (g / 8) * C4 + c of `tp`. Texel i is at t_at(i) (tex_vals.wgsl).
//
// Why: every invocation reads the same texel of A (the group's 4 columns) at the same step, as
// the dense GEMV reads the same A element, and picks each kept value's operand from it with
// selects on the 2-bit position; adjacent invocations read adjacent weight texels. So a 2:4
// weight streams NK texels a group where the dense kernel streams 4, with no per-entry gather
// (`nmtex` gathers per weight row instead and lost to the dense GEMV on lavapipe). One
// invocation per TN4 (1, 2) texel columns (4 weight rows each) and row of A; named
// accumulators (arrays spill on lavapipe).
struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    has_bias: u32, has_res: u32, c4: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var at: texture_2d<f32>;
@group(0) @binding(2) var tp: texture_2d<u32>;
@group(0) @binding(3) var tv: texture_2d<u32>;
@group(0) @binding(4) var<storage, read_write> ss: array<f32>;
@group(0) @binding(5) var<storage, read_write> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> res: array<f32>;
@group(0) @binding(7) var<storage, read_write> c: array<f32>;

// Per lane o, component q[o] (0..3) of the shared A texel x, by selects (no run-time index).
fn pick4(x: vec4<f32>, q: vec4<u32>) -> vec4<f32> {
    return select(select(vec4<f32>(x.x), vec4<f32>(x.y), q == vec4<u32>(1u)),
                  select(vec4<f32>(x.z), vec4<f32>(x.w), q == vec4<u32>(3u)),
                  q >= vec4<u32>(2u));
}

// Group g of texel column c: its NK value texels times A's texel x at the 4 rows' positions
// (`nib`: 4 bits a row, low 16 bits used).
fn grp(c: u32, g: u32, nib: u32, x: vec4<f32>) -> vec4<f32> {
    let q = vec4<u32>(nib, nib >> 4u, nib >> 8u, nib >> 12u);
    let va = bitcast<vec4<f32>>(textureLoad(tv, t_at(g * NK * p.c4 + c), 0));
    var s = va * pick4(x, q & vec4<u32>(3u));
    if (NK == 2u) {
        let vb = bitcast<vec4<f32>>(textureLoad(tv, t_at((g * 2u + 1u) * p.c4 + c), 0));
        s += vb * pick4(x, (q >> vec4<u32>(2u)) & vec4<u32>(3u));
    }
    return s;
}

// A's texel g of row r; past K it reads 0 (the padded groups' values are 0 too).
fn a_at(r: u32, g: u32, k4: u32) -> vec4<f32> {
    if (g >= k4) { return vec4<f32>(0.0); }
    return textureLoad(at, vec2<u32>(g, r), 0);
}

// Groups 8 o8 .. 8 o8 + 7 of texel column c (one position texel), given their A texels.
fn oct(c: u32, o8: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
       x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> vec4<f32> {
    let pw = textureLoad(tp, t_at(o8 * p.c4 + c), 0);
    let g = o8 * 8u;
    return grp(c, g, pw.x, x0) + grp(c, g + 1u, pw.x >> 16u, x1)
         + grp(c, g + 2u, pw.y, x2) + grp(c, g + 3u, pw.y >> 16u, x3)
         + grp(c, g + 4u, pw.z, x4) + grp(c, g + 5u, pw.z >> 16u, x5)
         + grp(c, g + 6u, pw.w, x6) + grp(c, g + 7u, pw.w >> 16u, x7);
}

fn store4(r: u32, c: u32, acc: vec4<f32>) {
    let n = c * 4u;
    if (n < p.n) { t_store(r, n, acc.x); }
    if (n + 1u < p.n) { t_store(r, n + 1u, acc.y); }
    if (n + 2u < p.n) { t_store(r, n + 2u, acc.z); }
    if (n + 3u < p.n) { t_store(r, n + 3u, acc.w); }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * TN4;
    // One row of A per invocation: y over the batch-flattened [batch * m] rows.
    let r = gid.y;
    if (c0 >= p.c4 || r >= p.m * p.batch) { return; }
    // A second texel column past the end repeats the first and is not stored.
    let c1 = min(c0 + 1u, p.c4 - 1u);
    let k4 = p.k / 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    let octs = (k4 + 7u) / 8u;
    for (var o8 = 0u; o8 < octs; o8++) {
        let g = o8 * 8u;
        let x0 = a_at(r, g, k4);
        let x1 = a_at(r, g + 1u, k4);
        let x2 = a_at(r, g + 2u, k4);
        let x3 = a_at(r, g + 3u, k4);
        let x4 = a_at(r, g + 4u, k4);
        let x5 = a_at(r, g + 5u, k4);
        let x6 = a_at(r, g + 6u, k4);
        let x7 = a_at(r, g + 7u, k4);
        acc0 += oct(c0, o8, x0, x1, x2, x3, x4, x5, x6, x7);
        if (TN4 > 1u) { acc1 += oct(c1, o8, x0, x1, x2, x3, x4, x5, x6, x7); }
    }
    store4(r, c0, acc0);
    if (TN4 > 1u && c0 + 1u < p.c4) { store4(r, c0 + 1u, acc1); }
}
