//! MatMul / GEMM / Linear: `C = act(op(A) @ op(B) + bias + residual)`, batched.
//!
//! A is `[..batch, M, K]` (`[.., K, M]` with `trans_a`), B is `[K, N]` or `[..batch, K, N]`
//! (`[N, K]` with `trans_b`, the PyTorch `Linear` weight layout). Batch dims broadcast as in
//! numpy (ONNX MatMul) and a 1-D operand is a vector; the kernels take A batched as the
//! output with B batched alike or shared (others run on the CPU). A B without batch dims is
//! shared by every batch. `bias` is `[N]`; `residual` has the output's shape.

use super::quant::{QLayout, QPart};
use super::sparse::{SLayout, SPart};
use super::{
    check_grid, div_ceil, unsupported, Activation, Bind, Dispatch, KernelVariant, LowerCtx,
    OpFamily, Pack, SelectCtx, TuneSlot,
};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, Tensor, ValueType};
use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

/// Matrix multiplication with an optional fused epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct MatMul {
    #[serde(default)]
    pub trans_a: bool,
    #[serde(default)]
    pub trans_b: bool,
    /// A third input `[N]` is added to every row.
    #[serde(default)]
    pub bias: bool,
    /// A last input of the output's shape is added before the activation.
    #[serde(default)]
    pub residual: bool,
    #[serde(default)]
    pub act: Activation,
}

/// The GPU kernels of matmul.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(tag = "kernel", rename_all = "snake_case")]
pub enum MatMulKernel {
    /// One invocation per output: the second reference kernel.
    #[default]
    Naive,
    /// Register-blocked GEMM, scalar loads, any layout.
    Tiled { tm: u32, tn: u32 },
    /// Workgroup-tiled GEMM for real GPUs: a `wg` x `wg` workgroup stages tiles of A and B
    /// in workgroup memory (16 along K) and each invocation accumulates `tm` x `tn` outputs in
    /// registers. Any layout; needs `wg`^2 invocations and the tiles' workgroup storage.
    WgTile { tm: u32, tn: u32, wg: u32 },
    /// Register-blocked GEMM on the NT layout with vec4 loads (K % 4 == 0); tm = 1 is GEMV.
    Vec4 { tm: u32, tn: u32 },
    /// GEMM with constant B packed `[K][N]` (vec4 along N); a workgroup shares `tm` rows of A,
    /// each invocation owns `tn4` vec4 columns. Any K, any A layout.
    Bcast { tm: u32, tn4: u32 },
    /// As `Bcast` with B in an rgba32float texture (vector-gather loads on CPU adapters,
    /// texture cache on mobile GPUs).
    Tex { tm: u32, tn4: u32 },
    /// Both operands through textures: A copied into one per run, B packed at load.
    Tex2 { tm: u32, tn4: u32 },
    /// As `Tex2` with larger register blocks for CPU-like adapters: `tm` rows (4, 8, 16) x
    /// `tn4` texel columns (1, 2, 4) per invocation, 16 x 4 invocations per workgroup.
    Tex2Reg { tm: u32, tn4: u32 },
    /// A packed weight (int8/int4/pow2/f16, `[N, K]`) read as stored: `tm` rows of A by `r`
    /// weight rows per invocation; codes from a storage buffer or an rgba32uint texture
    /// (`wtex`), A from its buffer or a per-run rgba32float texture (`xtex`).
    Packed {
        tm: u32,
        r: u32,
        #[serde(default)]
        wtex: bool,
        #[serde(default)]
        xtex: bool,
    },
    /// GEMV with a packed weight, one workgroup of 64 threads per output and a workgroup
    /// reduction: the memory-bound shape real GPUs favour (coalesced 16-byte loads).
    PackedWg,
    /// GEMV on int8 or f16 weights in the K-major layout read through a normalised texture
    /// (rgba8snorm / rgba8unorm / rgba16float): the texture unit converts 4 values per load, no
    /// unpacking in the shader. `tn4` texel columns per invocation; A from a texture (`xtex`).
    PackedNorm {
        tn4: u32,
        #[serde(default)]
        xtex: bool,
    },
    /// GEMV on f16 weights read as f16 (adapters with `shader-f16`), K-major layout, `tn4`
    /// texel columns per invocation; A from a texture (`xtex`).
    PackedF16 {
        tn4: u32,
        #[serde(default)]
        xtex: bool,
    },
    /// As `PackedWg`, reducing each subgroup with `subgroupAdd` first (adapters with subgroups).
    PackedSg,
    /// A packed weight re-laid K-major at load (texels of QV4 k by 4 rows): outer-product
    /// accumulation, one vec4 FMA per 4 weights and row of A, `tm` rows of A by `tn4` texel
    /// columns per invocation (`tm * tn4 <= 8`); codes from a buffer or a texture (`wtex`),
    /// A from its buffer or a per-run texture (`xtex`).
    PackedKn {
        tm: u32,
        tn4: u32,
        #[serde(default)]
        wtex: bool,
        #[serde(default)]
        xtex: bool,
    },
    /// int8 x int8 (only with `int8_activations`): A's rows quantised per run, integer dot
    /// products (`dot4I8Packed` when `dot`, else a portable unpack), `r` weight rows per
    /// invocation, codes from a buffer or a texture (`wtex`).
    Int8Act {
        r: u32,
        #[serde(default)]
        dot: bool,
        #[serde(default)]
        wtex: bool,
    },
    /// A CSR weight (`[N, K]`, f32/f16/i8 values) read as stored: one invocation per weight
    /// row walks its stored entries for `tm` rows of A (SpMV when M = 1, SpMM otherwise).
    /// Chosen only while the weight's density is at most `max_density_pct` percent (see
    /// [`MatMul::select_sparse`]); denser weights are decoded for the dense kernels.
    Csr {
        tm: u32,
        #[serde(default = "default_csr_pct")]
        max_density_pct: u32,
    },
    /// As `Csr`, one workgroup of 64 threads per output striding over the row's entries
    /// (contiguous index and value loads) with a workgroup reduction.
    CsrWg {
        #[serde(default = "default_csr_pct")]
        max_density_pct: u32,
    },
    /// An N:M weight read as stored: per group of m columns only the n kept values are
    /// multiplied (A gathered at their positions), `tm` rows of A per invocation; chosen while
    /// n / m is at most `max_density_pct` percent.
    Nm {
        tm: u32,
        #[serde(default = "default_nm_pct")]
        max_density_pct: u32,
    },
    /// A CSR weight on the texture path (`ops/sparse.rs` texture layout): entries in groups
    /// of 4 (one texel of columns, one of values), A through a per-run texture; `tm` (1, 2, 4)
    /// rows of A per invocation. Chosen while the density is at most `max_density_pct`.
    CsrTex {
        tm: u32,
        #[serde(default = "default_csr_pct")]
        max_density_pct: u32,
    },
    /// A CSR weight in the staged layout (`ops/sparse.rs`): K cut into chunks of `cw`
    /// columns, each chunk of `tm` (1, 2, 4) rows of A copied into workgroup memory and
    /// gathered from there per stored entry, entries in groups of 8 with u16 columns. Needs
    /// `tm * cw * 4` bytes of workgroup storage. Chosen while the density is at most
    /// `max_density_pct`.
    CsrStage {
        tm: u32,
        cw: u32,
        #[serde(default = "default_csr_pct")]
        max_density_pct: u32,
    },
    /// A 1:4 or 2:4 weight on the texture path (`ops/sparse.rs` K-major N:4 layout): each
    /// group of 4 columns is one texel of A, read by all rows at once, and each kept value
    /// picks its component by a 2-bit position. One weight row and row of A per invocation.
    NmTex {
        #[serde(default = "default_nm_pct")]
        max_density_pct: u32,
    },
    /// A CSR weight in the staged layout with one chunk of 65536 columns (entries in groups of
    /// 8 with u16 columns), A's rows copied each run into a uniform buffer and gathered from
    /// there per stored entry; `tm` (1, 2, 4) rows of A per invocation. A must fit one 64 KiB
    /// uniform binding (rows x ceil(K / 4) <= 4096). Chosen while the density is at most
    /// `max_density_pct`.
    CsrUni {
        tm: u32,
        #[serde(default = "default_csr_pct")]
        max_density_pct: u32,
    },
    /// A 1:4 or 2:4 weight with f32 values laid out by texel columns of 4 weight rows, as the
    /// dense `tex` GEMV reads its weight (`ops/sparse.rs` texel-column N:4 layout): every
    /// invocation reads the same A texel per group of 4 columns and picks each kept value's
    /// operand by its 2-bit position; `tn4` (1, 2) texel columns per invocation, one row of A.
    NmKn {
        tn4: u32,
        #[serde(default = "default_nm_pct")]
        max_density_pct: u32,
    },
    /// A BSR weight with blocks of r (1, 2, 4, 8) rows by 4 columns on the texture path: one
    /// A texel and r vec4 multiply-adds per stored block. Chosen while the stored blocks'
    /// share of the entries is at most `max_density_pct`.
    BsrTex {
        #[serde(default = "default_bsr_pct")]
        max_density_pct: u32,
    },
    /// f32 GEMV for adapters with subgroups: one workgroup of 64 per output striding over K
    /// (coalesced along a Linear weight's rows), each subgroup reduced with `subgroupAdd`.
    /// Any layout and batch; the `gemv` slot's candidate where subgroups exist.
    SgGemv,
    /// `Bcast`/`Tex` (`tex`: B in a texture) with f16 products: operands rounded to f16, runs
    /// of 4 k multiplied and summed as vec4<f16>, partials summed in f32. Only with
    /// `f16_compute` on adapters with `shader-f16`, from the `gemm_f16c`/`gemv_f16c` slots.
    F16Block {
        tm: u32,
        tn4: u32,
        #[serde(default)]
        tex: bool,
    },
    /// `PackedF16` (f16 weights read as f16) multiplying in f16: A rounded to f16, two
    /// products per texel summed in f16, partials in f32. Only with `f16_compute` on
    /// adapters with `shader-f16` (slot `qgemv_f16c`).
    PackedF16c {
        tn4: u32,
        #[serde(default)]
        xtex: bool,
    },
}

/// Density (percent) up to which a CSR weight runs the sparse kernel when nothing is chosen:
/// each stored entry costs a scalar gather, several times a dense multiply-add. Measured on
/// lavapipe (2 EPYC cores): at 10 % a 1024 x 4096 SpMV takes 0.8-2.2 ms against 2.3-5.4 ms for
/// the default dense GEMV, and a 4096 x 4096 one 5.9 ms against 5.4 ms for the best tuned
/// dense GEMV (`wgedge bench`, `csr-10`); at 25 % CSR still wins for M = 8, at 50 % it loses.
pub const DEFAULT_CSR_PCT: u32 = 10;
/// Density (percent) up to which an N:M weight runs the N:M kernel by default. Measured as
/// above (1024 x 4096, M = 1): 1:8 (1.9 ms) and 1:4 (2.2 ms) win or tie against the dense
/// GEMV (2.4 ms), 2:4 loses (4.0 ms: the dense kernel's vec4 loads beat half as many scalar
/// gathers), so 2:4 and 4:8 weights are decoded unless a choice says otherwise.
pub const DEFAULT_NM_PCT: u32 = 25;

fn default_csr_pct() -> u32 {
    DEFAULT_CSR_PCT
}

fn default_nm_pct() -> u32 {
    DEFAULT_NM_PCT
}

/// Density (percent) up to which a BSR weight with 4-column blocks runs `bsrtex` by default:
/// a stored 4x4 block costs four vec4 multiply-adds and one A gather, about what the best
/// dense GEMV spends on the same 16 weights, so the sparse kernel wins at any density below
/// roughly 70 %; 50 % leaves room for the gather and the per-block index load.
pub const DEFAULT_BSR_PCT: u32 = 50;

/// The dispatch that copies A (input 0, `rows` x `k`) into the node's scratch texture 0 as
/// rgba32float, texel (k / 4, row), for the kernels that read A through a texture.
pub(crate) fn a_to_texture(rows: u32, k: u32) -> Dispatch {
    let k4 = k.div_ceil(4);
    Dispatch {
        shader: ShaderKey::new(&TO_TEXTURE, &[]),
        overrides: Activation::None.overrides(),
        params: vec![rows, k, k4, 0],
        bindings: vec![
            Bind::Input(0),
            Bind::ScratchStore(0, k4, rows, super::TexFormat::Rgba32F),
        ],
        workgroups: [k4.div_ceil(64), rows, 1],
    }
}

fn default_bsr_pct() -> u32 {
    DEFAULT_BSR_PCT
}

