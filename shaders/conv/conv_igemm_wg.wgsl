// Implicit-GEMM convolution for GPUs with fast workgroup memory: per image and group, the conv
// is the GEMM Y[co][q] = sum_k W[co][k] * B[k][q] with K = cin_g * kh * kw, q an output pixel and
// B[k][q] the input value tap k of pixel q reads (zero in the padding). B is never formed: each
// workgroup gathers the BK x BN tile of it it needs into workgroup memory, beside the BM x BK
// tile of the weights (OIHW is already [cout][K] row-major), then each invocation accumulates
// TM x TN outputs from the tiles as in gemm_wg.wgsl. Any kernel size, stride, dilation,
// padding and groups (grid z = image * groups + group). TM, TN, WG, BK come from the const
// header.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const BM: u32 = WG * TM;
const BN: u32 = WG * TN;
const THREADS: u32 = WG * WG;
var<workgroup> ta: array<f32, BK * BM>;
var<workgroup> tb: array<f32, BK * BN>;

@compute @workgroup_size(WG, WG, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>) {
    let b = wid.z / p.groups;
    let g = wid.z % p.groups;
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tid = lid.y * WG + lid.x;
    let taps = p.kh * p.kw;
    let kdim = p.cin_g * taps;
    let npix = p.oh * p.ow;
    let wbase = g * p.cout_g * kdim;
    let xbase = (b * p.cin + g * p.cin_g) * p.h * p.w;
    var acc: array<f32, TM * TN>;
    for (var i = 0u; i < TM * TN; i++) { acc[i] = 0.0; }
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        // Consecutive invocations take consecutive k of one weight row (contiguous).
        for (var e = tid; e < BM * BK; e += THREADS) {
            let mi = e / BK;
            let ki = e % BK;
            let gm = m0 + mi;
            let gk = k0 + ki;
            var v = 0.0;
            if (gm < p.cout_g && gk < kdim) { v = w[wbase + gm * kdim + gk]; }
            ta[ki * BM + mi] = v;
        }
        // Consecutive invocations take consecutive output pixels of one tap (neighbouring
        // inputs when the stride is 1).
        for (var e = tid; e < BK * BN; e += THREADS) {
            let ki = e / BN;
            let ni = e % BN;
            let gn = n0 + ni;
            let gk = k0 + ki;
            var v = 0.0;
            if (gn < npix && gk < kdim) {
                let ci = gk / taps;
                let t = gk % taps;
                let iy = i32((gn / p.ow) * p.stride_h + (t / p.kw) * p.dil_h) - i32(p.pad_t);
                let ix = i32((gn % p.ow) * p.stride_w + (t % p.kw) * p.dil_w) - i32(p.pad_l);
                if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
                    v = x[xbase + (ci * p.h + u32(iy)) * p.w + u32(ix)];
                }
            }
            tb[ki * BN + ni] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<f32, TM>;
            var bv: array<f32, TN>;
            for (var i = 0u; i < TM; i++) { av[i] = ta[kk * BM + lid.y + i * WG]; }
            for (var j = 0u; j < TN; j++) { bv[j] = tb[kk * BN + lid.x + j * WG]; }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) { acc[i * TN + j] += av[i] * bv[j]; }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        let m = m0 + lid.y + i * WG;
        if (m >= p.cout_g) { break; }
        let co = g * p.cout_g + m;
        var bv = 0.0;
        if (p.has_bias != 0u) { bv = bias[co]; }
        for (var j = 0u; j < TN; j++) {
            let q = n0 + lid.x + j * WG;
            if (q >= npix) { continue; }
            let o = (b * p.cout + co) * npix + q;
            var v = acc[i * TN + j] + bv;
            if (p.has_res != 0u) { v += res[o]; }
            y[o] = activate(v);
        }
    }
}
