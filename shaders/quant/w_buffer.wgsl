// Packed weight codes from a storage buffer: row n is texels n * row_t .. (n + 1) * row_t.
@group(0) @binding(2) var<storage, read_write> w: array<vec4<u32>>;

fn wq(n: u32, t: u32) -> vec4<u32> {
    return w[min(n, p.n - 1u) * p.row_t + t];
}