/// The sparse slots, tuned with a crossover (see [`TuneSlot::crossover`]): per layout, one
/// slot for a single row of A (`csr`, `bsr`, `nm`: SpMV, N 4096 x K 2048) and one for batches
/// (`csr_batch`, ...: 16 rows), since the crossover moves with the rows that share a weight
/// load. Candidates run at any density (threshold 100) while being timed.
fn sparse_slots(
    linear: MatMul,
    lin_inputs: impl Fn(usize, usize, usize) -> Vec<(Vec<usize>, bool)>,
) -> Vec<TuneSlot> {
    use crate::format::{SparseLayout, SparseSpec, SparseValues, WeightFormat};
    let fmt = |layout| {
        WeightFormat::Sparse(SparseSpec {
            layout,
            values: SparseValues::F32,
        })
    };
    let ladder = |layout, ds: &[f32]| ds.iter().map(|&d| (d, fmt(layout))).collect::<Vec<_>>();
    let csr = ladder(SparseLayout::Csr, &[0.1, 0.02, 0.05, 0.2, 0.3, 0.5, 0.7]);
    let bsr = ladder(
        SparseLayout::Bsr { r: 4, c: 4 },
        &[0.1, 0.05, 0.2, 0.3, 0.5, 0.7, 0.9],
    );
    // The first point is where candidates race: 2:4, the pattern sparse tensor hardware and
    // `nmtex` target; points a candidate cannot read are skipped by the crossover.
    let nm: Vec<(f32, WeightFormat)> = [(2, 4), (1, 8), (1, 4), (3, 4)]
        .iter()
        .map(|&(n, m)| (n as f32 / m as f32, fmt(SparseLayout::NM { n, m })))
        .collect();
    let any = 100;
    let csr_k = |tms: &[u32], wg: bool, uni: bool| {
        let mut v = Vec::new();
        for &tm in tms {
            v.push(MatMulKernel::CsrTex {
                tm: tm.min(4),
                max_density_pct: any,
            });
            v.push(MatMulKernel::Csr {
                tm,
                max_density_pct: any,
            });
        }
        // A staged in workgroup memory, in chunks that fill WebGPU's guaranteed 16 KiB (a
        // 4096-column row, or 2048 x 2 and 1024 x 4 rows); for one row also 1024-column
        // chunks (more workgroups resident per core on real GPUs). Larger chunks are not
        // candidates: every candidate must fit the portable limits.
        for &tm in tms {
            let tm = tm.min(4);
            let cws: &[u32] = if tm == 1 {
                &[4096, 1024]
            } else {
                &[16384 / (4 * tm)]
            };
            for &cw in cws {
                v.push(MatMulKernel::CsrStage {
                    tm,
                    cw,
                    max_density_pct: any,
                });
            }
        }
        // A gathered from a uniform buffer, for one row of A (K up to 16384). Not a batch
        // candidate: the batch slot's pick also serves batches whose A exceeds the 64 KiB
        // buffer (64 x 4096 is 1 MiB), where it cannot run and the untuned default would
        // replace it.
        if uni {
            v.push(MatMulKernel::CsrUni {
                tm: 1,
                max_density_pct: any,
            });
        }
        if wg {
            v.push(MatMulKernel::CsrWg {
                max_density_pct: any,
            });
        }
        v.dedup();
        v
    };
    let bsr_k = vec![MatMulKernel::BsrTex {
        max_density_pct: any,
    }];
    let nm_k = |tms: &[u32]| -> Vec<MatMulKernel> {
        let mut v: Vec<MatMulKernel> = tms
            .iter()
            .map(|&tm| MatMulKernel::Nm {
                tm,
                max_density_pct: any,
            })
            .collect();
        v.push(MatMulKernel::NmTex {
            max_density_pct: any,
        });
        for tn4 in [1, 2] {
            v.push(MatMulKernel::NmKn {
                tn4,
                max_density_pct: any,
            });
        }
        v
    };
    // The one-row crossover on a layer of the size where pruning pays (4096 outputs, K 2048):
    // on 1024 x 1024 fixed per-dispatch costs hide the per-entry cost, and the crossover
    // measured there (20-30 % on lavapipe, moving between runs) sent 4096 x 4096 layers at
    // 30 % to a sparse kernel 0.77x as fast as dense. A threshold measured on the larger layer
    // errs towards dense on small layers, where either kernel is cheap.
    let one = || lin_inputs(1, 2048, 4096);
    let batch = || lin_inputs(16, 512, 512);
    vec![
        TuneSlot::new("csr", csr_k(&[1], true, true), linear, one()).with_crossover(csr.clone()),
        TuneSlot::new(
            "csr_batch",
            csr_k(&[2, 4, 8], false, false),
            linear,
            batch(),
        )
        .with_crossover(csr),
        TuneSlot::new("bsr", bsr_k.clone(), linear, one()).with_crossover(bsr.clone()),
        TuneSlot::new("bsr_batch", bsr_k, linear, batch()).with_crossover(bsr),
        TuneSlot::new("nm", nm_k(&[1]), linear, one()).with_crossover(nm.clone()),
        TuneSlot::new("nm_batch", nm_k(&[2, 4, 8]), linear, batch()).with_crossover(nm),
    ]
}

impl MatMulKernel {
    /// The kernels that read a packed (quantised, f16 or sparse) weight as stored, rather than
    /// a dense f32 one.
    pub fn reads_packed(&self) -> bool {
        matches!(
            self,
            MatMulKernel::Packed { .. }
                | MatMulKernel::PackedWg
                | MatMulKernel::PackedSg
                | MatMulKernel::PackedNorm { .. }
                | MatMulKernel::PackedF16 { .. }
                | MatMulKernel::PackedF16c { .. }
                | MatMulKernel::PackedKn { .. }
                | MatMulKernel::Int8Act { .. }
                | MatMulKernel::Csr { .. }
                | MatMulKernel::CsrWg { .. }
                | MatMulKernel::Nm { .. }
                | MatMulKernel::CsrTex { .. }
                | MatMulKernel::CsrStage { .. }
                | MatMulKernel::NmTex { .. }
                | MatMulKernel::NmKn { .. }
                | MatMulKernel::CsrUni { .. }
                | MatMulKernel::BsrTex { .. }
        )
    }

    /// The sparse kernels, with their density threshold.
    pub fn max_density_pct(&self) -> Option<u32> {
        match *self {
            MatMulKernel::Csr {
                max_density_pct, ..
            }
            | MatMulKernel::CsrWg { max_density_pct }
            | MatMulKernel::Nm {
                max_density_pct, ..
            }
            | MatMulKernel::CsrTex {
                max_density_pct, ..
            }
            | MatMulKernel::CsrStage {
                max_density_pct, ..
            }
            | MatMulKernel::NmTex { max_density_pct }
            | MatMulKernel::NmKn {
                max_density_pct, ..
            }
            | MatMulKernel::CsrUni {
                max_density_pct, ..
            }
            | MatMulKernel::BsrTex { max_density_pct } => Some(max_density_pct),
            _ => None,
        }
    }
}

impl KernelVariant for MatMulKernel {
    fn name(&self) -> String {
        match *self {
            MatMulKernel::Naive => "naive".into(),
            MatMulKernel::Tiled { tm, tn } => format!("tiled-{tm}x{tn}"),
            MatMulKernel::WgTile { tm, tn, wg } => format!("wg{wg}-{tm}x{tn}"),
            MatMulKernel::Vec4 { tm, tn } => format!("vec4-{tm}x{tn}"),
            MatMulKernel::Bcast { tm, tn4 } => format!("bcast-{tm}x{}", tn4 * 4),
            MatMulKernel::Tex { tm, tn4 } => format!("tex-{tm}x{}", tn4 * 4),
            MatMulKernel::Tex2 { tm, tn4 } => format!("tex2-{tm}x{}", tn4 * 4),
            MatMulKernel::Tex2Reg { tm, tn4 } => format!("tex2r-{tm}x{}", tn4 * 4),
            MatMulKernel::Packed { tm, r, wtex, xtex } => format!(
                "{}-{tm}x{r}",
                match (wtex, xtex) {
                    (false, false) => "buf",
                    (true, false) => "tex",
                    (false, true) => "xtex",
                    (true, true) => "tex2",
                }
            ),
            MatMulKernel::PackedWg => "wg64".into(),
            MatMulKernel::PackedSg => "sg64".into(),
            MatMulKernel::SgGemv => "sg-gemv".into(),
            MatMulKernel::F16Block { tm, tn4, tex } => format!(
                "f16c-{}-{tm}x{}",
                if tex { "tex" } else { "bcast" },
                tn4 * 4
            ),
            MatMulKernel::PackedF16c { tn4, xtex } => {
                format!("f16c-knf16{}-1x{}", if xtex { "x" } else { "" }, tn4 * 4)
            }
            MatMulKernel::PackedF16 { tn4, xtex } => {
                format!("knf16{}-1x{}", if xtex { "x" } else { "" }, tn4 * 4)
            }
            MatMulKernel::PackedNorm { tn4, xtex } => {
                format!("knnorm{}-1x{}", if xtex { "2" } else { "" }, tn4 * 4)
            }
            MatMulKernel::Int8Act { r, dot, wtex } => format!(
                "i8{}-{}-1x{r}",
                if dot { "dot" } else { "" },
                if wtex { "tex" } else { "buf" }
            ),
            MatMulKernel::Csr {
                tm,
                max_density_pct,
            } => format!("csr-{tm}x1-d{max_density_pct}"),
            MatMulKernel::Nm {
                tm,
                max_density_pct,
            } => format!("nm-{tm}x1-d{max_density_pct}"),
            MatMulKernel::CsrWg { max_density_pct } => format!("csrwg-d{max_density_pct}"),
            MatMulKernel::CsrTex {
                tm,
                max_density_pct,
            } => format!("csrtex-{tm}x1-d{max_density_pct}"),
            MatMulKernel::CsrStage {
                tm,
                cw,
                max_density_pct,
            } => format!("csrstage-{tm}x1-c{cw}-d{max_density_pct}"),
            MatMulKernel::BsrTex { max_density_pct } => format!("bsrtex-d{max_density_pct}"),
            MatMulKernel::NmTex { max_density_pct } => format!("nmtex-d{max_density_pct}"),
            MatMulKernel::NmKn {
                tn4,
                max_density_pct,
            } => format!("nmkn-1x{}-d{max_density_pct}", tn4 * 4),
            MatMulKernel::CsrUni {
                tm,
                max_density_pct,
            } => format!("csruni-{tm}x1-d{max_density_pct}"),
            MatMulKernel::PackedKn {
                tm,
                tn4,
                wtex,
                xtex,
            } => format!(
                "{}-{tm}x{}",
                match (wtex, xtex) {
                    (false, false) => "knbuf",
                    (true, false) => "kntex",
                    (false, true) => "knxtex",
                    (true, true) => "kntex2",
                },
                tn4 * 4
            ),
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        let ok = match *self {
            MatMulKernel::Naive => true,
            MatMulKernel::Tiled { tm, tn } | MatMulKernel::Vec4 { tm, tn } => {
                (1..=8).contains(&tm) && (1..=8).contains(&tn)
            }
            MatMulKernel::WgTile { tm, tn, wg } => {
                matches!(tm, 1 | 2 | 4 | 8) && matches!(tn, 1 | 2 | 4 | 8) && matches!(wg, 8 | 16)
            }
            // The block kernels write out their accumulators by name for these shapes only.
            MatMulKernel::Bcast { tm, tn4 } | MatMulKernel::Tex { tm, tn4 } => {
                matches!((tm, tn4), (1, 1 | 2 | 4) | (4 | 8, 1 | 2))
            }
            MatMulKernel::Tex2 { tm, tn4 } => matches!((tm, tn4), (4 | 8, 1 | 2)),
            // Named accumulators: up to 16 rows of up to 4 texel columns.
            MatMulKernel::Tex2Reg { tm, tn4 } => {
                matches!(tm, 4 | 8 | 16) && matches!(tn4, 1 | 2 | 4)
            }
            // Accumulators are arrays of 16 in the shader.
            MatMulKernel::Packed { tm, r, .. } => matches!(tm, 1 | 2 | 4) && matches!(r, 1 | 2 | 4),
            MatMulKernel::PackedWg | MatMulKernel::PackedSg | MatMulKernel::SgGemv => true,
            // The same named-accumulator shapes as the f32 block kernel.
            MatMulKernel::F16Block { tm, tn4, .. } => {
                matches!((tm, tn4), (1, 1 | 2 | 4) | (4 | 8, 1 | 2))
            }
            MatMulKernel::PackedF16c { tn4, .. } => matches!(tn4, 1 | 2 | 4),
            MatMulKernel::PackedNorm { tn4, .. } | MatMulKernel::PackedF16 { tn4, .. } => {
                matches!(tn4, 1 | 2 | 4)
            }
            MatMulKernel::Int8Act { r, .. } => matches!(r, 1 | 2 | 4),
            // Accumulator arrays hold 8 vec4s; the unrolled 8 x 2 block has 16 named ones.
            MatMulKernel::PackedKn { tm, tn4, .. } => {
                (matches!(tm, 1 | 2 | 4 | 8) && matches!(tn4, 1 | 2 | 4) && tm * tn4 <= 8)
                    || (tm, tn4) == (8, 2)
            }
            MatMulKernel::Csr {
                tm,
                max_density_pct,
            }
            | MatMulKernel::Nm {
                tm,
                max_density_pct,
            } => matches!(tm, 1 | 2 | 4 | 8) && max_density_pct <= 100,
            MatMulKernel::CsrWg { max_density_pct }
            | MatMulKernel::BsrTex { max_density_pct }
            | MatMulKernel::NmTex { max_density_pct } => max_density_pct <= 100,
            // Named accumulators for 1 or 2 texel columns.
            MatMulKernel::NmKn {
                tn4,
                max_density_pct,
            } => matches!(tn4, 1 | 2) && max_density_pct <= 100,
            // Named accumulators for 1, 2 or 4 rows of A.
            MatMulKernel::CsrTex {
                tm,
                max_density_pct,
            }
            | MatMulKernel::CsrUni {
                tm,
                max_density_pct,
            } => matches!(tm, 1 | 2 | 4) && max_density_pct <= 100,
            // Named accumulators for 1, 2 or 4 rows of A; chunks of whole texels whose local
            // columns fit a u16.
            MatMulKernel::CsrStage {
                tm,
                cw,
                max_density_pct,
            } => {
                matches!(tm, 1 | 2 | 4)
                    && cw.is_power_of_two()
                    && (256..=16384).contains(&cw)
                    && max_density_pct <= 100
            }
        };
        if ok {
            Ok(())
        } else {
            Err("unsupported block shape".into())
        }
    }
}

static GEMM_NAIVE: ShaderSource = crate::wgsl!("matmul/gemm_naive.wgsl");
/// Depth along K of the workgroup-tiled GEMM's tiles.
const WG_TILE_K: u32 = 16;
static GEMM_WG: ShaderSource = crate::wgsl!("matmul/gemm_wg.wgsl"; [
    [("TM", 4), ("TN", 4), ("WG", 16), ("BK", 16)],
    [("TM", 2), ("TN", 4), ("WG", 8), ("BK", 16)]
]);
static GEMM_TILED: ShaderSource =
    crate::wgsl!("matmul/gemm_tiled.wgsl"; [[("TM", 4), ("TN", 4)], [("TM", 1), ("TN", 8)]]);
static GEMM_VEC4: ShaderSource = crate::wgsl!("matmul/gemm_vec4.wgsl"; [
    [("TM", 4), ("TN", 4), ("WG_X", 8), ("WG_Y", 8)],
    [("TM", 1), ("TN", 4), ("WG_X", 64), ("WG_Y", 1)],
    [("TM", 8), ("TN", 8), ("WG_X", 8), ("WG_Y", 8)]
]);
static GEMM_BCAST: ShaderSource = crate::wgsl!(
    "matmul/gemm_block_io.wgsl", "matmul/b_buffer.wgsl", "matmul/store4.wgsl", "matmul/gemm_block.wgsl";
    [[("TM", 4), ("TN4", 1)], [("TM", 1), ("TN4", 2)]]
);
static GEMM_TEX: ShaderSource = crate::wgsl!(
    "matmul/gemm_block_io.wgsl", "matmul/b_texture.wgsl", "matmul/store4.wgsl", "matmul/gemm_block.wgsl";
    [[("TM", 4), ("TN4", 1)], [("TM", 1), ("TN4", 2)]]
);
static GEMM_TEX2: ShaderSource = crate::wgsl!(
    "matmul/store4.wgsl", "matmul/gemm_tex2.wgsl";
    [[("TM", 4), ("TN4", 1)], [("TM", 8), ("TN4", 2)]]
);
static GEMM_TEX2_REG: ShaderSource = crate::wgsl!(
    "matmul/store4.wgsl", "matmul/gemm_tex2_reg.wgsl";
    [[("TM", 16), ("TN4", 4)], [("TM", 4), ("TN4", 1)], [("TM", 8), ("TN4", 2)]]
);
static TO_TEXTURE: ShaderSource = crate::wgsl!("elementwise/to_texture.wgsl");
/// Packed-weight kernels: (A from buffer | texture) x (codes from buffer | texture).
macro_rules! packed_source {
    ($a:literal, $w:literal) => {
        crate::wgsl!("quant/dequant.wgsl", $a, $w, "quant/qmatmul.wgsl"; [
            [("TM", 1), ("R", 2), ("BITS", 8), ("SCALE", 0), ("ZERO", 0)],
            [("TM", 4), ("R", 4), ("BITS", 4), ("SCALE", 1), ("ZERO", 1)],
            [("TM", 2), ("R", 1), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)],
            [("TM", 1), ("R", 1), ("BITS", 8), ("SCALE", 2), ("ZERO", 1)]
        ])
    };
}
static Q_BUF: ShaderSource = packed_source!("quant/a_buffer.wgsl", "quant/w_buffer.wgsl");
static Q_TEX: ShaderSource = packed_source!("quant/a_buffer.wgsl", "quant/w_texture.wgsl");
static Q_XTEX: ShaderSource = packed_source!("quant/a_texture.wgsl", "quant/w_buffer.wgsl");
static Q_TEX2: ShaderSource = packed_source!("quant/a_texture.wgsl", "quant/w_texture.wgsl");
/// K-major packed kernels: (A from buffer | texture) x (codes from buffer | texture).
macro_rules! packed_kn_source {
    ($a:literal, $w:literal) => {
        crate::wgsl!("quant/dequant.wgsl", $a, $w, "matmul/store4.wgsl", "quant/qmatmul_kn.wgsl"; [
            [("TM", 1), ("TN4", 2), ("BITS", 8), ("SCALE", 0), ("ZERO", 0)],
            [("TM", 4), ("TN4", 2), ("BITS", 4), ("SCALE", 1), ("ZERO", 1)],
            [("TM", 8), ("TN4", 1), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)],
            [("TM", 2), ("TN4", 4), ("BITS", 8), ("SCALE", 2), ("ZERO", 1)]
        ])
    };
}
static QKN_BUF: ShaderSource = packed_kn_source!("quant/a_buffer.wgsl", "quant/w_kn_buffer.wgsl");
static QKN_TEX: ShaderSource = packed_kn_source!("quant/a_buffer.wgsl", "quant/w_kn_texture.wgsl");
static QKN_XTEX: ShaderSource = packed_kn_source!("quant/a_texture.wgsl", "quant/w_kn_buffer.wgsl");
static QKN_TEX2: ShaderSource =
    packed_kn_source!("quant/a_texture.wgsl", "quant/w_kn_texture.wgsl");
