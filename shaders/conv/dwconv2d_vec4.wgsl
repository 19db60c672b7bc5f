// Depthwise convolution reading the input straight from storage as vec4s (W a multiple of 4):
// each invocation computes PY (1, 2 or 4) output rows x PX (8 or 16) outputs along W of one channel. Each
// input row the block needs is loaded once as NT aligned vec4s and applied to every output row
// it reaches; the window geometry (KH x KW taps, stride SH x SW, dilation DH x DW, and
// OFF = the strip's first column mod 4) is compiled in, so all loops have constant trip counts
// and every column pick is a constant index. Accumulators and stores are vec4 (ow a multiple
// of 4). On lavapipe a storage access costs a loop over the SIMD lanes per access, about the
// same for a vec4 as for a scalar, so vec4 loads of rows shared by PY outputs are what makes
// this kernel fast there. The taps' products `taps` come from a prelude: dw_vec4_taps.wgsl
// (f32 FMAs) or dw_vec4_taps_f16.wgsl (f16 products summed in f32).
@group(0) @binding(0) var<uniform> p: DwParams;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> wt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> y: array<vec4<f32>>;

const SPAN: u32 = (PX - 1u) * SW + (KW - 1u) * DW + 1u;
const NT: u32 = (OFF + SPAN + 3u) / 4u;
const NR: u32 = (PY - 1u) * SH + (KH - 1u) * DH + 1u;
const TAPS: u32 = KH * KW;

// Block geometry shared by the row steps.
struct Block { rbase0: i32, t0: i32, iy0: i32 }

// PX outputs of one output row, in named accumulators (arrays indexed in loops spill).
struct Acc { a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32> }
struct Rows { r0: Acc, r1: Acc, r2: Acc, r3: Acc }

// The NT vec4s of input row r of the block (zeros outside the image).
fn load_row(r: u32, bk: Block) -> array<f32, 80> {
    let iy = bk.iy0 + i32(r);
    let w4 = i32(p.w / 4u);
    let row_ok = iy >= 0 && iy < i32(p.h);
    let rbase = bk.rbase0 + clamp(iy, 0, i32(p.h) - 1) * w4;
    var cols: array<f32, 80>;
    for (var t = 0u; t < NT; t++) {
        let ti = bk.t0 + i32(t);
        let ok = row_ok && ti >= 0 && ti < w4;
        let q = select(vec4<f32>(0.0), x[u32(rbase + clamp(ti, 0, w4 - 1))], ok);
        cols[4u * t] = q.x;
        cols[4u * t + 1u] = q.y;
        cols[4u * t + 2u] = q.z;
        cols[4u * t + 3u] = q.w;
    }
    return cols;
}

// Input row r (a constant at each call) added to the output rows it reaches.
fn step(r: u32, bk: Block, wk: array<f32, 52>, acc: Rows) -> Rows {
    let cols = load_row(r, bk);
    var o = acc;
    if (r % DH == 0u && r / DH < KH) { o.r0 = taps(o.r0, cols, wk, r / DH); }
    if (PY > 1u && r >= SH && (r - SH) % DH == 0u && (r - SH) / DH < KH) {
        o.r1 = taps(o.r1, cols, wk, (r - SH) / DH);
    }
    if (PY > 2u && r >= 2u * SH && (r - 2u * SH) % DH == 0u && (r - 2u * SH) / DH < KH) {
        o.r2 = taps(o.r2, cols, wk, (r - 2u * SH) / DH);
    }
    if (PY > 3u && r >= 3u * SH && (r - 3u * SH) % DH == 0u && (r - 3u * SH) / DH < KH) {
        o.r3 = taps(o.r3, cols, wk, (r - 3u * SH) / DH);
    }
    return o;
}

fn store4(o: u32, v: vec4<f32>, b: f32) {
    var s = v + b;
    if (p.has_res != 0u) { s += res[o]; }
    y[o] = vec4<f32>(activate(s.x), activate(s.y), activate(s.z), activate(s.w));
}

fn store_row(pl: u32, oy: u32, ox0: u32, a: Acc, b: f32) {
    if (oy >= p.oh) { return; }
    let o = ((pl * p.oh + oy) * p.ow + ox0) / 4u;
    // ow is a multiple of 4, so each vec4 is wholly inside or outside the row.
    store4(o, a.a, b);
    if (ox0 + 4u < p.ow) { store4(o + 1u, a.b, b); }
    if (PX > 8u) {
        if (ox0 + 8u < p.ow) { store4(o + 2u, a.c, b); }
        if (ox0 + 12u < p.ow) { store4(o + 3u, a.d, b); }
    }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let pl = wid.y + wid.z * p.gy;
    let strip = gid.x % p.strips;
    let oy0 = (gid.x / p.strips) * PY;
    if (oy0 >= p.oh || pl >= p.planes) { return; }
    let ch = pl % p.c;
    let ox0 = strip * PX;
    // First vec4 of the strip's columns (ox0 * SW - pad_l - OFF is a multiple of 4).
    let bk = Block(i32(pl * p.h * (p.w / 4u)), (i32(ox0 * SW) - i32(p.pad_l) - i32(OFF)) / 4,
                   i32(oy0 * SH) - i32(p.pad_t));
    var wk: array<f32, 52>;
    for (var t = 0u; t < (TAPS + 3u) / 4u; t++) {
        let q = wt[ch * ((TAPS + 3u) / 4u) + t];
        wk[4u * t] = q.x;
        wk[4u * t + 1u] = q.y;
        wk[4u * t + 2u] = q.z;
        wk[4u * t + 3u] = q.w;
    }
    let z = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    // One step per input row, each with a constant row index (the guards fold away).
    var a = step(0u, bk, wk, Rows(z, z, z, z));
    if (NR > 1u) { a = step(1u, bk, wk, a); }
    if (NR > 2u) { a = step(2u, bk, wk, a); }
    if (NR > 3u) { a = step(3u, bk, wk, a); }
    if (NR > 4u) { a = step(4u, bk, wk, a); }
    if (NR > 5u) { a = step(5u, bk, wk, a); }
    if (NR > 6u) { a = step(6u, bk, wk, a); }
    if (NR > 7u) { a = step(7u, bk, wk, a); }
    if (NR > 8u) { a = step(8u, bk, wk, a); }
    if (NR > 9u) { a = step(9u, bk, wk, a); }
    if (NR > 10u) { a = step(10u, bk, wk, a); }
    if (NR > 11u) { a = step(11u, bk, wk, a); }
    var b = 0.0;
    if (p.has_bias != 0u) { b = bias[ch]; }
    store_row(pl, oy0, ox0, a.r0, b);
    if (PY > 1u) { store_row(pl, oy0 + 1u, ox0, a.r1, b); }
    if (PY > 2u) {
        store_row(pl, oy0 + 2u, ox0, a.r2, b);
        store_row(pl, oy0 + 3u, ox0, a.r3, b);
    }
}
