// Gather along an axis: the data viewed as [outer][extent][inner], the output as
// [outer][n_idx][inner]; y[o][j][t] = x[o][idx[j]][t]. Indices are i64 (IDX64 = 1: two 32-bit
// words, low first) or i32; a negative index counts from the end. The CPU reference refuses an
// index out of range; here one is clamped into the axis (a kernel cannot raise an error).
// Elements move as 32-bit words (f32 and i32 data keep their bits).
struct Params { n: u32, inner: u32, n_idx: u32, extent: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<u32>;

fn index_at(j: u32) -> i32 {
    let e = i32(p.extent);
    var k: i32;
    if (IDX64 == 1u) {
        let lo = idx[2u * j];
        let hi = idx[2u * j + 1u];
        let neg = (hi & 0x80000000u) != 0u;
        // Beyond the i32 range (the high word is not the low word's sign extension): clamp.
        if (!neg && (hi != 0u || lo >= 0x80000000u)) { return e - 1; }
        if (neg && (hi != 0xffffffffu || lo < 0x80000000u)) { return 0; }
        k = bitcast<i32>(lo);
    } else {
        k = bitcast<i32>(idx[j]);
    }
    if (k < 0) { k += e; }
    return clamp(k, 0, e - 1);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= p.n) { return; }
    let t = i % p.inner;
    let r = i / p.inner;
    let j = r % p.n_idx;
    let o = r / p.n_idx;
    y[i] = x[(o * p.extent + u32(index_at(j))) * p.inner + t];
}