/// One row of A per invocation (tm = 1): named accumulators instead of arrays.
macro_rules! packed_knv_source {
    ($a:literal, $w:literal) => {
        crate::wgsl!("quant/dequant.wgsl", $a, $w, "quant/kn_codes.wgsl", "matmul/store4.wgsl",
            "quant/qgemv_kn.wgsl"; [
            [("TN4", 1), ("BITS", 8), ("SCALE", 0), ("ZERO", 0)],
            [("TN4", 2), ("BITS", 4), ("SCALE", 1), ("ZERO", 1)],
            [("TN4", 4), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)],
            [("TN4", 4), ("BITS", 8), ("SCALE", 2), ("ZERO", 1)]
        ])
    };
}
/// GEMV on int8 or f16 codes in a normalised texture (the texture unit converts them).
macro_rules! packed_knn_source {
    ($a:literal) => {
        crate::wgsl!("quant/dequant.wgsl", $a, "quant/w_kn_norm.wgsl", "matmul/store4.wgsl",
            "quant/qgemv_kn.wgsl"; [
            [("TN4", 1), ("BITS", 8), ("SCALE", 0), ("ZERO", 0)],
            [("TN4", 2), ("BITS", 8), ("SCALE", 1), ("ZERO", 1)],
            [("TN4", 4), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)],
            [("TN4", 4), ("BITS", 8), ("SCALE", 2), ("ZERO", 0)]
        ])
    };
}
static QKNN: ShaderSource = packed_knn_source!("quant/a_buffer.wgsl");
/// GEMV on f16 weights read as f16 (`enable f16`).
macro_rules! packed_knf16_source {
    ($a:literal) => {
        crate::wgsl!("quant/dequant.wgsl", $a, "quant/w_kn_f16.wgsl", "matmul/store4.wgsl",
            "quant/qgemv_kn.wgsl"; [
            [("TN4", 1), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)],
            [("TN4", 4), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)]
        ])
    };
}
static QKNF16: ShaderSource = packed_knf16_source!("quant/a_buffer.wgsl");
static QKNF16_2: ShaderSource = packed_knf16_source!("quant/a_texture.wgsl");
static QKNN2: ShaderSource = packed_knn_source!("quant/a_texture.wgsl");
static QKNV_BUF: ShaderSource = packed_knv_source!("quant/a_buffer.wgsl", "quant/w_kn_buffer.wgsl");
static QKNV_TEX: ShaderSource =
    packed_knv_source!("quant/a_buffer.wgsl", "quant/w_kn_texture.wgsl");
static QKNV_XTEX: ShaderSource =
    packed_knv_source!("quant/a_texture.wgsl", "quant/w_kn_buffer.wgsl");
static QKNV_TEX2: ShaderSource =
    packed_knv_source!("quant/a_texture.wgsl", "quant/w_kn_texture.wgsl");
/// 4 or 8 rows of A by 1 or 2 texel columns (named accumulators).
macro_rules! packed_kng_source {
    ($a:literal, $w:literal) => {
        crate::wgsl!("quant/dequant.wgsl", $a, $w, "matmul/store4.wgsl", "quant/qgemm_kn.wgsl"; [
            [("TM", 4), ("TN4", 1), ("BITS", 8), ("SCALE", 0), ("ZERO", 0)],
            [("TM", 8), ("TN4", 2), ("BITS", 4), ("SCALE", 1), ("ZERO", 1)],
            [("TM", 8), ("TN4", 1), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)],
            [("TM", 4), ("TN4", 2), ("BITS", 8), ("SCALE", 2), ("ZERO", 1)]
        ])
    };
}
static QKNG_BUF: ShaderSource = packed_kng_source!("quant/a_buffer.wgsl", "quant/w_kn_buffer.wgsl");
static QKNG_TEX: ShaderSource =
    packed_kng_source!("quant/a_buffer.wgsl", "quant/w_kn_texture.wgsl");
static QKNG_XTEX: ShaderSource =
    packed_kng_source!("quant/a_texture.wgsl", "quant/w_kn_buffer.wgsl");
static QKNG_TEX2: ShaderSource =
    packed_kng_source!("quant/a_texture.wgsl", "quant/w_kn_texture.wgsl");
static Q_SG: ShaderSource = crate::wgsl!(
    "quant/dequant.wgsl", "quant/a_buffer.wgsl", "quant/w_buffer.wgsl", "quant/qgemv_sg.wgsl";
    [[("BITS", 8), ("SCALE", 0), ("ZERO", 0)], [("BITS", 4), ("SCALE", 1), ("ZERO", 1)]]
);
static ACT_Q8: ShaderSource = crate::wgsl!("quant/act_q8.wgsl");
macro_rules! i8_source {
    ($w:literal) => {
        crate::wgsl!("quant/dequant.wgsl", $w, "quant/qgemv_i8.wgsl"; [
            [("R", 1), ("DOT", 1), ("BITS", 8), ("SCALE", 0), ("ZERO", 0)],
            [("R", 4), ("DOT", 0), ("BITS", 8), ("SCALE", 1), ("ZERO", 1)],
            [("R", 2), ("DOT", 1), ("BITS", 8), ("SCALE", 2), ("ZERO", 1)]
        ])
    };
}
static QI8_BUF: ShaderSource = i8_source!("quant/w_buffer.wgsl");
static QI8_TEX: ShaderSource = i8_source!("quant/w_texture.wgsl");
static Q_WG: ShaderSource = crate::wgsl!(
    "quant/dequant.wgsl", "quant/a_buffer.wgsl", "quant/w_buffer.wgsl", "quant/qgemv_wg.wgsl";
    [[("BITS", 8), ("SCALE", 0), ("ZERO", 0)], [("BITS", 4), ("SCALE", 1), ("ZERO", 1)],
     [("BITS", 16), ("SCALE", 4), ("ZERO", 0)]]
);

/// Sparse weights read as stored (`ops/sparse.rs`): CSR and N:M.
static SP_CSR: ShaderSource = crate::wgsl!("sparse/half.wgsl", "sparse/values.wgsl", "sparse/csr.wgsl"; [
    [("VALS", 0), ("TM", 1)], [("VALS", 1), ("TM", 4)], [("VALS", 2), ("TM", 2)]
]);
static SP_CSR_WG: ShaderSource = crate::wgsl!("sparse/half.wgsl", "sparse/values.wgsl", "sparse/csr_wg.wgsl"; [
    [("VALS", 0)], [("VALS", 1)], [("VALS", 2)]
]);
static SP_NM: ShaderSource = crate::wgsl!("sparse/half.wgsl", "sparse/values.wgsl", "sparse/nm.wgsl"; [
    [("VALS", 0), ("TM", 1), ("NK", 2), ("MG", 4)], [("VALS", 1), ("TM", 4), ("NK", 4), ("MG", 8)],
    [("VALS", 2), ("TM", 2), ("NK", 1), ("MG", 1)]
]);
/// Sparse weights on the texture path.
static SP_CSR_TEX: ShaderSource = crate::wgsl!(
    "sparse/half.wgsl", "sparse/tex_vals.wgsl", "sparse/tex_store.wgsl", "sparse/csr_head.wgsl",
    "sparse/csr_tex.wgsl";
    [[("VALS", 0), ("TM", 1)], [("VALS", 1), ("TM", 2)], [("VALS", 2), ("TM", 4)]]
);
static SP_CSR_STAGE: ShaderSource = crate::wgsl!(
    "sparse/half.wgsl", "sparse/tex_vals.wgsl", "sparse/tex_store.wgsl", "sparse/csr_head.wgsl",
    "sparse/csr_stage.wgsl";
    [[("VALS", 0), ("TM", 1), ("CW", 4096)], [("VALS", 1), ("TM", 2), ("CW", 2048)],
     [("VALS", 2), ("TM", 4), ("CW", 1024)]]
);
static SP_NM_TEX: ShaderSource = crate::wgsl!(
    "sparse/half.wgsl", "sparse/tex_vals.wgsl", "sparse/tex_store.wgsl", "sparse/nm_tex.wgsl";
    [[("VALS", 0), ("NK", 2)], [("VALS", 1), ("NK", 1)], [("VALS", 2), ("NK", 2)]]
);
static SP_CSR_UNI: ShaderSource = crate::wgsl!(
    "sparse/half.wgsl", "sparse/tex_vals.wgsl", "sparse/tex_store.wgsl", "sparse/csr_uni.wgsl";
    [[("VALS", 0), ("TM", 1)], [("VALS", 1), ("TM", 2)], [("VALS", 2), ("TM", 4)]]
);
static SP_A_UNIFORM: ShaderSource = crate::wgsl!("sparse/a_uniform.wgsl");
/// Chunk width of `CsrUni`'s staged layout: one chunk for any K it reads (u16 columns).
const CSR_UNI_CW: u32 = 65536;
/// Vec4s of A in `CsrUni`'s uniform buffer (64 KiB, WebGPU's default binding limit).
const CSR_UNI_VEC4S: u32 = 4096;
static SP_NM_KN: ShaderSource = crate::wgsl!(
    "sparse/half.wgsl", "sparse/tex_vals.wgsl", "sparse/tex_store.wgsl", "sparse/nm_kn.wgsl";
    [[("VALS", 0), ("NK", 2), ("TN4", 2)], [("VALS", 0), ("NK", 1), ("TN4", 1)]]
);
static SP_BSR_TEX: ShaderSource = crate::wgsl!(
    "sparse/half.wgsl", "sparse/tex_vals.wgsl", "sparse/tex_store.wgsl", "sparse/bsr_tex.wgsl";
    [[("VALS", 0), ("R", 4)], [("VALS", 1), ("R", 1)], [("VALS", 2), ("R", 8)]]
);

impl OpFamily for MatMul {
    const FAMILY: &'static str = "matmul";
    type Kernel = MatMulKernel;

