// Matmul epilogue of the texture sparse kernels (declares nothing; reads p.n, bias, res, c).

// The epilogue of output (row r of A, weight row n): scale, bias, residual, activation.
fn t_store(r: u32, n: u32, sum: f32) {
    let o = r * p.n + n;
    var v = sum * t_scale(n);
    if (p.has_bias != 0u) { v += bias[n]; }
    if (p.has_res != 0u) { v += res[o]; }
    c[o] = activate(v);
}
