// K-major packed codes from a storage buffer: texel (kt, n4) at kt * n4 + n4.
@group(0) @binding(2) var<storage, read_write> w: array<vec4<u32>>;

fn wk(n4: u32, kt: u32) -> vec4<u32> {
    return w[kt * p.n4 + min(n4, p.n4 - 1u)];
}