    fn arity(&self) -> (usize, usize) {
        let n = 2 + self.bias as usize + self.residual as usize;
        (n, n)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        self.act.check("matmul")?;
        super::float_op("matmul", ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32("matmul", ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes, &out.shape)
        })
    }

    /// The fast kernels take the batch forms the GPU kernels do; other broadcasts run the
    /// reference.
    fn cpu_kernel(&self, cx: &super::CpuCtx) -> Option<&'static str> {
        if !self.kernels_take(&cx.ins[0].shape, &cx.ins[1].shape) {
            return None;
        }
        super::cpu_fast::matmul_kernel(self, cx)
    }

    fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_fast::matmul(self, kernel, ins, out)
    }

    /// The tuned choice for the case's slot (GEMV when M = 1, GEMM otherwise, with a constant
    /// B; the scalar slot otherwise) when it fits, else the variant that always does.
    fn select(&self, cx: &SelectCtx) -> Option<MatMulKernel> {
        // 1-D operands and broadcasts the kernels' single batch stride cannot express run on
        // the CPU inside the plan.
        if !self.kernels_take(cx.shape(0), cx.shape(1)) {
            return None;
        }
        if self.packed_b(cx) {
            return self.select_packed(cx);
        }
        if !cx.dense_f32() {
            return None;
        }
        if cx.device.naive_only {
            return Some(MatMulKernel::Naive);
        }
        let a = cx.shape(0);
        let rows = if self.trans_a {
            a[a.len() - 1]
        } else {
            a[a.len() - 2]
        };
        let tm = if rows == 1 { 1 } else { 4 };
        if cx.is_const[1] {
            if let Some(k) = self.select_f16c(cx, rows) {
                return Some(k);
            }
            let (slot, default) = if rows == 1 {
                ("gemv", MatMulKernel::Vec4 { tm: 1, tn: 4 })
            } else {
                ("gemm", MatMulKernel::Bcast { tm: 4, tn4: 2 })
            };
            let k = cx.tuned::<Self>(slot).unwrap_or(default);
            Some(if self.fits(&k, cx).is_ok() {
                k
            } else {
                // Takes any constant B with no texture: always fits.
                MatMulKernel::Bcast { tm, tn4: 2 }
            })
        } else if self.fits(&MatMulKernel::Vec4 { tm, tn: 4 }, cx).is_ok() {
            Some(MatMulKernel::Vec4 { tm, tn: 4 })
        } else {
            let k = cx
                .tuned::<Self>("gemm_tiled")
                .filter(|k| self.fits(k, cx).is_ok());
            Some(k.unwrap_or(MatMulKernel::Tiled { tm: 4, tn: 4 }))
        }
    }

    fn fits(&self, k: &MatMulKernel, cx: &SelectCtx) -> std::result::Result<(), String> {
        k.check()?;
        let b = cx.shape(1);
        let need_const = || {
            if cx.is_const[1] {
                Ok(())
            } else {
                Err(format!("kernel {} needs a constant B", k.name()))
            }
        };
        let b_tex = || {
            let (w, h) = tex_extent(self.trans_b, b);
            if cx.tex_fits(w, h) {
                Ok(())
            } else {
                Err(format!(
                    "B texture {w}x{h} exceeds the device's 2-D texture size"
                ))
            }
        };
        let a = cx.shape(0);
        let a_rows = crate::tensor::numel(&a[..a.len() - 1]);
        // A copied per run into a texture of the packed kernels' K extent.
        let a_tex = |xtex: bool, lay: &QLayout| {
            if xtex && (self.trans_a || !cx.tex_fits(lay.row_t * lay.vpt() / 4, a_rows)) {
                Err("A texture needs an untransposed A within the texture size".to_string())
            } else {
                Ok(())
            }
        };
        if k.reads_packed() == cx.formats[1].is_dense() {
            return Err(format!(
                "kernel {} does not read {} weights",
                k.name(),
                cx.formats[1].label()
            ));
        }
        match *k {
            MatMulKernel::Packed { wtex, xtex, .. } => {
                let lay = self.packed_layout(cx)?;
                if wtex && !cx.tex_fits(lay.row_t, lay.rows) {
                    return Err("weight texture exceeds the device's 2-D texture size".into());
                }
                a_tex(xtex, &lay)
            }
            MatMulKernel::PackedWg => self.packed_layout(cx).map(|_| ()),
            MatMulKernel::PackedF16 { xtex, .. } => {
                let lay = self.packed_layout(cx)?;
                if lay.bits != 16 {
                    return Err("the f16 kernel reads f16 weights only".into());
                }
                if !cx.device.features.shader_f16 {
                    return Err("the f16 kernel needs the adapter's shader-f16 feature".into());
                }
                a_tex(xtex, &lay)
            }
            MatMulKernel::PackedF16c { xtex, .. } => {
                let lay = self.packed_layout(cx)?;
                if lay.bits != 16 {
                    return Err("the f16 kernel reads f16 weights only".into());
                }
                f16_allowed(&k.name(), cx)?;
                a_tex(xtex, &lay)
            }
            MatMulKernel::SgGemv => {
                if !cx.device.features.subgroups {
                    return Err("the subgroup GEMV needs the adapter's subgroup feature".into());
                }
                let max = cx.device.limits.max_compute_workgroups_per_dimension as usize;
                let n = cx.out.shape[cx.out.shape.len() - 1];
                if n > max || a_rows > max {
                    return Err(format!(
                        "one workgroup per output: {n} x {a_rows} exceed the workgroup grid"
                    ));
                }
                Ok(())
            }
            MatMulKernel::F16Block { tex, .. } => {
                f16_allowed(&k.name(), cx)?;
                need_const()?;
                if tex {
                    b_tex()?;
                }
                Ok(())
            }
            MatMulKernel::PackedNorm { xtex, .. } => {
                let lay = self.packed_layout(cx)?;
                if lay.bits == 4 {
                    return Err("no normalised texture format holds int4 codes".into());
                }
                if !cx.tex_fits(lay.n4s() * lay.vpt() / 4, lay.row_t * 4) {
                    return Err("weight texture exceeds the device's 2-D texture size".into());
                }
                a_tex(xtex, &lay)
            }
            MatMulKernel::PackedSg => {
                if !cx.device.features.subgroups {
                    return Err("the subgroup GEMV needs the adapter's subgroup feature".into());
                }
                self.packed_layout(cx).map(|_| ())
            }
            MatMulKernel::Int8Act { wtex, .. } => {
                let lay = self.packed_layout(cx)?;
                if !cx.device.int8_activations {
                    Err("int8 x int8 runs only with int8 activations enabled".into())
                } else if lay.bits != 8 {
                    Err(format!(
                        "int8 x int8 needs int8 weights, not {}",
                        cx.formats[1].label()
                    ))
                } else if self.trans_a {
                    Err("int8 activations are quantised from an untransposed A".into())
                } else if lay.cols >= 1 << 17 {
                    // |code products| <= 2^14: an i32 group sum holds up to 2^17 of them.
                    Err(format!("K = {} overflows the i32 accumulators", lay.cols))
                } else if !cx.tex_fits(lay.row_t + 1, a_rows) {
                    Err("activation code texture exceeds the device's 2-D texture size".into())
                } else if wtex && !cx.tex_fits(lay.row_t, lay.rows) {
                    Err("weight texture exceeds the device's 2-D texture size".into())
                } else {
                    Ok(())
                }
            }
            MatMulKernel::PackedKn { wtex, xtex, .. } => {
                let lay = self.packed_layout(cx)?;
                if wtex && !cx.tex_fits(lay.n4s(), lay.row_t * 4) {
                    return Err("weight texture exceeds the device's 2-D texture size".into());
                }
                a_tex(xtex, &lay)
            }
            MatMulKernel::Csr { .. }
            | MatMulKernel::CsrWg { .. }
            | MatMulKernel::Nm { .. }
            | MatMulKernel::CsrTex { .. }
            | MatMulKernel::CsrStage { .. }
            | MatMulKernel::NmTex { .. }
            | MatMulKernel::NmKn { .. }
            | MatMulKernel::CsrUni { .. }
            | MatMulKernel::BsrTex { .. } => {
                use crate::format::SparseLayout;
                let lay = self.sparse_layout(cx)?;
                let reads = match (k, lay.layout) {
                    (
                        MatMulKernel::Csr { .. }
                        | MatMulKernel::CsrWg { .. }
                        | MatMulKernel::CsrTex { .. }
                        | MatMulKernel::CsrStage { .. }
                        | MatMulKernel::CsrUni { .. },
                        SparseLayout::Csr,
                    )
                    | (MatMulKernel::Nm { .. }, SparseLayout::NM { .. }) => true,
                    (MatMulKernel::BsrTex { .. }, SparseLayout::Bsr { r, c }) => {
                        matches!(r, 1 | 2 | 4 | 8) && c == 4
                    }
                    (MatMulKernel::NmTex { .. }, SparseLayout::NM { n, m }) => {
                        matches!(n, 1 | 2) && m == 4
                    }
                    (MatMulKernel::NmKn { .. }, SparseLayout::NM { n, m }) => {
                        matches!(n, 1 | 2) && m == 4 && lay.vals == 0
                    }
                    _ => false,
                };
                if !reads {
                    return Err(format!(
                        "kernel {} does not read {} weights",
                        k.name(),
                        cx.formats[1].label()
                    ));
                }
                // A, the weight's parts (row pointers for CSR), bias, residual, output; the
                // texture kernels bind their pointers, scales, bias, residual and output.
                let buffers = match (k, lay.layout) {
                    (
                        MatMulKernel::CsrTex { .. }
                        | MatMulKernel::CsrStage { .. }
                        | MatMulKernel::CsrUni { .. }
                        | MatMulKernel::BsrTex { .. },
                        _,
                    ) => 5,
                    (MatMulKernel::NmTex { .. } | MatMulKernel::NmKn { .. }, _) => 4,
                    (_, SparseLayout::Csr) => 8,
                    _ => 7,
                };
                if cx.device.limits.max_storage_buffers_per_stage < buffers {
                    return Err(format!(
                        "kernel {} binds {buffers} storage buffers",
                        k.name()
                    ));
                }
                let max = cx.device.limits.max_compute_workgroups_per_dimension as usize;
                if matches!(k, MatMulKernel::CsrWg { .. }) && a_rows > max {
                    return Err(format!("{a_rows} rows of A exceed the workgroup grid"));
                }
                if let MatMulKernel::CsrUni { .. } = k {
                    let need = CSR_UNI_VEC4S as usize;
                    if a_rows.saturating_mul(lay.cols.div_ceil(4)) > need {
                        return Err(format!(
                            "{a_rows} rows of A x {} columns exceed the kernel's 64 KiB uniform \
                             buffer",
                            lay.cols
                        ));
                    }
                    if cx.device.limits.max_uniform_buffer_binding_size < 16 * need as u64 {
                        return Err("the device's uniform bindings hold less than 64 KiB".into());
                    }
                    if lay.cols > CSR_UNI_CW as usize {
                        return Err(format!("K = {} exceeds u16 columns", lay.cols));
                    }
                }
                if let MatMulKernel::CsrStage { tm, cw, .. } = *k {
                    let bytes = tm * cw * 4;
                    if bytes > cx.device.limits.max_compute_workgroup_storage_size {
                        return Err(format!(
                            "kernel {} stages {bytes} bytes of A, over the device's workgroup \
                             storage",
                            k.name()
                        ));
                    }
                }
                if let MatMulKernel::CsrTex { .. }
                | MatMulKernel::CsrStage { .. }
                | MatMulKernel::NmTex { .. }
                | MatMulKernel::NmKn { .. }
                | MatMulKernel::CsrUni { .. }
                | MatMulKernel::BsrTex { .. } = k
                {
                    if self.trans_a {
                        return Err("texture sparse kernels need an untransposed A".into());
                    }
                    let k4 = lay.cols.div_ceil(4);
                    if !cx.tex_fits(k4, a_rows) {
                        return Err("A's texture exceeds the device's 2-D texture size".into());
                    }
                    // Upper bound of the value texture (at most every entry stored, plus
                    // 3 padding entries a row): f32 is the largest per texel.
                    let chunks = match *k {
                        MatMulKernel::CsrStage { cw, .. } => lay.cols.div_ceil(cw as usize),
                        _ => 1,
                    };
                    let quads = match *k {
                        // Value texels: groups padded to 8, NK <= 2 slots, 4 rows a texel.
                        MatMulKernel::NmKn { .. } => {
                            (lay.cols / 4).div_ceil(8) * 16 * lay.rows.div_ceil(4)
                        }
                        _ => lay.rows * lay.cols / 4 + 2 * lay.rows * chunks,
                    };
                    let h = SLayout::tex_height(quads / lay.quads_per_texel() + 1);
                    if !cx.tex_fits(crate::ops::sparse::TEX_WIDTH, h) {
                        return Err(
                            "the weight's textures exceed the device's 2-D texture size".into()
                        );
                    }
                }
                Ok(())
            }
            MatMulKernel::Naive | MatMulKernel::Tiled { .. } => Ok(()),
            MatMulKernel::WgTile { tm, tn, wg } => {
                let l = &cx.device.limits;
                let words = WG_TILE_K * wg * (tm + tn);
                if wg * wg > l.max_compute_invocations_per_workgroup {
                    Err(format!(
                        "{} invocations per workgroup exceed the device's {}",
                        wg * wg,
                        l.max_compute_invocations_per_workgroup
                    ))
                } else if words * 4 > l.max_compute_workgroup_storage_size {
                    Err(format!(
                        "{} bytes of workgroup storage exceed the device's {}",
                        words * 4,
                        l.max_compute_workgroup_storage_size
                    ))
                } else {
                    Ok(())
                }
            }
            MatMulKernel::Vec4 { .. } => {
                if self.vec4_ok(&cx.ins[0].shape, cx.is_const[1]) {
                    Ok(())
                } else {
                    Err(
                        "vec4 kernel needs K % 4 == 0, no trans_a, and B transposed or constant"
                            .into(),
                    )
                }
            }
            MatMulKernel::Bcast { .. } => need_const(),
            MatMulKernel::Tex { .. } => need_const().and_then(|_| b_tex()),
            MatMulKernel::Tex2 { .. } | MatMulKernel::Tex2Reg { .. } => {
                need_const()?;
                b_tex()?;
                if self.trans_a {
                    Err("two-texture kernel needs an untransposed A".into())
                } else if !cx.tex_fits(a[a.len() - 1].div_ceil(4), a_rows) {
                    Err("A texture exceeds the device's 2-D texture size".into())
                } else {
                    Ok(())
                }
            }
        }
    }

    fn lower(&self, k: &MatMulKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.lower_kernel(*k, cx)
    }

    fn tune_slots() -> Vec<TuneSlot> {
        let linear = MatMul {
            trans_b: true,
            ..Default::default()
        };
        let lin_inputs =
            |m: usize, k: usize, n: usize| vec![(vec![m, k], false), (vec![n, k], true)];
        let vec4 = [(4, 4), (4, 8), (8, 4), (8, 8)].map(|(tm, tn)| MatMulKernel::Vec4 { tm, tn });
        let bcast = [(4, 2), (8, 1), (8, 2)].map(|(tm, tn4)| MatMulKernel::Bcast { tm, tn4 });
        let tex = [(4, 2), (8, 1), (8, 2)].map(|(tm, tn4)| MatMulKernel::Tex { tm, tn4 });
        let tex2 = [(4, 2), (8, 1), (8, 2)].map(|(tm, tn4)| MatMulKernel::Tex2 { tm, tn4 });
        let tex2r = [(8, 2), (8, 4), (16, 2), (16, 4), (4, 4)]
            .map(|(tm, tn4)| MatMulKernel::Tex2Reg { tm, tn4 });
        // Workgroup-tiled variants for real GPUs (64 x 64 blocks of 256 invocations, 32 x 32
        // blocks of 64), in the GEMM slots so each adapter measures them against the rest.
        let wg = [(4, 4, 16), (4, 4, 8)].map(|(tm, tn, wg)| MatMulKernel::WgTile { tm, tn, wg });
        let gemm: Vec<MatMulKernel> = vec4
            .into_iter()
            .chain(bcast)
            .chain(tex)
            .chain(tex2)
            .chain(tex2r)
            .chain(wg)
            .collect();
        let vec4 = [1, 2, 4, 8].map(|tn| MatMulKernel::Vec4 { tm: 1, tn });
        let bcast = [1, 2, 4].map(|tn4| MatMulKernel::Bcast { tm: 1, tn4 });
        let tex = [1, 2, 4].map(|tn4| MatMulKernel::Tex { tm: 1, tn4 });
        let gemv: Vec<MatMulKernel> = vec4
            .into_iter()
            .chain(bcast)
            .chain(tex)
            .chain([MatMulKernel::SgGemv])
            .collect();
        let tiled = [(4, 4), (2, 4), (4, 2)]
            .iter()
            .map(|&(tm, tn)| MatMulKernel::Tiled { tm, tn })
            .chain(wg)
            .collect();
        let trans_a = MatMul {
            trans_a: true,
            ..Default::default()
        };
        // Packed weights: tuned on int8 per channel (the int4 and f16 paths share the loops).
        let int8 = crate::format::WeightFormat::Quant(crate::format::QuantSpec {
            bits: 8,
            group: 0,
            zero_points: false,
            pow2: false,
            scale_dtype: crate::tensor::DType::F32,
        });
        let packed_formats = vec![crate::format::WeightFormat::Dense, int8];
        let packed = |tms: &[u32]| -> Vec<MatMulKernel> {
            let mut v = Vec::new();
            for &tm in tms {
                for r in [1, 2, 4] {
                    for (wtex, xtex) in [(false, false), (true, false), (true, true)] {
                        v.push(MatMulKernel::Packed { tm, r, wtex, xtex });
                    }
                }
            }
            v
        };
        let kn = |shapes: &[(u32, u32)]| -> Vec<MatMulKernel> {
            let mut v = Vec::new();
            for &(tm, tn4) in shapes {
                for (wtex, xtex) in [(false, false), (true, false), (true, true)] {
                    v.push(MatMulKernel::PackedKn {
                        tm,
                        tn4,
                        wtex,
                        xtex,
                    });
                }
            }
            v
        };
        let mut qgemv = packed(&[1]);
        qgemv.extend([MatMulKernel::PackedWg, MatMulKernel::PackedSg]);
        for tn4 in [1, 2, 4] {
            for xtex in [false, true] {
                qgemv.push(MatMulKernel::PackedNorm { tn4, xtex });
            }
        }
        qgemv.extend(kn(&[(1, 1), (1, 2), (1, 4)]));
        let mut qgemm = packed(&[4]);
        qgemm.extend(kn(&[(4, 1), (4, 2), (8, 1), (8, 2), (2, 4)]));
        let mut qi8 = Vec::new();
        for r in [1, 2, 4] {
            for dot in [false, true] {
                for wtex in [false, true] {
                    qi8.push(MatMulKernel::Int8Act { r, dot, wtex });
                }
            }
        }
        // N = 4096 for the GEMV slots: blocks of 16 outputs per invocation need that many
        // outputs to keep several workgroups busy (at N = 1024 the tuner preferred small blocks
        // that lose on large layers); K stays small to keep tuning quick.
        let mut qi8_slot = TuneSlot::new("qi8", qi8, linear, lin_inputs(1, 1024, 4096))
            .with_formats(packed_formats.clone());
        qi8_slot.int8_activations = true;
        let mut f16v: Vec<MatMulKernel> = kn(&[(1, 1), (1, 2), (1, 4)]);
        for tn4 in [1, 2, 4] {
            for xtex in [false, true] {
                f16v.push(MatMulKernel::PackedF16 { tn4, xtex });
                f16v.push(MatMulKernel::PackedNorm { tn4, xtex });
            }
        }
        let half_formats = vec![
            crate::format::WeightFormat::Dense,
            crate::format::WeightFormat::Half,
        ];
        let f16c = f16c_slots(&gemm, &gemv, &f16v, linear, lin_inputs);
        let mut slots = vec![
            TuneSlot::new("qgemv_f16", f16v, linear, lin_inputs(1, 1024, 4096))
                .with_formats(half_formats),
            qi8_slot,
            TuneSlot::new("qgemv", qgemv, linear, lin_inputs(1, 1024, 4096))
                .with_formats(packed_formats.clone()),
            TuneSlot::new("qgemm", qgemm, linear, lin_inputs(256, 512, 1024))
                .with_formats(packed_formats),
            TuneSlot::new("gemm", gemm, linear, lin_inputs(128, 256, 512)),
            TuneSlot::new("gemv", gemv, linear, lin_inputs(1, 1024, 1024)),
            TuneSlot::new(
                "gemm_tiled",
                tiled,
                trans_a,
                vec![(vec![127, 96], false), (vec![127, 96], false)],
            ),
        ];
        slots.extend(f16c);
        slots.extend(sparse_slots(linear, lin_inputs));
        slots
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![
            &GEMM_NAIVE,
            &GEMM_TILED,
            &GEMM_WG,
            &GEMM_VEC4,
            &GEMM_BCAST,
            &GEMM_TEX,
            &GEMM_TEX2,
            &GEMM_TEX2_REG,
            &TO_TEXTURE,
            &Q_BUF,
            &Q_TEX,
            &Q_XTEX,
            &Q_TEX2,
            &Q_WG,
            &QKN_BUF,
            &QKN_TEX,
            &QKN_XTEX,
            &QKN_TEX2,
            &QKNV_BUF,
            &QKNV_TEX,
            &QKNV_XTEX,
            &QKNV_TEX2,
            &QKNN,
            &QKNN2,
            &QKNF16,
            &QKNF16_2,
            &QKNG_BUF,
            &QKNG_TEX,
            &QKNG_XTEX,
            &QKNG_TEX2,
            &Q_SG,
            &ACT_Q8,
            &QI8_BUF,
            &QI8_TEX,
            &SP_CSR,
            &SP_CSR_WG,
            &SP_NM,
            &SP_CSR_TEX,
            &SP_CSR_STAGE,
            &SP_NM_TEX,
            &SP_NM_KN,
            &SP_CSR_UNI,
            &SP_A_UNIFORM,
            &SP_BSR_TEX,
            &GEMV_SG,
            &GEMM_F16_BCAST,
            &GEMM_F16_TEX,
            &QKNF16C,
            &QKNF16C_2,
        ]
    }

    fn epilogue_act(&mut self) -> Option<&mut Activation> {
        Some(&mut self.act)
    }

    fn flops(&self, ins: &[ValueType], out: &ValueType) -> u64 {
        (crate::tensor::numel(&out.shape) as u64)
            .saturating_mul(self.k(&ins[0].shape) as u64)
            .saturating_mul(2)
    }
}

