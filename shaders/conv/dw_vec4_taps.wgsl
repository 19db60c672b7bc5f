// f32 products of dwconv2d_vec4.wgsl: one vec4 FMA per tap and 4 outputs.

// Tap kx of kernel row ky (constants at each call) applied to a loaded input row.
fn tap(a: Acc, cols: array<f32, 80>, wk: array<f32, 52>, ky: u32, kx: u32) -> Acc {
    var o = a;
    let w = vec4<f32>(wk[ky * KW + kx]);
    let s = OFF + kx * DW;
    o.a = fma(w, vec4<f32>(cols[s], cols[s + SW], cols[s + 2u * SW], cols[s + 3u * SW]), o.a);
    o.b = fma(w, vec4<f32>(cols[s + 4u * SW], cols[s + 5u * SW], cols[s + 6u * SW], cols[s + 7u * SW]), o.b);
    if (PX > 8u) {
        o.c = fma(w, vec4<f32>(cols[s + 8u * SW], cols[s + 9u * SW], cols[s + 10u * SW], cols[s + 11u * SW]), o.c);
        o.d = fma(w, vec4<f32>(cols[s + 12u * SW], cols[s + 13u * SW], cols[s + 14u * SW], cols[s + 15u * SW]), o.d);
    }
    return o;
}

// Kernel row ky (a constant at each call) applied to a loaded input row: one call per tap, so
// nothing depends on the compiler unrolling a loop (a loop left rolled indexes `cols` at run
// time, which puts it in memory).
fn taps(a: Acc, cols: array<f32, 80>, wk: array<f32, 52>, ky: u32) -> Acc {
    var o = tap(a, cols, wk, ky, 0u);
    if (KW > 1u) { o = tap(o, cols, wk, ky, 1u); }
    if (KW > 2u) { o = tap(o, cols, wk, ky, 2u); }
    if (KW > 3u) { o = tap(o, cols, wk, ky, 3u); }
    if (KW > 4u) { o = tap(o, cols, wk, ky, 4u); }
    if (KW > 5u) { o = tap(o, cols, wk, ky, 5u); }
    if (KW > 6u) { o = tap(o, cols, wk, ky, 6u); }
    return o;
}
