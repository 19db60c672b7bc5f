// MatMulInteger: y[t][i][j] = sum_p (a[t][i][p] - za) * (b[t or 0][p][j] - zb) in i32.
// a, b and their zero points are 8-bit codes as the arena and weight uploads hold 1-byte
// values: four to a u32 word, element e in byte e % 4 of word e / 4 (little-endian), so one
// word load serves four codes along a's K. A_SIGNED / B_SIGNED say whether codes are i8
// (sign-extended) or u8. Every product of two centred codes fits 17 bits and the sum is i32,
// as ONNX's reference computes it, so the result is exact (wrapping at 32 bits like it).
// One invocation per output element.
struct Params {
    m: u32, k: u32, n: u32, total: u32,
    // b has the batch dims of a (1) or none, shared by every batch (0).
    b_batched: u32,
    // Zero points per row of a / per column of b (1) or one for the tensor (0).
    za_rows: u32, zb_cols: u32, _p: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> za: array<u32>;
@group(0) @binding(4) var<storage, read_write> zb: array<u32>;
@group(0) @binding(5) var<storage, read_write> y: array<i32>;

// Code e of a byte array, widened to i32 (sign-extended when `signed`).
fn code(w: u32, e: u32, signed: bool) -> i32 {
    let v = (w >> (8u * (e % 4u))) & 0xffu;
    if (signed) {
        return (bitcast<i32>(v) << 24u) >> 24u;
    }
    return bitcast<i32>(v);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_id(gid, nwg, 64u);
    if (o >= p.total) { return; }
    let j = o % p.n;
    let r = o / p.n;
    let i = r % p.m;
    let t = r / p.m;
    let a_signed = A_SIGNED == 1u;
    let b_signed = B_SIGNED == 1u;
    let zi = select(0u, i, p.za_rows == 1u);
    let zj = select(0u, j, p.zb_cols == 1u);
    let zav = code(za[zi / 4u], zi, a_signed);
    let zbv = code(zb[zj / 4u], zj, b_signed);
    let a0 = (t * p.m + i) * p.k;
    let b0 = select(0u, t * p.k * p.n, p.b_batched == 1u) + j;
    var acc = 0i;
    for (var q = 0u; q < p.k; q++) {
        let ea = a0 + q;
        let eb = b0 + q * p.n;
        let x = code(a[ea / 4u], ea, a_signed) - zav;
        let w = code(b[eb / 4u], eb, b_signed) - zbv;
        acc += x * w;
    }
    y[o] = acc;
}