/// Uniform parameters of the naive and tiled kernels; the CPU reference reads the same struct.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batch: u32,
    /// A: batch, row (m) and k strides, in elements.
    pub a_bs: u32,
    pub a_rs: u32,
    pub a_ks: u32,
    /// B: batch, k and column (n) strides.
    pub b_bs: u32,
    pub b_ks: u32,
    pub b_ns: u32,
    pub has_bias: u32,
    pub has_res: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct BcastParams {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_bs: u32,
    a_rs: u32,
    a_ks: u32,
    b_bs4: u32,
    n4: u32,
    has_bias: u32,
    has_res: u32,
    _p0: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Vec4Params {
    m: u32,
    n: u32,
    k4: u32,
    batch: u32,
    a_bs4: u32,
    b_bs4: u32,
    has_bias: u32,
    has_res: u32,
}

impl MatMul {
    /// The inner dimension K given A's shape.
    pub fn k(&self, a: &[usize]) -> usize {
        if a.len() < 2 {
            // A vector (1-D A): its length.
            a.first().copied().unwrap_or(1)
        } else if self.trans_a {
            a[a.len() - 2]
        } else {
            a[a.len() - 1]
        }
    }

    /// A and B as matrices: a 1-D operand is a vector (ONNX/numpy: A `[K]` is a row `[1, K]`,
    /// B `[K]` a column `[K, 1]`; the added dim is removed from the output).
    fn as_matrices(&self, a: &[usize], b: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let a2 = match (a.len(), self.trans_a) {
            (1, false) => vec![1, a[0]],
            (1, true) => vec![a[0], 1],
            _ => a.to_vec(),
        };
        let b2 = match (b.len(), self.trans_b) {
            (1, false) => vec![b[0], 1],
            (1, true) => vec![1, b[0]],
            _ => b.to_vec(),
        };
        (a2, b2)
    }

    /// Whether the GPU kernels (and the fast CPU kernels), which take one batch count with A
    /// batched as the output and B either batched alike or shared, run these operands. Other
    /// cases (1-D operands, A broadcast over B's batch, partial broadcasts) run the reference.
    pub fn kernels_take(&self, a: &[usize], b: &[usize]) -> bool {
        if a.len() < 2 || b.len() < 2 {
            return false;
        }
        let (ab, bb) = (numel(&a[..a.len() - 2]), numel(&b[..b.len() - 2]));
        let out =
            super::elementwise::broadcast_shape("matmul", &a[..a.len() - 2], &b[..b.len() - 2]);
        match out {
            // Equal counts: nothing of A is broadcast; B is shared (1) or batched alike.
            Ok(o) => numel(&o) == ab && (bb == 1 || bb == ab),
            Err(_) => false,
        }
    }

    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (a0, b0) = (&ins[0], &ins[1]);
        if a0.is_empty() || b0.is_empty() {
            return Err(Error::shape(
                "matmul",
                "operands of rank >= 1",
                format!("{} and {}", fmt_shape(a0), fmt_shape(b0)),
            ));
        }
        let (a, b) = self.as_matrices(a0, b0);
        let (a, b) = (&a, &b);
        let (m, k) = if self.trans_a {
            (a[a.len() - 1], a[a.len() - 2])
        } else {
            (a[a.len() - 2], a[a.len() - 1])
        };
        let (kb, n) = if self.trans_b {
            (b[b.len() - 1], b[b.len() - 2])
        } else {
            (b[b.len() - 2], b[b.len() - 1])
        };
        if k != kb {
            return Err(Error::shape(
                "matmul",
                format!("B with K = {k} (A is {})", fmt_shape(a0)),
                format!("B of shape {} (K = {kb})", fmt_shape(b0)),
            ));
        }
        let a_batch = &a[..a.len() - 2];
        let b_batch = &b[..b.len() - 2];
        let mut out =
            super::elementwise::broadcast_shape("matmul", a_batch, b_batch).map_err(|_| {
                Error::shape(
                    "matmul",
                    format!("B batch dims broadcastable with A's {a_batch:?}"),
                    format!("{b_batch:?}"),
                )
            })?;
        if a0.len() > 1 {
            out.push(m);
        }
        if b0.len() > 1 {
            out.push(n);
        }
        if crate::tensor::checked_numel(&out).is_none_or(|v| v > u32::MAX as usize) {
            return Err(Error::graph(format!(
                "matmul: output {} has more than {} elements",
                fmt_shape(&out),
                u32::MAX
            )));
        }
        super::check_epilogue("matmul", ins, self.bias, self.residual, n, &out)?;
        Ok(out)
    }

    /// The reference for operands the kernels do not take ([`MatMul::kernels_take`]): numpy
    /// batch broadcasting, each output batch reading its A and B matrices by broadcast
    /// strides; the same i-k-j loop and epilogue order as the batched reference.
    fn cpu_broadcast(&self, xs: &[&[f32]], shapes: &[Vec<usize>], out_len: usize) -> Vec<f32> {
        let (a, b) = self.as_matrices(&shapes[0], &shapes[1]);
        let (ab, bb) = (&a[..a.len() - 2], &b[..b.len() - 2]);
        let ob = super::elementwise::broadcast_shape("matmul", ab, bb).unwrap_or_default();
        let (sa, sb) = (
            super::elementwise::broadcast_strides(ab, &ob),
            super::elementwise::broadcast_strides(bb, &ob),
        );
        let mut p = self.params(&a, &b);
        p.batch = 1;
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let (a_mat, b_mat) = (m * k, k * n);
        let bias = if self.bias { Some(xs[2]) } else { None };
        let res = if self.residual {
            Some(xs[xs.len() - 1])
        } else {
            None
        };
        let mut c = vec![0.0f32; out_len];
        for bat in 0..numel(&ob) {
            // The batch's index in A's and B's (broadcast) batch dims.
            let (mut rem, mut ia, mut ib) = (bat, 0, 0);
            for d in (0..ob.len()).rev() {
                let i = rem % ob[d];
                rem /= ob[d];
                ia += i * sa[d];
                ib += i * sb[d];
            }
            let (xa, xb) = (&xs[0][ia * a_mat..][..a_mat], &xs[1][ib * b_mat..][..b_mat]);
            let cb = &mut c[bat * m * n..(bat + 1) * m * n];
            for i in 0..m {
                let crow = &mut cb[i * n..(i + 1) * n];
                for kk in 0..k {
                    let av = xa[i * p.a_rs as usize + kk * p.a_ks as usize];
                    for (j, cv) in crow.iter_mut().enumerate() {
                        *cv += av * xb[kk * p.b_ks as usize + j * p.b_ns as usize];
                    }
                }
            }
        }
        for (o, v) in c.iter_mut().enumerate() {
            if let Some(bias) = bias {
                *v += bias[o % n];
            }
            if let Some(r) = res {
                *v += r[o];
            }
            *v = self.act.apply(*v);
        }
        c
    }

    /// Parameters (sizes and strides) for given input shapes.
    pub fn params(&self, a: &[usize], b: &[usize]) -> GemmParams {
        let (ra, rb) = (a.len(), b.len());
        let (m, k) = if self.trans_a {
            (a[ra - 1], a[ra - 2])
        } else {
            (a[ra - 2], a[ra - 1])
        };
        let n = if self.trans_b { b[rb - 2] } else { b[rb - 1] };
        let batch: usize = a[..ra - 2].iter().product();
        let (a_rs, a_ks) = if self.trans_a { (1, m) } else { (k, 1) };
        let (b_ks, b_ns) = if self.trans_b { (1, k) } else { (n, 1) };
        // B shared by every batch (no batch dims, or all of size 1): batch stride 0.
        let b_bs = if numel(&b[..rb - 2]) > 1 { k * n } else { 0 };
        GemmParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            batch: batch as u32,
            a_bs: (m * k) as u32,
            a_rs: a_rs as u32,
            a_ks: a_ks as u32,
            b_bs: b_bs as u32,
            b_ks: b_ks as u32,
            b_ns: b_ns as u32,
            has_bias: self.bias as u32,
            has_res: self.residual as u32,
        }
    }

    pub(crate) fn cpu_f32(
        &self,
        xs: &[&[f32]],
        shapes: &[Vec<usize>],
        out_shape: &[usize],
    ) -> Vec<f32> {
        if !self.kernels_take(&shapes[0], &shapes[1]) {
            return self.cpu_broadcast(xs, shapes, crate::tensor::numel(out_shape));
        }
        let p = self.params(&shapes[0], &shapes[1]);
        let (a, b) = (xs[0], xs[1]);
        let bias = if self.bias { Some(xs[2]) } else { None };
        let res = if self.residual {
            Some(xs[xs.len() - 1])
        } else {
            None
        };
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let mut c = vec![0.0f32; crate::tensor::numel(out_shape)];
        for bat in 0..p.batch as usize {
            let cb = &mut c[bat * m * n..(bat + 1) * m * n];
            for i in 0..m {
                let crow = &mut cb[i * n..(i + 1) * n];
                let a0 = bat * p.a_bs as usize + i * p.a_rs as usize;
                // i-k-j order: the inner loop runs along a row of B when B is not transposed.
                for kk in 0..k {
                    let av = a[a0 + kk * p.a_ks as usize];
                    let b0 = bat * p.b_bs as usize + kk * p.b_ks as usize;
                    for (j, cv) in crow.iter_mut().enumerate() {
                        *cv += av * b[b0 + j * p.b_ns as usize];
                    }
                }
            }
        }
        for (o, v) in c.iter_mut().enumerate() {
            if let Some(bias) = bias {
                *v += bias[o % n];
            }
            if let Some(r) = res {
                *v += r[o];
            }
            *v = self.act.apply(*v);
        }
        c
    }

    /// Whether the vec4 NT kernel can run these operands (A's shape, B constant?).
    pub fn vec4_ok(&self, a: &[usize], b_const: bool) -> bool {
        let k = self.k(a);
        !self.trans_a && k.is_multiple_of(4) && (self.trans_b || b_const)
    }

    fn lower_kernel(&self, kernel: MatMulKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        if let MatMulKernel::Csr { tm, .. } | MatMulKernel::Nm { tm, .. } = kernel {
            return self.lower_sparse(kernel, tm, cx);
        }
        if let MatMulKernel::CsrWg { .. } = kernel {
            return self.lower_sparse(kernel, 1, cx);
        }
        if let MatMulKernel::CsrTex { .. }
        | MatMulKernel::CsrStage { .. }
        | MatMulKernel::NmTex { .. }
        | MatMulKernel::NmKn { .. }
        | MatMulKernel::CsrUni { .. }
        | MatMulKernel::BsrTex { .. } = kernel
        {
            return self.lower_sparse_tex(kernel, cx);
        }
        if kernel.reads_packed() {
            return self.lower_packed(kernel, cx);
        }
        if let MatMulKernel::SgGemv | MatMulKernel::F16Block { .. } = kernel {
            return self.lower_sg_f16(kernel, cx);
        }
        let p = self.params(&cx.in_shapes[0], &cx.in_shapes[1]);
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        let (m, n, batch) = (p.m as usize, p.n as usize, p.batch);
        kernel
            .check()
            .map_err(|e| unsupported("matmul", format!("kernel {}: {e}", kernel.name())))?;
        let (shader, params, b_bind, wg) = match kernel {
            MatMulKernel::Naive => (
                ShaderKey::new(&GEMM_NAIVE, &[]),
                bytemuck::cast_slice(&[p]).to_vec(),
                Bind::Input(1),
                [div_ceil(n, 8), div_ceil(m, 8), batch],
            ),
            MatMulKernel::Tiled { tm, tn } => (
                ShaderKey::new(&GEMM_TILED, &[("TM", tm), ("TN", tn)]),
                bytemuck::cast_slice(&[p]).to_vec(),
                Bind::Input(1),
                [
                    div_ceil(n, 8 * tn as usize),
                    div_ceil(m, 8 * tm as usize),
                    batch,
                ],
            ),
            MatMulKernel::WgTile { tm, tn, wg } => (
                ShaderKey::new(
                    &GEMM_WG,
                    &[("TM", tm), ("TN", tn), ("WG", wg), ("BK", WG_TILE_K)],
                ),
                bytemuck::cast_slice(&[p]).to_vec(),
                Bind::Input(1),
                [
                    div_ceil(n, (wg * tn) as usize),
                    div_ceil(m, (wg * tm) as usize),
                    batch,
                ],
            ),
            MatMulKernel::Vec4 { tm, tn } => {
                if !self.vec4_ok(&cx.in_shapes[0], cx.is_const[1]) {
                    return Err(unsupported(
                        "matmul",
                        "vec4 kernel needs K % 4 == 0, no trans_a, and B transposed or constant",
                    ));
                }
                let b_bind = if self.trans_b {
                    Bind::Input(1)
                } else {
                    Bind::Packed(1, Pack::TransposeLast2)
                };
                let (wx, wy) = vec4_workgroup(tm);
                let k4 = p.k / 4;
                let v = Vec4Params {
                    m: p.m,
                    n: p.n,
                    k4,
                    batch,
                    a_bs4: p.m * k4,
                    b_bs4: if p.b_bs != 0 { p.n * k4 } else { 0 },
                    has_bias: p.has_bias,
                    has_res: p.has_res,
                };
                (
                    ShaderKey::new(
                        &GEMM_VEC4,
                        &[("TM", tm), ("TN", tn), ("WG_X", wx), ("WG_Y", wy)],
                    ),
                    bytemuck::cast_slice(&[v]).to_vec(),
                    b_bind,
                    [
                        div_ceil(n, (wx * tn) as usize),
                        div_ceil(m, (wy * tm) as usize),
                        batch,
                    ],
                )
            }
            MatMulKernel::Tex2 { tm, tn4 } | MatMulKernel::Tex2Reg { tm, tn4 } => {
                if !cx.is_const[1] || self.trans_a {
                    return Err(unsupported(
                        "matmul",
                        "two-texture kernel needs a constant B and an untransposed A",
                    ));
                }
                let (n4, k4) = (p.n.div_ceil(4), p.k.div_ceil(4));
                let rows = batch * p.m;
                let to_tex = a_to_texture(rows, p.k);
                let params = [
                    p.m,
                    p.n,
                    p.k,
                    batch,
                    k4,
                    if p.b_bs != 0 { p.k } else { 0 },
                    n4,
                    p.has_bias,
                    p.has_res,
                    0,
                    0,
                    0,
                ];
                let reg = matches!(kernel, MatMulKernel::Tex2Reg { .. });
                // Workgroups of 64 x 1 invocations (`Tex2`) or 16 x 4 (`Tex2Reg`).
                let (wx, wy) = if reg { (16, 4) } else { (64, 1) };
                let wg = [
                    div_ceil(n4 as usize, wx * tn4 as usize),
                    div_ceil(m, wy * tm as usize),
                    batch,
                ];
                let source = if reg { &GEMM_TEX2_REG } else { &GEMM_TEX2 };
                check_grid("matmul", wg, cx.max_workgroups)?;
                check_grid("matmul", to_tex.workgroups, cx.max_workgroups)?;
                return Ok(vec![
                    to_tex,
                    Dispatch {
                        shader: ShaderKey::new(source, &[("TM", tm), ("TN4", tn4)]),
                        overrides: self.act.overrides(),
                        params: params.to_vec(),
                        bindings: vec![
                            Bind::ScratchRead(0),
                            Bind::Texture(
                                1,
                                Pack::KnPadded4 {
                                    trans_b: self.trans_b,
                                },
                                n4,
                            ),
                            bias,
                            res,
                            Bind::Output,
                        ],
                        workgroups: wg,
                    },
                ]);
            }
            MatMulKernel::Packed { .. }
            | MatMulKernel::PackedWg
            | MatMulKernel::PackedSg
            | MatMulKernel::PackedNorm { .. }
            | MatMulKernel::PackedF16 { .. }
            | MatMulKernel::PackedF16c { .. }
            | MatMulKernel::PackedKn { .. }
            | MatMulKernel::Int8Act { .. }
            | MatMulKernel::Csr { .. }
            | MatMulKernel::CsrWg { .. }
            | MatMulKernel::Nm { .. }
            | MatMulKernel::CsrTex { .. }
            | MatMulKernel::CsrStage { .. }
            | MatMulKernel::NmTex { .. }
            | MatMulKernel::NmKn { .. }
            | MatMulKernel::CsrUni { .. }
            | MatMulKernel::BsrTex { .. } => {
                unreachable!("lowered by lower_packed")
            }
            MatMulKernel::SgGemv | MatMulKernel::F16Block { .. } => {
                unreachable!("lowered by lower_sg_f16")
            }
            MatMulKernel::Bcast { tm, tn4 } | MatMulKernel::Tex { tm, tn4 } => {
                let tex = matches!(kernel, MatMulKernel::Tex { .. });
                let (params, b_bind, wg) = self.block_setup(kernel, &p, tm, tn4, tex, cx)?;
                let file = if tex { &GEMM_TEX } else { &GEMM_BCAST };
                (
                    ShaderKey::new(file, &[("TM", tm), ("TN4", tn4)]),
                    params,
                    b_bind,
                    wg,
                )
            }
        };
        check_grid("matmul", wg, cx.max_workgroups)?;
        Ok(vec![Dispatch {
            shader,
            overrides: self.act.overrides(),
            params,
            bindings: vec![Bind::Input(0), b_bind, bias, res, Bind::Output],
            workgroups: wg,
        }])
    }
}

