// CSR SpMV / SpMM with A staged in workgroup memory. K is cut into chunks of CW columns; at
// upload each weight row's entries are split by chunk and cut into groups of 8 (the last one of
// a (chunk, row) padded with zero values at local column 0): `gp[c * n + row]` is the first
// group of that row in chunk c, one texel of `tc` holds a group's 8 columns as u16 offsets in
// the chunk (low half first), `tv` its values (tex_vals.wgsl: quads 2g and 2g + 1).
//
// Why: on lavapipe a workgroup's invocations run as SIMD lanes on one CPU thread, so each
// stored entry's A operand read from workgroup memory is a plain vector gather, where a texture
// load per entry (csr_tex.wgsl) costs address, bounds and format work per lane. The weight
// stream stays on the texture path, with 2-byte columns (half the index bytes of csr_tex).
// Real GPUs get the same reuse (A read once per workgroup into shared memory).
//
// One invocation per weight row n and TM (1, 2, 4) rows of A; the workgroup's 64 rows share
// the staged chunk. Every invocation reaches every barrier (rows past N only skip the work).
// Params and bindings: csr_head.wgsl.

// TM rows of A, CW columns each: row t of the chunk at sa[t * CW ..].
var<workgroup> sa: array<f32, TM * CW>;

// Copies columns [k0, k0 + CW) of A's row `row` (clamped texels past K read as zero) into
// sa[t * CW ..], 4 columns per texel, the workgroup's invocations striding over the texels.
fn stage(t: u32, row: u32, k0: u32, lid: u32) {
    let k4 = (p.k + 3u) / 4u;
    for (var i = lid; i < CW / 4u; i += 64u) {
        let q = k0 / 4u + i;
        var x = vec4<f32>(0.0);
        if (q < k4) { x = textureLoad(at, vec2<u32>(q, row), 0); }
        let o = t * CW + 4u * i;
        sa[o] = x.x;
        sa[o + 1u] = x.y;
        sa[o + 2u] = x.z;
        sa[o + 3u] = x.w;
    }
}

// The 8 staged A values of row block `o` (t * CW) at a group's 8 local columns, as two vec4s
// multiplied by the group's two value quads.
fn dot8(o: u32, cw: vec4<u32>, v0: vec4<f32>, v1: vec4<f32>) -> vec4<f32> {
    let x0 = vec4<f32>(sa[o + (cw.x & 0xffffu)], sa[o + (cw.x >> 16u)],
                       sa[o + (cw.y & 0xffffu)], sa[o + (cw.y >> 16u)]);
    let x1 = vec4<f32>(sa[o + (cw.z & 0xffffu)], sa[o + (cw.z >> 16u)],
                       sa[o + (cw.w & 0xffffu)], sa[o + (cw.w >> 16u)]);
    return v0 * x0 + v1 * x1;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = gid.x;
    let m0 = gid.y * TM;
    let live = n < p.n;
    // Rows of A (and of the output) in the batch-flattened [batch * m] view; rows past the
    // end repeat the last one and are not stored. m0 < p.m: the grid's y covers M exactly.
    let r0 = gid.z * p.m + m0;
    let last = gid.z * p.m + p.m - 1u;
    let r1 = min(r0 + 1u, last);
    let r2 = min(r0 + 2u, last);
    let r3 = min(r0 + 3u, last);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let chunks = (p.k + CW - 1u) / CW;
    for (var ch = 0u; ch < chunks; ch++) {
        workgroupBarrier();
        stage(0u, r0, ch * CW, lid.x);
        if (TM > 1u) { stage(1u, r1, ch * CW, lid.x); }
        if (TM > 2u) {
            stage(2u, r2, ch * CW, lid.x);
            stage(3u, r3, ch * CW, lid.x);
        }
        workgroupBarrier();
        if (live) {
            let at_row = ch * p.n + n;
            let end = gp[at_row + 1u];
            for (var g = gp[at_row]; g < end; g++) {
                let cw = textureLoad(tc, t_at(g), 0);
                let v0 = t_vals4(2u * g);
                let v1 = t_vals4(2u * g + 1u);
                acc0 += dot8(0u, cw, v0, v1);
                if (TM > 1u) { acc1 += dot8(CW, cw, v0, v1); }
                if (TM > 2u) {
                    acc2 += dot8(2u * CW, cw, v0, v1);
                    acc3 += dot8(3u * CW, cw, v0, v1);
                }
            }
        }
    }
    if (!live) { return; }
    let one = vec4<f32>(1.0);
    t_store(r0, n, dot(acc0, one));
    if (TM > 1u && m0 + 1u < p.m) { t_store(r1, n, dot(acc1, one)); }
    if (TM > 2u && m0 + 2u < p.m) { t_store(r2, n, dot(acc2, one)); }
    if (TM > 2u && m0 + 3u < p.m) { t_store(r3, n, dot(acc3, one)); }
}
