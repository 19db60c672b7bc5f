enable f16;
// The sum of conv_strip_tex.wgsl with f16 products (adapters with `shader-f16`, sessions that
// allow reduced precision): input channels go in runs of 4. Per run and kernel row the 4
// channels' input texels are loaded once and rounded to f16; per tap the 4 channels' weight
// texels are rounded to f16, and for each output channel and 4 outputs the 4 products (one per
// input channel) are multiplied and summed as vec4<f16> and that partial added to the f32
// accumulator (dot4_f16.wgsl), so the sum over K = cin_g * KH * KW stays f32. A last run past
// cin_g repeats the last channel's plane and weights with its inputs zeroed, adding exact zeros.
// Same blocking, texture layouts and named accumulators as conv_strip_acc.wgsl.

// The 4 channels of a run: their planes' origins (texel column, padded row), which of them lie
// within the group, and their first weight rows.
struct Run {
    o0: vec2<u32>, o1: vec2<u32>, o2: vec2<u32>, o3: vec2<u32>,
    ok: vec4<bool>, wr: vec4<u32>,
}

// The NT texels of a channel's padded row `dy` below its origin `o`, in f16; zeros for a
// channel past the group's last (`ok` false).
fn cols_h(o: vec2<u32>, dy: u32, ok: bool) -> array<f16, 32> {
    var cols: array<f16, 32>;
    for (var t = 0u; t < NT; t++) {
        let q = vec4<f16>(select(vec4<f32>(0.0), textureLoad(xt, vec2<u32>(o.x + t, o.y + dy), 0), ok));
        cols[4u * t] = q.x;
        cols[4u * t + 1u] = q.y;
        cols[4u * t + 2u] = q.z;
        cols[4u * t + 3u] = q.w;
    }
    return cols;
}

// The window of tap kx for outputs 0..4 (`hi` false) or 4..8 of the strip.
fn win(cols: array<f16, 32>, kx: u32, hi: bool) -> vec4<f16> {
    let s = kx * DW + select(0u, 4u * SW, hi);
    return vec4<f16>(cols[s], cols[s + SW], cols[s + 2u * SW], cols[s + 3u * SW]);
}

// Weight texel column `tc` (+1: channels 4..8) of weight row `r`, in f16.
fn wh(tc: u32, r: u32) -> vec4<f16> {
    return vec4<f16>(textureLoad(wt, vec2<u32>(tc, r), 0));
}

// Kernel row ky (a constant at each call) of a run: per tap, the 4 input channels' products
// for each of the 8 output channels in f16, each partial added to its f32 accumulator.
fn row4(a: Acc, run: Run, ky: u32, tc: u32) -> Acc {
    let dy = ky * DH;
    let c0 = cols_h(run.o0, dy, run.ok.x);
    let c1 = cols_h(run.o1, dy, run.ok.y);
    let c2 = cols_h(run.o2, dy, run.ok.z);
    let c3 = cols_h(run.o3, dy, run.ok.w);
    let wr = run.wr + vec4<u32>(ky * KW);
    var r = a;
    for (var kx = 0u; kx < KW; kx++) {
        // Channel j's weights for output channels 0..4 (`a`) and 4..8 (`b`).
        let a0 = wh(tc, wr.x + kx); let a1 = wh(tc, wr.y + kx); let a2 = wh(tc, wr.z + kx); let a3 = wh(tc, wr.w + kx);
        let b0 = wh(tc + 1u, wr.x + kx); let b1 = wh(tc + 1u, wr.y + kx);
        let b2 = wh(tc + 1u, wr.z + kx); let b3 = wh(tc + 1u, wr.w + kx);
        let l0 = win(c0, kx, false); let l1 = win(c1, kx, false); let l2 = win(c2, kx, false); let l3 = win(c3, kx, false);
        r.l0 += dot4h(vec4<f16>(a0.x, a1.x, a2.x, a3.x), l0, l1, l2, l3);
        r.l1 += dot4h(vec4<f16>(a0.y, a1.y, a2.y, a3.y), l0, l1, l2, l3);
        r.l2 += dot4h(vec4<f16>(a0.z, a1.z, a2.z, a3.z), l0, l1, l2, l3);
        r.l3 += dot4h(vec4<f16>(a0.w, a1.w, a2.w, a3.w), l0, l1, l2, l3);
        r.l4 += dot4h(vec4<f16>(b0.x, b1.x, b2.x, b3.x), l0, l1, l2, l3);
        r.l5 += dot4h(vec4<f16>(b0.y, b1.y, b2.y, b3.y), l0, l1, l2, l3);
        r.l6 += dot4h(vec4<f16>(b0.z, b1.z, b2.z, b3.z), l0, l1, l2, l3);
        r.l7 += dot4h(vec4<f16>(b0.w, b1.w, b2.w, b3.w), l0, l1, l2, l3);
        if (PX > 4u) {
            let h0 = win(c0, kx, true); let h1 = win(c1, kx, true); let h2 = win(c2, kx, true); let h3 = win(c3, kx, true);
            r.h0 += dot4h(vec4<f16>(a0.x, a1.x, a2.x, a3.x), h0, h1, h2, h3);
            r.h1 += dot4h(vec4<f16>(a0.y, a1.y, a2.y, a3.y), h0, h1, h2, h3);
            r.h2 += dot4h(vec4<f16>(a0.z, a1.z, a2.z, a3.z), h0, h1, h2, h3);
            r.h3 += dot4h(vec4<f16>(a0.w, a1.w, a2.w, a3.w), h0, h1, h2, h3);
            r.h4 += dot4h(vec4<f16>(b0.x, b1.x, b2.x, b3.x), h0, h1, h2, h3);
            r.h5 += dot4h(vec4<f16>(b0.y, b1.y, b2.y, b3.y), h0, h1, h2, h3);
            r.h6 += dot4h(vec4<f16>(b0.z, b1.z, b2.z, b3.z), h0, h1, h2, h3);
            r.h7 += dot4h(vec4<f16>(b0.w, b1.w, b2.w, b3.w), h0, h1, h2, h3);
        }
    }
    return r;
}

// As conv_strip_acc.wgsl's `accumulate`, in runs of 4 input channels.
fn accumulate(pl0: u32, w0: u32, tx: u32, ty: u32, tc: u32) -> Acc {
    let z = vec4<f32>(0.0);
    var a = Acc(z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
    let last = p.cin_g - 1u;
    for (var ci = 0u; ci < p.cin_g; ci += 4u) {
        let cs = vec4<u32>(ci) + vec4<u32>(0u, 1u, 2u, 3u);
        let c = min(cs, vec4<u32>(last));
        let run = Run(plane_texel(pl0 + c.x, tx, ty), plane_texel(pl0 + c.y, tx, ty),
                      plane_texel(pl0 + c.z, tx, ty), plane_texel(pl0 + c.w, tx, ty),
                      cs <= vec4<u32>(last), vec4<u32>(w0) + c * (KH * KW));
        // One call per kernel row, each with a constant row: the guards fold away.
        a = row4(a, run, 0u, tc);
        if (KH > 1u) { a = row4(a, run, 1u, tc); }
        if (KH > 2u) { a = row4(a, run, 2u, tc); }
        if (KH > 3u) { a = row4(a, run, 3u, tc); }
        if (KH > 4u) { a = row4(a, run, 4u, tc); }
        if (KH > 5u) { a = row4(a, run, 5u, tc); }
        if (KH > 6u) { a = row4(a, run, 6u, tc); }
    }
    return a;
}