impl MatMul {
    /// What the block kernels (`gemm_block.wgsl` and its f16-product twin) share: their
    /// parameters, B (constant, packed once as [K][N4] vec4 texels) bound as a storage buffer
    /// or a texture (`tex`), and the grid of 64 invocations of `tn4` texel columns x `tm` rows.
    fn block_setup(
        &self,
        kernel: MatMulKernel,
        p: &GemmParams,
        tm: u32,
        tn4: u32,
        tex: bool,
        cx: &LowerCtx,
    ) -> Result<(Vec<u32>, Bind, [u32; 3])> {
        if !cx.is_const[1] {
            return Err(unsupported(
                "matmul",
                format!("kernel {} needs a constant B", kernel.name()),
            ));
        }
        let n4 = p.n.div_ceil(4);
        let v = BcastParams {
            m: p.m,
            n: p.n,
            k: p.k,
            batch: p.batch,
            a_bs: p.a_bs,
            a_rs: p.a_rs,
            a_ks: p.a_ks,
            // rows of packed B per batch (0: one B shared by all batches)
            b_bs4: if p.b_bs != 0 { p.k } else { 0 },
            n4,
            has_bias: p.has_bias,
            has_res: p.has_res,
            _p0: 0,
        };
        let pack = Pack::KnPadded4 {
            trans_b: self.trans_b,
        };
        let b_bind = if tex {
            Bind::Texture(1, pack, n4)
        } else {
            Bind::Packed(1, pack)
        };
        let wg = [
            div_ceil(n4 as usize, 64 * tn4 as usize),
            div_ceil(p.m as usize, tm as usize),
            p.batch,
        ];
        Ok((bytemuck::cast_slice(&[v]).to_vec(), b_bind, wg))
    }
}

/// Workgroup shape of the vec4 kernel: 64 columns for GEMV, 8x8 blocks otherwise.
pub fn vec4_workgroup(tm: u32) -> (u32, u32) {
    if tm == 1 {
        (64, 1)
    } else {
        (8, 8)
    }
}

/// Texture extent (width, height) of a constant B for the texture kernel.
pub fn tex_extent(trans_b: bool, b: &[usize]) -> (usize, usize) {
    let r = b.len();
    let (k, n) = if trans_b {
        (b[r - 1], b[r - 2])
    } else {
        (b[r - 2], b[r - 1])
    };
    (n.div_ceil(4), crate::tensor::numel(&b[..r - 2]) * k)
}

/// Kernels on packed (quantised or f16) weights.
impl MatMul {
    /// B is a packed weight and everything else dense f32: a case for the packed kernels.
    fn packed_b(&self, cx: &SelectCtx) -> bool {
        !cx.formats[1].is_dense()
            && cx.ins.iter().all(|v| v.dtype == crate::tensor::DType::F32)
            && cx.out.dtype == crate::tensor::DType::F32
            && cx
                .formats
                .iter()
                .enumerate()
                .all(|(i, f)| i == 1 || f.is_dense())
    }

    /// The layout of a packed B the kernels can read: a constant `[N, K]` (Linear) weight.
    fn packed_layout(&self, cx: &SelectCtx) -> std::result::Result<QLayout, String> {
        if !cx.is_const[1] || !self.trans_b || cx.shape(1).len() != 2 {
            return Err(format!(
                "packed-weight kernels read a constant [N, K] weight (trans_b), not {} {}",
                if self.trans_b { "[N, K]" } else { "[K, N]" },
                fmt_shape(cx.shape(1))
            ));
        }
        QLayout::of(&cx.formats[1], cx.shape(1))
    }

