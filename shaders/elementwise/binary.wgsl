// a (op) b with numpy broadcasting over up to 8 dims (strides are 0 along broadcast dims).
// OP: 0 add, 1 sub, 2 mul, 3 div, 4 pow, 5 max, 6 min, 7 fmod (sign of a), 8 mod (sign of b),
// 9 prelu (a >= 0 ? a : b * a) — prepended const, `BinaryKind` order. The activation epilogue
// applies after.
struct Params {
    n: u32, rank: u32, same: u32, _p0: u32,
    shape: array<vec4<u32>, 2>,
    a_st: array<vec4<u32>, 2>,
    b_st: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn apply(u: f32, v: f32) -> f32 {
    switch OP {
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return u / v; }
        case 4u: { return pow_any(u, v); }
        // NaN propagates, as on the CPU (WGSL's max/min may drop it).
        case 5u: { return select(max(u, v), u + v, u != u || v != v); }
        case 6u: { return select(min(u, v), u + v, u != u || v != v); }
        case 7u: { return u - v * trunc(u / v); }
        case 8u: {
            let r = u - v * trunc(u / v);
            return select(r, r + v, r != 0.0 && (r < 0.0) != (v < 0.0));
        }
        case 9u: { return select(v * u, u, u >= 0.0); }
        default: { return u + v; }
    }
}

// a^b for any sign of a: WGSL's pow is undefined for a < 0 (and for a = 0, b = 0), so it
// takes |a| and restores the sign for odd integer exponents; a negative base with a
// non-integer exponent is NaN, as in C. Squares (x^2 in decomposed norms) are exact products.
fn pow_any(a: f32, b: f32) -> f32 {
    if (b == 2.0) { return a * a; }
    if (b == 1.0) { return a; }
    if (b == 0.0) { return 1.0; }
    let m = pow(abs(a), b);
    if (a >= 0.0) { return select(m, 0.0, a == 0.0 && b > 0.0); }
    if (b != trunc(b)) { let nan = bitcast<f32>(0x7fc00000u + min(p.n, 0u)); return nan; }
    let odd = abs(b) < 16777216.0 && (i32(b) & 1) != 0;
    return select(m, -m, odd);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= p.n) { return; }
    if (p.same != 0u) {
        y[i] = activate(apply(a[i], b[i]));
        return;
    }
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let du = u32(d);
        let extent = p.shape[du / 4u][du % 4u];
        let coord = rem % extent;
        rem = rem / extent;
        ia += coord * p.a_st[du / 4u][du % 4u];
        ib += coord * p.b_st[du / 4u][du % 4u];
    }
    y[i] = activate(apply(a[ia], b[ib]));
}
