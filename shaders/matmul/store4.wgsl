// Epilogue store shared by the block GEMM kernels: writes the 4 columns of one output row
// starting at column 4 * col4 (act(v + bias + residual)), skipping what lies past M or N.
// Reads p.m, p.n, p.n4, p.has_bias, p.has_res and the bias/res/c bindings of the kernel.
fn store4(bat: u32, row: u32, col4: u32, v: vec4<f32>) {
    if (row >= p.m || col4 >= p.n4) { return; }
    for (var e = 0u; e < 4u; e++) {
        let col = col4 * 4u + e;
        if (col >= p.n) { return; }
        let o = (bat * p.m + row) * p.n + col;
        var x = v[e];
        if (p.has_bias != 0u) { x += bias[col]; }
        if (p.has_res != 0u) { x += res[o]; }
        c[o] = activate(x);
    }
}