    /// The tuned packed kernel for the case's slot (`qgemv` for one row of A, else `qgemm`),
    /// else a default that fits; `None` when none reads this weight (the plan then decodes it
    /// for a dense kernel and says so).
    fn select_packed(&self, cx: &SelectCtx) -> Option<MatMulKernel> {
        if matches!(cx.formats[1], crate::format::WeightFormat::Sparse(_)) {
            return self.select_sparse(cx);
        }
        if cx.device.naive_only || self.packed_layout(cx).is_err() {
            return None;
        }
        let a = cx.shape(0);
        let rows = crate::tensor::numel(&a[..a.len() - 1]);
        // f16 weights have their own GEMV slot: the feature-gated f16 kernels compete there.
        let half = cx.formats[1] == crate::format::WeightFormat::Half;
        let (slot, tm) = match (rows, half) {
            (1, true) => ("qgemv_f16", 1),
            (1, false) => ("qgemv", 1),
            _ => ("qgemm", 4),
        };
        let buf = |tm, r| MatMulKernel::Packed {
            tm,
            r,
            wtex: false,
            xtex: false,
        };
        let i8 = |r, dot| MatMulKernel::Int8Act {
            r,
            dot,
            wtex: false,
        };
        if cx.device.int8_activations {
            let mut k = cx
                .tuned::<Self>("qi8")
                .into_iter()
                .chain([i8(2, true), i8(1, false)]);
            if let Some(k) = k.find(|k| self.fits(k, cx).is_ok()) {
                return Some(k);
            }
        }
        // A session that allows f16 compute reads the f16 slot first (tuned with f16
        // arithmetic allowed: its f16 kernels compete with the f32 ones there).
        let f16c = (half && rows == 1 && cx.device.f16_compute)
            .then(|| cx.tuned::<Self>("qgemv_f16c"))
            .flatten();
        f16c.into_iter()
            .chain(cx.tuned::<Self>(slot))
            .chain([buf(tm, 2), buf(1, 1)])
            .find(|k| self.fits(k, cx).is_ok())
    }

    fn lower_packed(&self, kernel: MatMulKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let p = self.params(&cx.in_shapes[0], &cx.in_shapes[1]);
        let lay =
            QLayout::of(&cx.formats[1], &cx.in_shapes[1]).map_err(|e| unsupported("matmul", e))?;
        if !cx.is_const[1] || !self.trans_b || cx.in_shapes[1].len() != 2 {
            return Err(unsupported(
                "matmul",
                "packed-weight kernels read a constant [N, K] weight (trans_b)",
            ));
        }
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        let w = super::word;
        let params = vec![
            p.m,
            p.n,
            p.k,
            p.batch,
            p.a_bs,
            p.a_rs,
            p.a_ks,
            w(lay.row_t),
            w(lay.group_t),
            w(lay.ngroups),
            w(lay.scale_words()),
            p.has_bias,
            p.has_res,
            0,
            0,
            0,
        ];
        let mut consts = lay.consts().to_vec();
        let meta = Bind::Quant(1, QPart::Meta);
        let (m, n) = (p.m as usize, p.n as usize);
        kernel
            .check()
            .map_err(|e| unsupported("matmul", format!("kernel {}: {e}", kernel.name())))?;
        let codes = |wtex: bool, part: QPart| {
            if wtex {
                Bind::QuantTex(1, part)
            } else {
                Bind::Quant(1, part)
            }
        };
        if let MatMulKernel::Int8Act { r, dot, wtex } = kernel {
            if self.trans_a {
                return Err(unsupported(
                    "matmul",
                    "int8 activations need an untransposed A",
                ));
            }
            let rows = p.batch * p.m;
            let q_wg = super::grid_1d(rows as u64, cx.max_workgroups);
            let quantise = Dispatch {
                shader: ShaderKey::new(&ACT_Q8, &[]),
                overrides: Activation::None.overrides(),
                params: vec![rows, p.k, w(lay.row_t), q_wg[0]],
                bindings: vec![
                    Bind::Input(0),
                    Bind::ScratchStore(0, w(lay.row_t + 1), rows, super::TexFormat::Rgba32U),
                ],
                workgroups: q_wg,
            };
            consts.extend([("R", r), ("DOT", dot as u32)]);
            let wg = [div_ceil(n, 64 * r as usize), p.m, p.batch];
            check_grid("matmul", wg, cx.max_workgroups)?;
            return Ok(vec![
                quantise,
                Dispatch {
                    shader: ShaderKey::new(if wtex { &QI8_TEX } else { &QI8_BUF }, &consts),
                    overrides: self.act.overrides(),
                    params,
                    bindings: vec![
                        Bind::ScratchRead(0),
                        codes(wtex, QPart::Codes),
                        meta,
                        bias,
                        res,
                        Bind::Output,
                    ],
                    workgroups: wg,
                },
            ]);
        }
        // The K-major kernels count texel rows and groups in K-major texels (4 per row texel);
        // word 13 is the number of texel columns.
        let kn_params = |mut params: Vec<u32>| {
            params[7] = w(lay.row_t * 4);
            params[8] = w(lay.group_t * 4);
            params[13] = w(lay.n4s());
            params
        };
        let (file, codes, wg, xtex, params) = match kernel {
            MatMulKernel::Packed { tm, r, wtex, xtex } => {
                consts.extend([("TM", tm), ("R", r)]);
                let file = match (wtex, xtex) {
                    (false, false) => &Q_BUF,
                    (true, false) => &Q_TEX,
                    (false, true) => &Q_XTEX,
                    (true, true) => &Q_TEX2,
                };
                let wg = [
                    div_ceil(n, 64 * r as usize),
                    div_ceil(m, tm as usize),
                    p.batch,
                ];
                (file, codes(wtex, QPart::Codes), wg, xtex, params)
            }
            MatMulKernel::PackedF16 { tn4, xtex } => {
                consts.push(("TN4", tn4));
                let params = kn_params(params);
                let wg = [div_ceil(lay.n4s(), 64 * tn4 as usize), p.m, p.batch];
                let file = if xtex { &QKNF16_2 } else { &QKNF16 };
                (file, Bind::Quant(1, QPart::CodesKn), wg, xtex, params)
            }
            MatMulKernel::PackedF16c { tn4, xtex } => {
                consts.push(("TN4", tn4));
                let params = kn_params(params);
                let wg = [div_ceil(lay.n4s(), 64 * tn4 as usize), p.m, p.batch];
                let file = if xtex { &QKNF16C_2 } else { &QKNF16C };
                (file, Bind::Quant(1, QPart::CodesKn), wg, xtex, params)
            }
            MatMulKernel::PackedNorm { tn4, xtex } => {
                consts.push(("TN4", tn4));
                let params = kn_params(params);
                let wg = [div_ceil(lay.n4s(), 64 * tn4 as usize), p.m, p.batch];
                let file = if xtex { &QKNN2 } else { &QKNN };
                (file, Bind::QuantTexNorm(1), wg, xtex, params)
            }
            MatMulKernel::PackedKn {
                tm,
                tn4,
                wtex,
                xtex,
            } => {
                // Unrolled sources for GEMV (tm 1) and 4/8 x 1/2 blocks; loops otherwise.
                let unrolled = matches!((tm, tn4), (4 | 8, 1 | 2));
                let file = match (wtex, xtex, tm, unrolled) {
                    (false, false, 1, _) => &QKNV_BUF,
                    (true, false, 1, _) => &QKNV_TEX,
                    (false, true, 1, _) => &QKNV_XTEX,
                    (true, true, 1, _) => &QKNV_TEX2,
                    (false, false, _, true) => &QKNG_BUF,
                    (true, false, _, true) => &QKNG_TEX,
                    (false, true, _, true) => &QKNG_XTEX,
                    (true, true, _, true) => &QKNG_TEX2,
                    (false, false, _, _) => &QKN_BUF,
                    (true, false, _, _) => &QKN_TEX,
                    (false, true, _, _) => &QKN_XTEX,
                    (true, true, _, _) => &QKN_TEX2,
                };
                if tm > 1 {
                    consts.push(("TM", tm));
                }
                consts.push(("TN4", tn4));
                let params = kn_params(params);
                let wg = [
                    div_ceil(lay.n4s(), 64 * tn4 as usize),
                    div_ceil(m, tm as usize),
                    p.batch,
                ];
                (file, codes(wtex, QPart::CodesKn), wg, xtex, params)
            }
            _ => {
                let wg = [p.n, p.m, p.batch];
                let file = if kernel == MatMulKernel::PackedSg {
                    &Q_SG
                } else {
                    &Q_WG
                };
                (file, codes(false, QPart::Codes), wg, false, params)
            }
        };
        check_grid("matmul", wg, cx.max_workgroups)?;
        let mut out = Vec::new();
        let a = if xtex {
            if self.trans_a {
                return Err(unsupported("matmul", "A texture needs an untransposed A"));
            }
            let (rows, x4) = (p.batch * p.m, w(lay.row_t * lay.vpt() / 4));
            let to_tex = Dispatch {
                shader: ShaderKey::new(&TO_TEXTURE, &[]),
                overrides: Activation::None.overrides(),
                params: vec![rows, p.k, x4, 0],
                bindings: vec![
                    Bind::Input(0),
                    Bind::ScratchStore(0, x4, rows, super::TexFormat::Rgba32F),
                ],
                workgroups: [x4.div_ceil(64), rows, 1],
            };
            check_grid("matmul", to_tex.workgroups, cx.max_workgroups)?;
            out.push(to_tex);
            Bind::ScratchRead(0)
        } else {
            Bind::Input(0)
        };
        out.push(Dispatch {
            shader: ShaderKey::new(file, &consts),
            overrides: self.act.overrides(),
            params,
            bindings: vec![a, codes, meta, bias, res, Bind::Output],
            workgroups: wg,
        });
        Ok(out)
    }
}

/// Kernels on sparse weights read as stored (`ops/sparse.rs`).
impl MatMul {
    /// The layout of a sparse B the kernels can read: a constant `[N, K]` (Linear) weight in
    /// CSR or N:M.
    fn sparse_layout(&self, cx: &SelectCtx) -> std::result::Result<SLayout, String> {
        if !cx.is_const[1] || !self.trans_b || cx.shape(1).len() != 2 {
            return Err(format!(
                "sparse kernels read a constant [N, K] weight (trans_b), not {} {}",
                if self.trans_b { "[N, K]" } else { "[K, N]" },
                fmt_shape(cx.shape(1))
            ));
        }
        SLayout::of(&cx.formats[1], cx.shape(1))
    }

    /// The sparse kernel for a CSR, BSR or N:M weight, or `None` (the plan then decodes the
    /// weight to f32 and runs a dense kernel, and says so in the plan).
    ///
    /// Decision rule: the kernel is the choice in the layout's slot when it fits — `csr`,
    /// `bsr`, `nm` for one row of A, `csr_batch`, `bsr_batch`, `nm_batch` (falling back to the
    /// one-row slot) for more — else a default: `csrtex` where its textures fit (else `csr`),
    /// `bsrtex`, `nm`, one or four rows of A per invocation, with the default thresholds
    /// [`DEFAULT_CSR_PCT`], [`DEFAULT_BSR_PCT`], [`DEFAULT_NM_PCT`]. Autotune fills these slots
    /// per adapter with the fastest sparse kernel and the measured crossover: the largest
    /// density at which it still beat the dense kernels on the same weight
    /// ([`TuneSlot::crossover`]). The kernel runs only when the weight's density (CSR: nnz /
    /// (N * K), from the last row pointer; BSR: stored blocks' entries; passed by the plan in
    /// [`SelectCtx::density`]; N:M: n / m) is at most the choice's `max_density_pct`; a denser
    /// (or unknown-density) weight takes the dense kernels. Forcing a sparse kernel on any
    /// density: a choice with `max_density_pct: 100`; disabling: 0.
    pub fn select_sparse(&self, cx: &SelectCtx) -> Option<MatMulKernel> {
        if cx.device.naive_only {
            return None;
        }
        let lay = self.sparse_layout(cx).ok()?;
        let a = cx.shape(0);
        let rows = crate::tensor::numel(&a[..a.len() - 1]);
        let tm = if rows == 1 { 1 } else { 4 };
        let texture = |k: MatMulKernel| Some(k).filter(|k| self.fits(k, cx).is_ok());
        let (slot, default, density) = match lay.layout {
            crate::format::SparseLayout::NM { n, m } => (
                "nm",
                MatMulKernel::Nm {
                    tm,
                    max_density_pct: DEFAULT_NM_PCT,
                },
                n as f32 / m as f32,
            ),
            crate::format::SparseLayout::Bsr { .. } => (
                "bsr",
                MatMulKernel::BsrTex {
                    max_density_pct: DEFAULT_BSR_PCT,
                },
                cx.density(1)?,
            ),
            crate::format::SparseLayout::Csr => (
                "csr",
                // The texture path where it fits (the A and weight textures within the
                // device's texture size), else the storage one.
                texture(MatMulKernel::CsrTex {
                    tm,
                    max_density_pct: DEFAULT_CSR_PCT,
                })
                .unwrap_or(MatMulKernel::Csr {
                    tm,
                    max_density_pct: DEFAULT_CSR_PCT,
                }),
                cx.density(1)?,
            ),
        };
        // Batches read the `_batch` slot, falling back to the one-row slot (a user's choice
        // in `csr` applies to both).
        let batch_slot = format!("{slot}_batch");
        let tuned = if rows > 1 {
            cx.tuned::<Self>(&batch_slot)
                .or_else(|| cx.tuned::<Self>(slot))
        } else {
            cx.tuned::<Self>(slot)
        };
        let k = tuned
            .filter(|k| self.fits(k, cx).is_ok())
            .unwrap_or(default);
        let max_density_pct = k.max_density_pct()?;
        // Compared in percent with a little slack for the rounding of nnz / (N * K).
        let sparse_enough = density * 100.0 <= max_density_pct as f32 + 1e-3;
        (sparse_enough && self.fits(&k, cx).is_ok()).then_some(k)
    }

