// The f32 sum of conv_strip_tex.wgsl: per input channel of the group and kernel row, one vec4
// FMA per tap for each output channel and 4 outputs.

// One tap: weights `wa` (channels 0..4) and `wb` (4..8) times the windows `lo` and `hi`.
fn tap(a: Acc, lo: vec4<f32>, hi: vec4<f32>, wa: vec4<f32>, wb: vec4<f32>) -> Acc {
    var r = a;
    r.l0 = fma(vec4<f32>(wa.x), lo, r.l0); r.l1 = fma(vec4<f32>(wa.y), lo, r.l1);
    r.l2 = fma(vec4<f32>(wa.z), lo, r.l2); r.l3 = fma(vec4<f32>(wa.w), lo, r.l3);
    r.l4 = fma(vec4<f32>(wb.x), lo, r.l4); r.l5 = fma(vec4<f32>(wb.y), lo, r.l5);
    r.l6 = fma(vec4<f32>(wb.z), lo, r.l6); r.l7 = fma(vec4<f32>(wb.w), lo, r.l7);
    if (PX > 4u) {
        r.h0 = fma(vec4<f32>(wa.x), hi, r.h0); r.h1 = fma(vec4<f32>(wa.y), hi, r.h1);
        r.h2 = fma(vec4<f32>(wa.z), hi, r.h2); r.h3 = fma(vec4<f32>(wa.w), hi, r.h3);
        r.h4 = fma(vec4<f32>(wb.x), hi, r.h4); r.h5 = fma(vec4<f32>(wb.y), hi, r.h5);
        r.h6 = fma(vec4<f32>(wb.z), hi, r.h6); r.h7 = fma(vec4<f32>(wb.w), hi, r.h7);
    }
    return r;
}

// Adds one kernel row: input texture row `ty` (texels from `tx0`), weight rows from `wrow`
// (the row's KW taps), weight texel column `tc` (channels 0..4; `tc + 1`: 4..8).
fn row(a: Acc, tx0: u32, ty: u32, wrow: u32, tc: u32) -> Acc {
    var cols: array<f32, 32>;
    for (var t = 0u; t < NT; t++) {
        let q = textureLoad(xt, vec2<u32>(tx0 + t, ty), 0);
        cols[4u * t] = q.x;
        cols[4u * t + 1u] = q.y;
        cols[4u * t + 2u] = q.z;
        cols[4u * t + 3u] = q.w;
    }
    var r = a;
    for (var kx = 0u; kx < KW; kx++) {
        let s = kx * DW;
        let lo = vec4<f32>(cols[s], cols[s + SW], cols[s + 2u * SW], cols[s + 3u * SW]);
        var hi = vec4<f32>(0.0);
        if (PX > 4u) {
            hi = vec4<f32>(cols[s + 4u * SW], cols[s + 5u * SW], cols[s + 6u * SW], cols[s + 7u * SW]);
        }
        let wa = textureLoad(wt, vec2<u32>(tc, wrow + kx), 0);
        let wb = textureLoad(wt, vec2<u32>(tc + 1u, wrow + kx), 0);
        r = tap(r, lo, hi, wa, wb);
    }
    return r;
}

// The block's 8 channels x PX outputs summed over the group's cin_g input channels: planes
// from `pl0`, weight rows from `w0` (KH * KW per channel), the strip at texel column `tx` and
// padded row `ty` of each plane, weight texel column `tc`.
fn accumulate(pl0: u32, w0: u32, tx: u32, ty: u32, tc: u32) -> Acc {
    let z = vec4<f32>(0.0);
    var a = Acc(z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
    for (var ci = 0u; ci < p.cin_g; ci++) {
        // A strip starts at padded column ox0 * SW, a multiple of 4 (PX is): on a texel.
        let origin = plane_texel(pl0 + ci, tx, ty);
        let wr = w0 + ci * KH * KW;
        // One call per kernel row, each with a constant row: the guards fold away.
        a = row(a, origin.x, origin.y, wr, tc);
        if (KH > 1u) { a = row(a, origin.x, origin.y + DH, wr + KW, tc); }
        if (KH > 2u) { a = row(a, origin.x, origin.y + 2u * DH, wr + 2u * KW, tc); }
        if (KH > 3u) { a = row(a, origin.x, origin.y + 3u * DH, wr + 3u * KW, tc); }
        if (KH > 4u) { a = row(a, origin.x, origin.y + 4u * DH, wr + 4u * KW, tc); }
        if (KH > 5u) { a = row(a, origin.x, origin.y + 5u * DH, wr + 5u * KW, tc); }
        if (KH > 6u) { a = row(a, origin.x, origin.y + 6u * DH, wr + 6u * KW, tc); }
    }
    return a;
}
