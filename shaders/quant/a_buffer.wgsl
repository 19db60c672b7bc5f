// A operand of the packed-weight matmul from a storage buffer, any strides (trans_a too).
@group(0) @binding(1) var<storage, read_write> a: array<f32>;

// A[bat][row][4q .. 4q + 4], zero past K; rows past M are clamped (their results are dropped).
fn xv(bat: u32, row: u32, q: u32) -> vec4<f32> {
    let base = bat * p.a_bs + min(row, p.m - 1u) * p.a_rs;
    var v = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        let k = q * 4u + e;
        if (k < p.k) { v[e] = a[base + k * p.a_ks]; }
    }
    return v;
}