    /// The texture-path sparse kernels: A copied to an rgba32float texture each run, then one
    /// dispatch reading the weight's texture layout (`ops/sparse.rs`).
    fn lower_sparse_tex(&self, kernel: MatMulKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        use crate::format::SparseLayout;
        kernel
            .check()
            .map_err(|e| unsupported("matmul", format!("kernel {}: {e}", kernel.name())))?;
        if !cx.is_const[1] || !self.trans_b || cx.in_shapes[1].len() != 2 || self.trans_a {
            return Err(unsupported(
                "matmul",
                "texture sparse kernels read a constant [N, K] weight (trans_b) and an \
                 untransposed A",
            ));
        }
        let lay =
            SLayout::of(&cx.formats[1], &cx.in_shapes[1]).map_err(|e| unsupported("matmul", e))?;
        let p = self.params(&cx.in_shapes[0], &cx.in_shapes[1]);
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        let rows = p.batch * p.m;
        let to_tex = a_to_texture(rows, p.k);
        let mut params = vec![p.m, p.n, p.k, p.batch, p.has_bias, p.has_res, 0, 0];
        let (file, consts, wg, binds) = match (kernel, lay.layout) {
            (MatMulKernel::CsrTex { tm, .. }, SparseLayout::Csr) => (
                &SP_CSR_TEX,
                vec![("VALS", lay.vals), ("TM", tm)],
                [
                    div_ceil(p.n as usize, 64),
                    div_ceil(p.m as usize, tm as usize),
                    p.batch,
                ],
                vec![
                    Bind::Sparse(1, SPart::Groups),
                    Bind::SparseTex(1, SPart::GroupCols),
                    Bind::SparseTex(1, SPart::GroupVals),
                ],
            ),
            (MatMulKernel::CsrStage { tm, cw, .. }, SparseLayout::Csr) => (
                &SP_CSR_STAGE,
                vec![("VALS", lay.vals), ("TM", tm), ("CW", cw)],
                [
                    div_ceil(p.n as usize, 64),
                    div_ceil(p.m as usize, tm as usize),
                    p.batch,
                ],
                vec![
                    Bind::Sparse(1, SPart::StagePtr(cw)),
                    Bind::SparseTex(1, SPart::StageCols(cw)),
                    Bind::SparseTex(1, SPart::StageVals(cw)),
                ],
            ),
            (MatMulKernel::NmTex { .. }, SparseLayout::NM { n, m: 4 }) => (
                &SP_NM_TEX,
                vec![("VALS", lay.vals), ("NK", n as u32)],
                [div_ceil(p.n as usize, 64), rows, 1],
                vec![
                    Bind::SparseTex(1, SPart::NmPos),
                    Bind::SparseTex(1, SPart::NmVals),
                ],
            ),
            (MatMulKernel::CsrUni { tm, .. }, SparseLayout::Csr) => {
                // Vec4s per row of A in the uniform copy: the shader's K4.
                params[6] = p.k.div_ceil(4);
                (
                    &SP_CSR_UNI,
                    vec![("VALS", lay.vals), ("TM", tm)],
                    [
                        div_ceil(p.n as usize, 64),
                        div_ceil(p.m as usize, tm as usize),
                        p.batch,
                    ],
                    vec![
                        Bind::Sparse(1, SPart::StagePtr(CSR_UNI_CW)),
                        Bind::SparseTex(1, SPart::StageCols(CSR_UNI_CW)),
                        Bind::SparseTex(1, SPart::StageVals(CSR_UNI_CW)),
                    ],
                )
            }
            (MatMulKernel::NmKn { tn4, .. }, SparseLayout::NM { n, m: 4 }) => {
                // Texel columns of 4 weight rows: the shader's C4 in the spare parameter word.
                params[6] = p.n.div_ceil(4);
                (
                    &SP_NM_KN,
                    vec![("VALS", lay.vals), ("NK", n as u32), ("TN4", tn4)],
                    [
                        div_ceil(p.n.div_ceil(4) as usize, 64 * tn4 as usize),
                        rows,
                        1,
                    ],
                    vec![
                        Bind::SparseTex(1, SPart::NmKnPos),
                        Bind::SparseTex(1, SPart::NmKnVals),
                    ],
                )
            }
            (MatMulKernel::BsrTex { .. }, SparseLayout::Bsr { r, c: 4 }) => (
                &SP_BSR_TEX,
                vec![("VALS", lay.vals), ("R", super::word(r))],
                [div_ceil(p.n as usize / r, 64), p.m, p.batch],
                vec![
                    Bind::Sparse(1, SPart::Indptr),
                    Bind::SparseTex(1, SPart::Indices),
                    Bind::SparseTex(1, SPart::Values),
                ],
            ),
            _ => {
                return Err(unsupported(
                    "matmul",
                    format!(
                        "kernel {} does not read {} weights",
                        kernel.name(),
                        cx.formats[1].label()
                    ),
                ))
            }
        };
        // A reaches the kernel through a texture, or for `CsrUni` a uniform buffer.
        let (to_tex, a_bind) = if let MatMulKernel::CsrUni { .. } = kernel {
            let k4 = p.k.div_ceil(4);
            let copy = Dispatch {
                shader: ShaderKey::new(&SP_A_UNIFORM, &[]),
                overrides: Activation::None.overrides(),
                params: vec![rows, p.k, k4, 0],
                bindings: vec![Bind::Input(0), Bind::ScratchBuf(0, 4 * CSR_UNI_VEC4S)],
                workgroups: [k4.div_ceil(64), rows, 1],
            };
            (copy, Bind::ScratchUniform(0))
        } else {
            (to_tex, Bind::ScratchRead(0))
        };
        check_grid("matmul", wg, cx.max_workgroups)?;
        check_grid("matmul", to_tex.workgroups, cx.max_workgroups)?;
        let mut bindings = vec![a_bind];
        bindings.extend(binds);
        bindings.extend([Bind::Sparse(1, SPart::Scales), bias, res, Bind::Output]);
        Ok(vec![
            to_tex,
            Dispatch {
                shader: ShaderKey::new(file, &consts),
                overrides: self.act.overrides(),
                params,
                bindings,
                workgroups: wg,
            },
        ])
    }

    fn lower_sparse(&self, kernel: MatMulKernel, tm: u32, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        kernel
            .check()
            .map_err(|e| unsupported("matmul", format!("kernel {}: {e}", kernel.name())))?;
        if !cx.is_const[1] || !self.trans_b || cx.in_shapes[1].len() != 2 {
            return Err(unsupported(
                "matmul",
                "sparse kernels read a constant [N, K] weight (trans_b)",
            ));
        }
        let lay =
            SLayout::of(&cx.formats[1], &cx.in_shapes[1]).map_err(|e| unsupported("matmul", e))?;
        let p = self.params(&cx.in_shapes[0], &cx.in_shapes[1]);
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        let params = vec![
            p.m,
            p.n,
            p.k,
            p.batch,
            p.a_bs,
            p.a_rs,
            p.a_ks,
            p.has_bias,
            p.has_res,
            super::word(lay.kept()),
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        let mut params = params;
        let wg = if let MatMulKernel::CsrWg { .. } = kernel {
            let g = super::grid_1d(p.n as u64, cx.max_workgroups);
            params[9] = g[0];
            [g[0], g[1], p.batch * p.m]
        } else {
            [
                div_ceil(p.n as usize, 64),
                div_ceil(p.m as usize, tm as usize),
                p.batch,
            ]
        };
        check_grid("matmul", wg, cx.max_workgroups)?;
        let csr_binds = vec![
            Bind::Input(0),
            Bind::Sparse(1, SPart::Indptr),
            Bind::Sparse(1, SPart::Indices),
        ];
        let (file, consts, mut bindings) = match (kernel, lay.layout) {
            (MatMulKernel::CsrWg { .. }, crate::format::SparseLayout::Csr) => {
                (&SP_CSR_WG, vec![("VALS", lay.vals)], csr_binds)
            }
            (MatMulKernel::Csr { .. }, crate::format::SparseLayout::Csr) => {
                (&SP_CSR, vec![("VALS", lay.vals), ("TM", tm)], csr_binds)
            }
            (MatMulKernel::Nm { .. }, crate::format::SparseLayout::NM { n, m }) => (
                &SP_NM,
                vec![
                    ("VALS", lay.vals),
                    ("TM", tm),
                    ("NK", n as u32),
                    ("MG", m as u32),
                ],
                vec![Bind::Input(0), Bind::Sparse(1, SPart::Indices)],
            ),
            _ => {
                return Err(unsupported(
                    "matmul",
                    format!(
                        "kernel {} does not read {} weights",
                        kernel.name(),
                        cx.formats[1].label()
                    ),
                ))
            }
        };
        bindings.extend([
            Bind::Sparse(1, SPart::Values),
            Bind::Sparse(1, SPart::Scales),
            bias,
            res,
            Bind::Output,
        ]);
        Ok(vec![Dispatch {
            shader: ShaderKey::new(file, &consts),
            overrides: self.act.overrides(),
            params,
            bindings,
            workgroups: wg,
        }])
    }
}

/// The subgroup f32 GEMV and the f16-product block kernels.
static GEMV_SG: ShaderSource = crate::wgsl!("matmul/gemv_sg.wgsl");
static GEMM_F16_BCAST: ShaderSource = crate::wgsl!(
    "matmul/gemm_block_io.wgsl", "matmul/b_buffer.wgsl", "matmul/store4.wgsl",
    "common/dot4_f16.wgsl", "matmul/gemm_block_f16.wgsl";
    [[("TM", 4), ("TN4", 1)], [("TM", 1), ("TN4", 4)], [("TM", 8), ("TN4", 2)]]
);
static GEMM_F16_TEX: ShaderSource = crate::wgsl!(
    "matmul/gemm_block_io.wgsl", "matmul/b_texture.wgsl", "matmul/store4.wgsl",
    "common/dot4_f16.wgsl", "matmul/gemm_block_f16.wgsl";
    [[("TM", 4), ("TN4", 2)], [("TM", 1), ("TN4", 2)], [("TM", 8), ("TN4", 1)]]
);
/// GEMV on f16 weights multiplied in f16 (`enable f16`), A from a buffer or a texture.
macro_rules! packed_knf16c_source {
    ($a:literal) => {
        crate::wgsl!("quant/dequant.wgsl", $a, "matmul/w_kn_f16c.wgsl", "matmul/store4.wgsl",
            "quant/qgemv_kn.wgsl"; [
            [("TN4", 1), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)],
            [("TN4", 4), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)]
        ])
    };
}
static QKNF16C: ShaderSource = packed_knf16c_source!("quant/a_buffer.wgsl");
static QKNF16C_2: ShaderSource = packed_knf16c_source!("quant/a_texture.wgsl");

/// Why an f16-product kernel (named `kernel`; matmul or conv) may not run: the session must
/// allow reduced precision and the adapter must have `shader-f16`.
pub(super) fn f16_allowed(kernel: &str, cx: &SelectCtx) -> std::result::Result<(), String> {
    if !cx.device.f16_compute {
        Err(format!(
            "kernel {kernel} computes in f16: only with SessionOptions::f16_compute"
        ))
    } else if !cx.device.features.shader_f16 {
        Err(format!(
            "kernel {kernel} needs the adapter's shader-f16 feature"
        ))
    } else {
        Ok(())
    }
}

/// The slots a session that allows f16 compute reads (`gemm_f16c`, `gemv_f16c` on dense f32
/// weights, `qgemv_f16c` on f16 weights): the f16-product kernels beside every f32 candidate
/// of the matching f32 slot, timed with f16 allowed, so an f16 kernel is chosen only where it
/// measured faster than the best f32 one on this adapter.
fn f16c_slots(
    gemm: &[MatMulKernel],
    gemv: &[MatMulKernel],
    f16v: &[MatMulKernel],
    linear: MatMul,
    lin_inputs: impl Fn(usize, usize, usize) -> Vec<(Vec<usize>, bool)>,
) -> Vec<TuneSlot> {
    let f16_block = |shapes: &[(u32, u32)]| {
        let mut v = Vec::new();
        for &(tm, tn4) in shapes {
            for tex in [false, true] {
                v.push(MatMulKernel::F16Block { tm, tn4, tex });
            }
        }
        v
    };
    let mut gemm = gemm.to_vec();
    gemm.extend(f16_block(&[(4, 2), (8, 1), (8, 2)]));
    let mut gemv = gemv.to_vec();
    gemv.extend(f16_block(&[(1, 1), (1, 2), (1, 4)]));
    let mut qgemv = f16v.to_vec();
    for tn4 in [1, 2, 4] {
        for xtex in [false, true] {
            qgemv.push(MatMulKernel::PackedF16c { tn4, xtex });
        }
    }
    let half_formats = vec![
        crate::format::WeightFormat::Dense,
        crate::format::WeightFormat::Half,
    ];
    let mut slots = vec![
        TuneSlot::new("gemm_f16c", gemm, linear, lin_inputs(128, 256, 512)),
        TuneSlot::new("gemv_f16c", gemv, linear, lin_inputs(1, 1024, 1024)),
        TuneSlot::new("qgemv_f16c", qgemv, linear, lin_inputs(1, 1024, 4096))
            .with_formats(half_formats),
    ];
    for s in &mut slots {
        s.f16_compute = true;
    }
    slots
}

/// The subgroup GEMV and the f16-product block kernels.
impl MatMul {
    /// With f16 compute allowed: the `gemv_f16c`/`gemm_f16c` slot's choice (which may be an
    /// f32 kernel, when that measured faster) if it fits; `None` otherwise (the f32 slots then
    /// choose). Nothing is chosen untuned: an f16 kernel runs only where it was measured.
    fn select_f16c(&self, cx: &SelectCtx, rows: usize) -> Option<MatMulKernel> {
        if !cx.device.f16_compute {
            return None;
        }
        let slot = if rows == 1 { "gemv_f16c" } else { "gemm_f16c" };
        cx.tuned::<Self>(slot).filter(|k| self.fits(k, cx).is_ok())
    }

    fn lower_sg_f16(&self, kernel: MatMulKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        kernel
            .check()
            .map_err(|e| unsupported("matmul", format!("kernel {}: {e}", kernel.name())))?;
        let p = self.params(&cx.in_shapes[0], &cx.in_shapes[1]);
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        let batch = p.batch;
        let (shader, params, b_bind, wg) = match kernel {
            MatMulKernel::SgGemv => (
                ShaderKey::new(&GEMV_SG, &[]),
                bytemuck::cast_slice(&[p]).to_vec(),
                Bind::Input(1),
                [p.n, p.m, batch],
            ),
            MatMulKernel::F16Block { tm, tn4, tex } => {
                // The f32 block kernel's parameters, B packing and grid.
                let (params, b_bind, wg) = self.block_setup(kernel, &p, tm, tn4, tex, cx)?;
                let file = if tex { &GEMM_F16_TEX } else { &GEMM_F16_BCAST };
                (
                    ShaderKey::new(file, &[("TM", tm), ("TN4", tn4)]),
                    params,
                    b_bind,
                    wg,
                )
            }
            _ => return Err(unsupported("matmul", "not a subgroup or f16 block kernel")),
        };
        check_grid("matmul", wg, cx.max_workgroups)?;
        Ok(vec![Dispatch {
            shader,
            overrides: self.act.overrides(),
            params,
            bindings: vec![Bind::Input(0), b_bind, bias, res, Bind::Output],
            workgroups: wg,
        }])
    }
}
