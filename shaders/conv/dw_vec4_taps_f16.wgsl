enable f16;
// f16 products of dwconv2d_vec4.wgsl (adapters with `shader-f16`, sessions that allow reduced
// precision): each kernel row's taps go in runs of up to 4; per run and 4 outputs the windows
// and weights are rounded to f16, the products multiplied and summed as vec4<f16> and that
// partial added to the f32 accumulator, so the sum over the KH * KW taps stays f32
// (dot4_f16.wgsl says why). The rows stay the f32 arrays dwconv2d_vec4.wgsl loads and each
// window is rounded as it is used: a form with f16 row arrays built far slower on lavapipe.
// Values past f16's range become infinite: the caller opted in.

// The window of tap kx for outputs 4j .. 4j + 4 of the strip.
fn win(cols: array<f32, 80>, kx: u32, j: u32) -> vec4<f16> {
    let s = OFF + kx * DW + 4u * j * SW;
    return vec4<f16>(vec4<f32>(cols[s], cols[s + SW], cols[s + 2u * SW], cols[s + 3u * SW]));
}

// Taps k0 .. min(k0 + 4, KW) of kernel row ky (constants at each call) for outputs 4j .. 4j + 4,
// multiplied and summed in f16, returned in f32.
fn part(cols: array<f32, 80>, wk: array<f32, 52>, ky: u32, k0: u32, j: u32) -> vec4<f32> {
    let w0 = ky * KW + k0;
    var h = vec4<f16>(f16(wk[w0])) * win(cols, k0, j);
    if (KW > k0 + 1u) { h = fma(vec4<f16>(f16(wk[w0 + 1u])), win(cols, k0 + 1u, j), h); }
    if (KW > k0 + 2u) { h = fma(vec4<f16>(f16(wk[w0 + 2u])), win(cols, k0 + 2u, j), h); }
    if (KW > k0 + 3u) { h = fma(vec4<f16>(f16(wk[w0 + 3u])), win(cols, k0 + 3u, j), h); }
    return vec4<f32>(h);
}

// One run of taps (from k0) of kernel row ky added to the PX outputs' f32 accumulators.
fn run(a: Acc, cols: array<f32, 80>, wk: array<f32, 52>, ky: u32, k0: u32) -> Acc {
    var o = a;
    o.a += part(cols, wk, ky, k0, 0u);
    o.b += part(cols, wk, ky, k0, 1u);
    if (PX > 8u) {
        o.c += part(cols, wk, ky, k0, 2u);
        o.d += part(cols, wk, ky, k0, 3u);
    }
    return o;
}

// Kernel row ky (a constant at each call) applied to a loaded input row: taps 0..4, then 4..KW
// (KW is at most 7).
fn taps(a: Acc, cols: array<f32, 80>, wk: array<f32, 52>, ky: u32) -> Acc {
    var o = run(a, cols, wk, ky, 0u);
    if (KW > 4u) { o = run(o, cols, wk, ky, 4u); }
    return o;
}
