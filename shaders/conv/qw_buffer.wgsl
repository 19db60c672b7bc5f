// Packed conv weight codes from a storage buffer: output channel co is texels
// co * row_t .. (co + 1) * row_t.
@group(0) @binding(2) var<storage, read_write> wq: array<vec4<u32>>;

fn qw(co: u32, t: u32) -> vec4<u32> {
    return wq[co * p.row_t + t];
}
