//! The op registry. Each op family lives in one file: attributes, arity, shape and dtype rule,
//! CPU reference, the GPU kernels it offers (each with its fit check), its kernel choice, its
//! autotune slots, its lowering and the WGSL sources it owns — all as one [`OpFamily`] impl.
//! This file ties them together with the [`ops!`] line: one entry per family makes the [`Op`]
//! enum (its serde form is the model-file form), the `From` conversions and every dispatch, with
//! no `_ =>` arm, so a family that forgets a method does not compile.
//!
//! Adding an op: see `docs/adding-an-op.md`.

use crate::error::{Error, Result};
use crate::format::WeightFormat;
use crate::gpu::shader::{Overrides, ShaderKey, ShaderSource, TexFormat};
use crate::profile::DeviceProfile;
use crate::tensor::{numel, DType, Tensor, ValueType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

pub mod conv;
pub mod conv_transpose;
pub mod cpu_fast;
pub mod dtype;
pub mod elementwise;
pub mod gather;
pub mod logic;
pub mod matmul;
pub mod movement;
pub mod norm;
pub mod pool;
pub mod qlinear;
pub mod quant;
pub mod reduce;
pub mod resize;
pub mod shape;
pub mod sparse;

pub use conv::{Conv2d, ConvKernel};
pub use conv_transpose::{ConvTranspose2d, ConvTransposeKernel};
pub use dtype::{Cast, Shape};
pub use elementwise::{Binary, BinaryKind, Clip, Math, MathKind, Unary};
pub use gather::{Gather, GatherKernel};
pub use logic::{Compare, CompareKind, Logic, LogicKind, Where};
pub use matmul::{MatMul, MatMulKernel};
pub use movement::{DepthToSpace, Expand, Pad, PadMode, Slice, SpaceToDepth, Tile};
pub use norm::{
    BatchNorm, GroupNorm, InstanceNorm, LayerNorm, LogSoftmax, LpNorm, RmsNorm, Softmax,
};
pub use pool::{AutoPad, GlobalAvgPool, Pool, Pool2d, PoolKind, PoolParams};
pub use qlinear::{DynPart, DynQuant, IntConv, IntMatMul, Quantize, Requant};
pub use quant::Dequantize;
pub use reduce::{ArgReduce, Reduce, ReduceKind};
pub use resize::{CoordMode, NearestMode, Resize, ResizeMode};
pub use shape::{Concat, Flatten, Reshape, Squeeze, Transpose, Unsqueeze};

/// The registry: one line per op family. The variant name fixes the serde tag (`MatMul` ->
/// `"op": "mat_mul"`), so renaming one breaks model files.
macro_rules! ops {
    ($($variant:ident($ty:ty)),+ $(,)?) => {
        /// A node's operation: plain data (hashable attributes), edges live in the graph.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Op {
            $($variant($ty)),+
        }

        $(impl From<$ty> for Op {
            fn from(o: $ty) -> Op {
                Op::$variant(o)
            }
        })+

        impl Op {
            /// The op's name as used in errors and plans.
            pub fn name(&self) -> &'static str {
                match self { $(Op::$variant(o) => o.name()),+ }
            }

            /// The op family (the key of its tuned choices).
            pub fn family(&self) -> &'static str {
                match self { $(Op::$variant(_) => <$ty as OpFamily>::FAMILY),+ }
            }

            /// Allowed number of inputs (min, max).
            pub fn arity(&self) -> (usize, usize) {
                match self { $(Op::$variant(o) => o.arity()),+ }
            }

            fn infer_dyn(&self, ins: &[ValueType], consts: &[Option<&Tensor>]) -> Result<ValueType> {
                match self { $(Op::$variant(o) => o.infer_consts(ins, consts)),+ }
            }

            /// Takes the values of shape-like inputs known at plan time into the op's
            /// attributes ([`OpFamily::absorb_consts`]); returns the indices of the inputs
            /// absorbed (the caller drops them from the node).
            pub fn absorb_consts(&mut self, consts: &[Option<&Tensor>]) -> Result<Vec<usize>> {
                match self { $(Op::$variant(o) => o.absorb_consts(consts)),+ }
            }

            fn cpu_dyn(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
                match self { $(Op::$variant(o) => o.cpu(ins, out)),+ }
            }

            /// The fast CPU kernel this op takes for the case ([`OpFamily::cpu_kernel`]).
            pub fn cpu_kernel(&self, cx: &CpuCtx) -> Option<&'static str> {
                match self { $(Op::$variant(o) => o.cpu_kernel(cx)),+ }
            }

            fn cpu_fast_dyn(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
                match self { $(Op::$variant(o) => o.cpu_fast(kernel, ins, out)),+ }
            }

            /// The GPU kernel the op picks for this case and its dispatches, or `None` when no
            /// GPU kernel takes it (the node then runs on the CPU within the plan).
            pub fn plan_gpu(
                &self,
                cx: &SelectCtx,
                lcx: &LowerCtx,
            ) -> Result<Option<(String, Vec<Dispatch>)>> {
                match self { $(Op::$variant(o) => plan_family(o, cx, lcx)),+ }
            }

            /// The fused activation of ops that carry an epilogue (for the fusion pass).
            pub fn epilogue_act(&mut self) -> Option<&mut Activation> {
                match self { $(Op::$variant(o) => o.epilogue_act()),+ }
            }

            /// Floating-point operations of one run of this node (for reports and GFLOP/s).
            pub fn flops(&self, ins: &[ValueType], out: &ValueType) -> u64 {
                match self { $(Op::$variant(o) => o.flops(ins, out)),+ }
            }

            /// Whether the output is the input's memory under another shape (no kernel runs).
            pub fn aliases_input(&self) -> bool {
                match self { $(Op::$variant(o) => o.aliases_input()),+ }
            }

            /// Every WGSL source some op registered (validated by one test).
            pub fn all_shaders() -> Vec<&'static ShaderSource> {
                let mut v = Vec::new();
                $(v.extend(<$ty as OpFamily>::shaders());)+
                v
            }

            /// Every autotune slot of every family.
            pub fn tune_slots() -> Vec<TuneSlot> {
                let mut v = Vec::new();
                $(v.extend(<$ty as OpFamily>::tune_slots());)+
                v
            }

            /// Checks a tuned or user-given choice: the family and slot exist, the value is one
            /// of the family's kernels and its parameters are ones the kernel supports.
            pub fn check_choice(
                family: &str,
                slot: &str,
                choice: &serde_json::Value,
            ) -> std::result::Result<String, String> {
                $(if family == <$ty as OpFamily>::FAMILY {
                    return check_family_choice::<$ty>(slot, choice);
                })+
                Err(format!("unknown op family '{family}'"))
            }
        }
    };
}

ops! {
    MatMul(MatMul),
    Conv2d(Conv2d),
    ConvTranspose2d(ConvTranspose2d),
    Pool2d(Pool2d),
    GlobalAvgPool(GlobalAvgPool),
    Binary(Binary),
    Unary(Unary),
    Math(Math),
    Clip(Clip),
    Softmax(Softmax),
    LogSoftmax(LogSoftmax),
    LayerNorm(LayerNorm),
    BatchNorm(BatchNorm),
    GroupNorm(GroupNorm),
    InstanceNorm(InstanceNorm),
    RmsNorm(RmsNorm),
    LpNorm(LpNorm),
    Reshape(Reshape),
    Flatten(Flatten),
    Transpose(Transpose),
    Concat(Concat),
    Shape(Shape),
    Cast(Cast),
    Dequantize(Dequantize),
    Squeeze(Squeeze),
    Unsqueeze(Unsqueeze),
    Slice(Slice),
    Gather(Gather),
    Expand(Expand),
    Tile(Tile),
    Pad(Pad),
    DepthToSpace(DepthToSpace),
    SpaceToDepth(SpaceToDepth),
    Resize(Resize),
    Pool(Pool),
    Reduce(Reduce),
    ArgReduce(ArgReduce),
    Compare(Compare),
    Logic(Logic),
    Where(Where),
    Quantize(Quantize),
    DynQuant(DynQuant),
    IntMatMul(IntMatMul),
    IntConv(IntConv),
    Requant(Requant),
}

/// A kernel variant of one family: plain data with a serde form (stored in tuned choices) and a
/// short name (plans, benchmarks).
pub trait KernelVariant:
    Clone + Debug + PartialEq + Default + Serialize + DeserializeOwned
{
    /// Short name used in plans, benchmark records and profiles.
    fn name(&self) -> String;
    /// Checks parameters that do not depend on the case (block sizes the shader supports), so
    /// a bad choice from a file or the environment is refused before lowering.
    fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The kernel type of families with one GPU kernel (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kernel", rename_all = "snake_case")]
pub enum Standard {
    #[default]
    Standard,
}

impl KernelVariant for Standard {
    fn name(&self) -> String {
        "standard".into()
    }
}

/// One op family: everything about an op lives in its impl of this trait.
pub trait OpFamily: Clone + PartialEq + Debug + Serialize + DeserializeOwned + Into<Op> {
    /// Key of the family's tuned choices in the device profile.
    const FAMILY: &'static str;
    /// This family's kernel variants.
    type Kernel: KernelVariant;

    /// Name in errors and plans (may depend on attributes: `add`, `maxpool2d`).
    fn name(&self) -> &'static str {
        Self::FAMILY
    }
    /// Allowed number of inputs (min, max).
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }
    /// Output dtype and shape from the inputs', or an error naming the mismatch.
    fn infer(&self, ins: &[ValueType]) -> Result<ValueType>;
    /// CPU reference: the ground truth every GPU kernel is tested against.
    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor>;
    /// The kernel for this case (a pure function of the case and the device profile), or
    /// `None` when no GPU kernel takes it. The default takes the standard kernel for dense f32.
    fn select(&self, cx: &SelectCtx) -> Option<Self::Kernel> {
        cx.dense_f32().then(Self::Kernel::default)
    }
    /// Whether kernel `k` can run this case (`Err` says why not).
    fn fits(&self, _k: &Self::Kernel, _cx: &SelectCtx) -> std::result::Result<(), String> {
        Ok(())
    }
    /// The dispatches that compute the node with kernel `k`.
    fn lower(&self, k: &Self::Kernel, cx: &LowerCtx) -> Result<Vec<Dispatch>>;
    /// Cases the family tunes per adapter, with their candidates.
    fn tune_slots() -> Vec<TuneSlot> {
        Vec::new()
    }
    /// Slots that take a user's choice (`SessionOptions::kernels`) but are not tuned, because
    /// the tuner's workloads cannot exercise them (matmul's sparse kernels: random tune weights
    /// are fully dense).
    fn choice_slots() -> Vec<&'static str> {
        Vec::new()
    }
    /// The WGSL sources this family owns.
    fn shaders() -> Vec<&'static ShaderSource>;
    /// A fast CPU kernel for this case (its name, shown in plans), or `None`: the reference
    /// runs. Kernels live in `crate::cpu`; each is tested against the reference.
    fn cpu_kernel(&self, _cx: &CpuCtx) -> Option<&'static str> {
        None
    }
    /// Runs fast CPU kernel `kernel` (a name [`OpFamily::cpu_kernel`] gave for this case).
    fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let _ = kernel;
        self.cpu(ins, out)
    }
    /// The fused activation, for families with an epilogue.
    fn epilogue_act(&mut self) -> Option<&mut Activation> {
        None
    }
    /// Floating-point operations of one run (default: one per output element); saturates
    /// rather than overflowing (shapes may hold up to 2^32 elements).
    fn flops(&self, _ins: &[ValueType], out: &ValueType) -> u64 {
        numel(&out.shape) as u64
    }
    /// The output is the input's memory viewed with another shape (reshape, flatten).
    fn aliases_input(&self) -> bool {
        false
    }
    /// Output dtype and shape when the values of some inputs are known when the graph is
    /// planned: `consts[i]` is input `i`'s value if it is a weight or computed from weights
    /// and shapes only (a `Shape` -> `Gather` -> `Concat` chain), else `None`; `consts` may be
    /// shorter than the inputs (read it with [`const_input`]). Ops with shape-like inputs (a
    /// reshape target, slice bounds, pads, axes, resize scales) override this and return an
    /// error naming the input when its value is unknown; the default ignores `consts`.
    fn infer_consts(&self, ins: &[ValueType], consts: &[Option<&Tensor>]) -> Result<ValueType> {
        let _ = consts;
        self.infer(ins)
    }
    /// Moves the values of shape-like inputs known at plan time into the op's attributes, so
    /// that the GPU lowering and fast CPU kernels see plain attributes; returns the indices of
    /// the inputs it absorbed (the session drops them from the node, in its build after
    /// constant folding). The default absorbs nothing. After absorbing, `infer` on the
    /// remaining inputs must give the same output as `infer_consts` did before.
    fn absorb_consts(&mut self, consts: &[Option<&Tensor>]) -> Result<Vec<usize>> {
        let _ = consts;
        Ok(Vec::new())
    }
}

/// Input `i`'s value from a `consts` slice of [`OpFamily::infer_consts`] (`None` when unknown
/// or beyond the slice).
pub fn const_input<'a>(consts: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    consts.get(i).copied().flatten()
}

fn plan_family<F: OpFamily>(
    op: &F,
    cx: &SelectCtx,
    lcx: &LowerCtx,
) -> Result<Option<(String, Vec<Dispatch>)>> {
    let Some(k) = op.select(cx) else {
        return Ok(None);
    };
    Ok(Some((k.name(), op.lower(&k, lcx)?)))
}

fn check_family_choice<F: OpFamily>(
    slot: &str,
    choice: &serde_json::Value,
) -> std::result::Result<String, String> {
    if !F::tune_slots().iter().any(|s| s.slot == slot) && !F::choice_slots().contains(&slot) {
        return Err(format!("op family '{}' has no slot '{slot}'", F::FAMILY));
    }
    let k: F::Kernel = serde_json::from_value(choice.clone())
        .map_err(|e| format!("{}/{slot}: not a kernel of this family: {e}", F::FAMILY))?;
    k.check()
        .map_err(|e| format!("{}/{slot}: kernel {}: {e}", F::FAMILY, k.name()))?;
    Ok(k.name())
}

/// What kernel choice may know about a node: its values, which are constants and in what
/// format, and the device's facts and tuned choices (plain data).
pub struct SelectCtx<'a> {
    pub ins: &'a [ValueType],
    pub out: &'a ValueType,
    pub is_const: &'a [bool],
    /// Storage format of each input (dense for non-constants).
    pub formats: &'a [WeightFormat],
    pub device: &'a DeviceProfile,
    /// Stored fraction of each sparse constant input ([`sparse::density`]), computed by the
    /// plan from the weight's parts; may be empty or `None` where unknown (dense inputs).
    pub density: &'a [Option<f32>],
}

impl SelectCtx<'_> {
    /// All inputs and the output are dense f32 (the only case most GPU kernels take so far).
    pub fn dense_f32(&self) -> bool {
        self.ins.iter().all(|v| v.dtype == DType::F32)
            && self.out.dtype == DType::F32
            && self.formats.iter().all(|f| f.is_dense())
    }

    /// The tuned choice for `slot` of family `F`, when one is set and valid.
    pub fn tuned<F: OpFamily>(&self, slot: &str) -> Option<F::Kernel> {
        let v = self.device.choice(F::FAMILY, slot)?;
        let k: F::Kernel = serde_json::from_value(v.clone()).ok()?;
        k.check().ok().map(|_| k)
    }

    /// Whether a `w` x `h` texel 2-D texture fits the device.
    pub fn tex_fits(&self, w: usize, h: usize) -> bool {
        let max = self.device.limits.max_texture_dimension_2d as usize;
        w <= max && h <= max
    }

    /// The stored fraction of sparse input `i`, when the plan knows it.
    pub fn density(&self, i: usize) -> Option<f32> {
        self.density.get(i).copied().flatten()
    }

    /// Input shapes.
    pub fn shape(&self, i: usize) -> &[usize] {
        &self.ins[i].shape
    }
}

/// The kernel name of the CPU reference in plans.
pub const CPU_REFERENCE: &str = "cpu-ref";

/// What a fast CPU kernel's choice may know about a node: its values as the CPU reads them
/// (packed weights decoded to f32 so far) and which are constants.
pub struct CpuCtx<'a> {
    pub ins: &'a [ValueType],
    pub out: &'a ValueType,
    pub is_const: &'a [bool],
    /// Storage format of each input (a sparse weight may be read by a sparse CPU kernel).
    pub formats: &'a [WeightFormat],
    /// Each sparse input's stored fraction of its dense elements (`None` for the others).
    pub density: &'a [Option<f32>],
    /// `SessionOptions::cpu_sparse_max_pct`: overrides the sparse kernel's measured threshold.
    pub sparse_max_pct: Option<u32>,
}

impl CpuCtx<'_> {
    /// All inputs and the output are f32.
    pub fn f32(&self) -> bool {
        self.ins.iter().all(|v| v.dtype == DType::F32) && self.out.dtype == DType::F32
    }
}

/// A case a family tunes per adapter: the candidates (each a kernel's serde form) and the
/// one-node workload they are timed on.
#[derive(Debug, Clone)]
pub struct TuneSlot {
    pub family: &'static str,
    pub slot: &'static str,
    pub candidates: Vec<serde_json::Value>,
    /// Kernel names of the candidates (same order).
    pub names: Vec<String>,
    /// The op timed, and its inputs (shape, constant?).
    pub op: Op,
    pub inputs: Vec<(Vec<usize>, bool)>,
    /// Storage format of each constant input (dense unless set by [`TuneSlot::with_formats`]).
    pub formats: Vec<WeightFormat>,
    /// Time the slot with int8 activations on (see `DeviceProfile::int8_activations`).
    pub int8_activations: bool,
    /// Time the slot with f16 compute allowed (see `DeviceProfile::f16_compute`): its f16
    /// candidates compete with f32 ones, and a session that allows f16 reads this slot.
    pub f16_compute: bool,
    /// Sparse slots: weight densities, each with the sparse format the constant is stored in
    /// there. The best candidate (timed at the first point) is then timed at every point
    /// against the dense kernels on the same weight decoded, and the choice's
    /// [`CROSSOVER_FIELD`] becomes the largest density (percent) up to which the sparse kernel
    /// won by 10% at every point (0: it never did). Empty for ordinary slots.
    pub crossover: Vec<(f32, WeightFormat)>,
}

/// The field of a sparse kernel's serde form that holds its density threshold (percent),
/// which autotune sets for slots with a [`TuneSlot::crossover`].
pub const CROSSOVER_FIELD: &str = "max_density_pct";

impl TuneSlot {
    pub fn new<F: OpFamily>(
        slot: &'static str,
        candidates: Vec<F::Kernel>,
        op: F,
        inputs: Vec<(Vec<usize>, bool)>,
    ) -> TuneSlot {
        TuneSlot {
            family: F::FAMILY,
            slot,
            names: candidates.iter().map(|k| k.name()).collect(),
            candidates: candidates
                .iter()
                .map(|k| serde_json::to_value(k).expect("kernel variants serialise"))
                .collect(),
            formats: vec![WeightFormat::Dense; inputs.len()],
            int8_activations: false,
            f16_compute: false,
            crossover: Vec::new(),
            op: op.into(),
            inputs,
        }
    }

    /// The same slot timed with its constants stored in these formats (packed-weight kernels).
    pub fn with_formats(mut self, formats: Vec<WeightFormat>) -> TuneSlot {
        self.formats = formats;
        self
    }

    /// A sparse slot whose density threshold is measured at these points (see
    /// [`TuneSlot::crossover`]); the weight's format is the first point's.
    pub fn with_crossover(mut self, points: Vec<(f32, WeightFormat)>) -> TuneSlot {
        if let Some((_, f)) = points.first() {
            for (fmt, (_, c)) in self.formats.iter_mut().zip(&self.inputs) {
                if *c {
                    *fmt = f.clone();
                }
            }
        }
        self.crossover = points;
        self
    }
}

/// What a GPU lowering may know about a node.
pub struct LowerCtx<'a> {
    pub in_shapes: &'a [Vec<usize>],
    pub out_shape: &'a [usize],
    /// Which inputs are constants (weights), so they may be packed at load.
    pub is_const: &'a [bool],
    /// Storage format of each input (dense for non-constants).
    pub formats: &'a [WeightFormat],
    /// Largest workgroup count per dispatch dimension the device allows.
    pub max_workgroups: u32,
}

impl Op {
    /// Output dtype and shape from the inputs', checking the arity first.
    pub fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        self.infer_with(ins, &[])
    }

    /// Output dtype and shape from the inputs' and the values of those inputs known when the
    /// graph is planned ([`OpFamily::infer_consts`]), checking the arity first.
    pub fn infer_with(&self, ins: &[ValueType], consts: &[Option<&Tensor>]) -> Result<ValueType> {
        let (lo, hi) = self.arity();
        if ins.len() < lo || ins.len() > hi {
            return Err(Error::graph(format!(
                "{} takes {} inputs, got {}",
                self.name(),
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}..")
                },
                ins.len()
            )));
        }
        let out = self.infer_dyn(ins, consts)?;
        if out.shape.contains(&0) {
            return Err(Error::Unsupported {
                op: self.name().into(),
                what: format!("empty output shape {:?}", out.shape),
                backend: "any".into(),
            });
        }
        Ok(out)
    }

    /// Output shape of f32 inputs of the given shapes (a convenience for float ops).
    pub fn infer_shape(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let tys: Vec<ValueType> = ins.iter().map(|s| ValueType::f32(s)).collect();
        Ok(self.infer(&tys)?.shape)
    }

    /// CPU reference: the ground truth every GPU kernel is tested against.
    pub fn cpu(&self, ins: &[&Tensor]) -> Result<Tensor> {
        let out = self.infer_values(ins)?;
        self.cpu_dyn(ins, &out)
    }

    /// The output type on these input values (all of them known, as when the CPU runs it).
    fn infer_values(&self, ins: &[&Tensor]) -> Result<ValueType> {
        let tys: Vec<ValueType> = ins.iter().map(|t| t.value_type()).collect();
        let consts: Vec<Option<&Tensor>> = ins.iter().map(|&t| Some(t)).collect();
        self.infer_with(&tys, &consts)
    }

    /// Runs fast CPU kernel `kernel` on operands the kernel defines (a sparse weight as its
    /// CSR parts, see [`sparse::cpu_csr`]) with the output type the plan inferred.
    pub fn run_cpu_as(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        self.cpu_fast_dyn(kernel, ins, out)
    }

    /// Runs the node on the CPU with `kernel`: the reference for [`CPU_REFERENCE`],
    /// else the fast kernel of that name ([`Op::cpu_kernel`]).
    pub fn run_cpu(&self, kernel: &str, ins: &[&Tensor]) -> Result<Tensor> {
        let out = self.infer_values(ins)?;
        if kernel == CPU_REFERENCE {
            self.cpu_dyn(ins, &out)
        } else {
            self.cpu_fast_dyn(kernel, ins, &out)
        }
    }
}

/// Dtype rule of the float ops: every input f32, output f32 of the shape `shape` computes.
pub(crate) fn float_op(
    op: &str,
    ins: &[ValueType],
    shape: impl FnOnce(&[Vec<usize>]) -> Result<Vec<usize>>,
) -> Result<ValueType> {
    if let Some((i, v)) = ins.iter().enumerate().find(|(_, v)| v.dtype != DType::F32) {
        return Err(Error::DTypeMismatch {
            op: format!("{op} input {i}"),
            expected: "f32".into(),
            got: v.dtype.to_string(),
        });
    }
    let shapes: Vec<Vec<usize>> = ins.iter().map(|v| v.shape.clone()).collect();
    Ok(ValueType::f32(&shape(&shapes)?))
}

/// CPU reference of a float op from its f32 kernel.
pub(crate) fn cpu_f32(
    op: &str,
    ins: &[&Tensor],
    out: &ValueType,
    f: impl FnOnce(&[&[f32]], &[Vec<usize>]) -> Vec<f32>,
) -> Result<Tensor> {
    let shapes: Vec<Vec<usize>> = ins.iter().map(|t| t.shape().to_vec()).collect();
    let xs = ins
        .iter()
        .map(|t| t.f32s(op))
        .collect::<Result<Vec<&[f32]>>>()?;
    Tensor::new(&out.shape, f(&xs, &shapes))
}

/// The error a lowering returns for a kernel that cannot run the case.
pub(crate) fn unsupported(op: &str, what: impl Into<String>) -> Error {
    Error::Unsupported {
        op: op.into(),
        what: what.into(),
        backend: "gpu".into(),
    }
}

/// The activation table: one line per activation (continuous functions whose error a fused
/// epilogue does not amplify much: `exp`, `floor`, `sign`, ... are [`elementwise::Math`] ops) — its serde name (the enum variant), its
/// parameters with the sample value tests use (`{ alpha = 0.1 }`, at most two: they travel to
/// the shaders as the `ALPHA` and `BETA` pipeline constants, in the order written), the code the
/// shaders' `ACT` override takes, and its CPU formula (`x`, `a` the first parameter, `b` the
/// second). The WGSL formula is the `case` of that code in `shaders/common/activation.wgsl`; a
/// test checks the two agree on every activation.
macro_rules! activations {
    ($($(#[$doc:meta])* $variant:ident $({ $($field:ident = $sample:literal),+ })? = $code:literal
        => |$x:ident, $a:ident, $b:ident| $f:expr;)+) => {
        /// An activation applied elementwise, standalone or fused into a producer's epilogue.
        #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum Activation {
            #[default]
            None,
            $($(#[$doc])* $variant $({ $($field: f32),+ })?,)+
        }

        impl Activation {
            /// Every activation (with sample parameters), for tests.
            pub fn all() -> Vec<Activation> {
                vec![Activation::None, $(Activation::$variant $({ $($field: $sample),+ })?,)+]
            }

            /// The code the shaders' `ACT` override takes, and the `ALPHA` and `BETA` it needs
            /// (0 for absent parameters).
            pub fn code(self) -> (u32, f32, f32) {
                match self {
                    Activation::None => (0, 0.0, 0.0),
                    $(Activation::$variant $({ $($field),+ })? => {
                        let p: &[f32] = &[$($($field),+)?];
                        (
                            $code,
                            p.first().copied().unwrap_or(0.0),
                            p.get(1).copied().unwrap_or(0.0),
                        )
                    })+
                }
            }

            /// CPU reference of the activation (same formulas as the WGSL, except `erf`,
            /// which is exact here and a rational approximation there).
            pub fn apply(self, x: f32) -> f32 {
                let (_, alpha, beta) = self.code();
                match self {
                    Activation::None => x,
                    $(Activation::$variant { .. } => {
                        #[allow(unused_variables)]
                        let ($x, $a, $b) = (x, alpha, beta);
                        $f
                    })+
                }
            }
        }
    };
}

activations! {
    Relu = 1 => |x, _a, _b| x.max(0.0);
    Relu6 = 2 => |x, _a, _b| x.clamp(0.0, 6.0);
    LeakyRelu { alpha = 0.1 } = 3 => |x, a, _b| if x >= 0.0 { x } else { a * x };
    Sigmoid = 4 => |x, _a, _b| 1.0 / (1.0 + (-x).exp());
    Tanh = 5 => |x, _a, _b| x.tanh();
    /// tanh approximation (as in GPT-2 / BERT implementations); ONNX's exact `Gelu` is
    /// [`Activation::GeluErf`].
    Gelu = 6 => |x, _a, _b| 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x * x * x)).tanh());
    Silu = 7 => |x, _a, _b| x / (1.0 + (-x).exp());
    Hardswish = 8 => |x, _a, _b| x * (x + 3.0).clamp(0.0, 6.0) / 6.0;
    /// PyTorch's form, `clamp(x / 6 + 1/2, 0, 1)`; ONNX's `HardSigmoid` (alpha 0.2 by
    /// default) is [`Activation::HardSigmoidAb`].
    Hardsigmoid = 9 => |x, _a, _b| (x / 6.0 + 0.5).clamp(0.0, 1.0);
    /// The error function (ONNX `Erf`).
    Erf = 10 => |x, _a, _b| erf(x);
    /// Exact GELU, `x/2 (1 + erf(x / sqrt 2))` (ONNX `Gelu`, PyTorch's default).
    GeluErf = 11 => |x, _a, _b| 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    /// `x` for `x >= 0`, else `alpha (e^x - 1)` (ONNX default alpha 1).
    Elu { alpha = 0.7 } = 12 => |x, a, _b| if x >= 0.0 { x } else { a * x.exp_m1() };
    /// `max(0, x) + min(0, alpha (e^(x / alpha) - 1))` (ONNX default alpha 1; alpha != 0).
    Celu { alpha = 0.7 } = 13 => |x, a, _b| x.max(0.0) + (a * (x / a).exp_m1()).min(0.0);
    /// `ln(1 + e^x)`, computed as `max(x, 0) + ln(1 + e^-|x|)` (no overflow).
    Softplus = 14 => |x, _a, _b| softplus(x);
    /// `x / (1 + |x|)`.
    Softsign = 15 => |x, _a, _b| x / (1.0 + x.abs());
    /// `x tanh(softplus(x))`.
    Mish = 16 => |x, _a, _b| x * softplus(x).tanh();
    /// `x` where `x > alpha`, else 0 (ONNX default alpha 1).
    ThresholdedRelu { alpha = 0.7 } = 17 => |x, a, _b| if x > a { x } else { 0.0 };
    Neg = 18 => |x, _a, _b| -x;
    Abs = 19 => |x, _a, _b| x.abs();
    /// `gamma x` for `x > 0`, else `gamma alpha (e^x - 1)` (ONNX defaults: alpha 1.67326,
    /// gamma 1.0507).
    Selu { alpha = 1.673_263_2, gamma = 1.050_701 } = 20
        => |x, a, b| if x > 0.0 { b * x } else { b * (a * x.exp_m1()) };
    /// ONNX `HardSigmoid`: `clamp(alpha x + beta, 0, 1)` (defaults alpha 0.2, beta 0.5).
    HardSigmoidAb { alpha = 0.2, beta = 0.5 } = 21 => |x, a, b| (a * x + b).clamp(0.0, 1.0);
    /// `min(max(x, min), max)` (ONNX `Clip`; a missing bound is the float's extreme, so
    /// build it with [`Activation::clip`], which also picks `Relu`/`Relu6` where exact).
    Clip { min = -1.5, max = 2.5 } = 22 => |x, a, b| x.max(a).min(b);
}

/// `ln(1 + e^x)` without overflow for large `x`.
fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The error function, accurate to f32 rounding: its Maclaurin series summed in f64 for
/// `|x| < 4` (terms peak near 1e6 at `|x| = 4`, so f64 keeps about 1e-10 absolute), and
/// `±1` beyond, where `1 - erf(4) = 1.5e-8` is below half an f32 ulp of 1. The GPU uses a
/// rational approximation (`erf_approx` in `shaders/common/activation.wgsl`).
pub fn erf(x: f32) -> f32 {
    let x = x as f64;
    if x.is_nan() {
        return f32::NAN;
    }
    if x.abs() >= 4.0 {
        return x.signum() as f32;
    }
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    let x2 = x * x;
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x2 / n as f64;
        let t = term / (2 * n + 1) as f64;
        sum += t;
        if t.abs() < 1e-17 * sum.abs().max(1e-300) {
            break;
        }
    }
    (sum * std::f64::consts::FRAC_2_SQRT_PI) as f32
}

impl Activation {
    /// ONNX `Clip` with optional bounds: `Relu` for `[0, inf)`, `Relu6` for `[0, 6]`, else
    /// `Clip` with a missing or infinite bound at the float's extreme (ONNX's own default for
    /// a missing bound is that extreme, so only an infinite input at an infinite bound differs:
    /// it comes out as `±f32::MAX`).
    pub fn clip(min: Option<f32>, max: Option<f32>) -> Activation {
        let lo = min.unwrap_or(f32::NEG_INFINITY);
        let hi = max.unwrap_or(f32::INFINITY);
        if lo == 0.0 && hi == f32::INFINITY {
            Activation::Relu
        } else if lo == 0.0 && hi == 6.0 {
            Activation::Relu6
        } else {
            Activation::Clip {
                min: lo.clamp(f32::MIN, f32::MAX),
                max: hi.clamp(f32::MIN, f32::MAX),
            }
        }
    }

    /// Refuses a non-finite parameter (`leaky_relu` alpha): JSON cannot store it, so a model
    /// holding one would save but never load again; and `celu` with alpha 0 (it divides).
    pub(crate) fn check(self, op: &str) -> Result<()> {
        let (_, alpha, beta) = self.code();
        finite_attr(op, "act.alpha", alpha)?;
        finite_attr(op, "act.beta", beta)?;
        if let Activation::Celu { alpha } = self {
            if alpha == 0.0 {
                return Err(Error::graph(format!(
                    "{op}: celu's alpha must not be 0 (it divides by alpha)"
                )));
            }
        }
        Ok(())
    }

    /// The pipeline constants that select this activation in `shaders/common/activation.wgsl`.
    pub fn overrides(self) -> Overrides {
        let (code, alpha, beta) = self.code();
        Overrides(vec![
            ("ACT", code as f64),
            ("ALPHA", alpha as f64),
            ("BETA", beta as f64),
        ])
    }
}

/// How a constant input is re-laid-out once at load for a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pack {
    /// `[.., K, N]` -> `[.., N, K]` (GEMM B operand to the NT layout).
    TransposeLast2,
    /// B (`[.., K, N]`, or `[.., N, K]` when `trans_b`) -> `[.., K, N rounded up to 4]`.
    KnPadded4 { trans_b: bool },
    /// Data viewed as `[len / cols][cols]` with each row zero-padded to a multiple of 4.
    Rows4 { cols: usize },
    /// OIHW conv weights -> `[group][cin_g*kh*kw][cout_g rounded up to 8]`.
    ConvTaps { groups: usize },
}

/// What a shader binding is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bind {
    /// The node's input number `i`.
    Input(usize),
    /// Input `i` (a constant) after a one-time re-layout.
    Packed(usize, Pack),
    /// Input `i` (a constant) re-laid-out and uploaded as an rgba32float texture `width`
    /// texels wide.
    Texture(usize, Pack, u32),
    /// A part of packed weight input `i`, read as stored (see [`quant`]).
    Quant(usize, quant::QPart),
    /// A codes part of packed weight input `i` as an rgba32uint texture
    /// ([`quant::QLayout::texture_width`] texels wide).
    QuantTex(usize, quant::QPart),
    /// The K-major codes of packed weight input `i` (int8 or f16) as a normalised texture
    /// (rgba8snorm, rgba8unorm when asymmetric, rgba16float), so loads convert to f32.
    QuantTexNorm(usize),
    /// A part of sparse weight input `i`, read as stored (see [`sparse`]).
    Sparse(usize, sparse::SPart),
    /// A part of sparse weight input `i` as an rgba32uint texture [`sparse::TEX_WIDTH`] texels
    /// wide (the texture layout of `ops/sparse.rs`).
    SparseTex(usize, sparse::SPart),
    /// The node's output.
    Output,
    /// Node-private scratch texture `i` (`w` x `h` texels), written as a storage texture by one
    /// dispatch of the node...
    ScratchStore(usize, u32, u32, TexFormat),
    /// ...and read as a texture by a later one.
    ScratchRead(usize),
    /// Node-private scratch buffer `i` of `words` u32 words (at least), written as a storage
    /// buffer by one dispatch of the node...
    ScratchBuf(usize, u32),
    /// ...and read as a uniform buffer by a later one (the whole buffer).
    ScratchUniform(usize),
    /// An unused optional operand (the shader reads it only behind a flag that is off).
    Dummy,
}

impl Bind {
    /// Whether the binding is a storage buffer (counted against the device's storage
    /// buffers per stage), not a texture.
    pub fn is_buffer(&self) -> bool {
        !matches!(
            self,
            Bind::Texture(..)
                | Bind::QuantTex(..)
                | Bind::QuantTexNorm(..)
                | Bind::SparseTex(..)
                | Bind::ScratchStore(..)
                | Bind::ScratchRead(..)
                | Bind::ScratchUniform(..)
        )
    }
}

/// One compute dispatch, as plain data: the GPU executor turns it into a pipeline + bind group.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub shader: ShaderKey,
    /// Pipeline constants (the fused activation's `ACT` and `ALPHA`).
    pub overrides: Overrides,
    /// Uniform parameters (binding 0), as 32-bit words.
    pub params: Vec<u32>,
    /// Storage bindings 1.. in order.
    pub bindings: Vec<Bind>,
    pub workgroups: [u32; 3],
}

/// Splits `n` workgroups of a 1-D job over x and y so neither exceeds the device maximum
/// (shaders recover the flat index with `flat_id`).
pub fn grid_1d(n: u64, max: u32) -> [u32; 3] {
    let max = max.max(1) as u64;
    if n <= max {
        [n.max(1) as u32, 1, 1]
    } else {
        let y = n.div_ceil(max);
        [max as u32, y.min(u32::MAX as u64) as u32, 1]
    }
}

/// Ceil division for dispatch sizes.
pub fn div_ceil(a: usize, b: usize) -> u32 {
    a.div_ceil(b) as u32
}

/// Checks a 2-D/3-D dispatch against the device limit.
pub fn check_grid(op: &str, g: [u32; 3], max: u32) -> Result<()> {
    for v in g {
        if v > max {
            return Err(Error::DeviceLimit {
                what: format!("{op} workgroups per dimension"),
                needed: v as u64,
                max: max as u64,
            });
        }
    }
    Ok(())
}

/// Checks the optional epilogue operands that follow the two main inputs of matmul/conv:
/// a bias of `[channels]`, then a residual of the output's shape.
pub(crate) fn check_epilogue(
    op: &str,
    ins: &[Vec<usize>],
    bias: bool,
    residual: bool,
    channels: usize,
    out: &[usize],
) -> Result<()> {
    let mut i = 2;
    if bias {
        if ins[i] != [channels] {
            return Err(Error::shape(
                format!("{op} bias"),
                crate::tensor::fmt_shape(&[channels]),
                crate::tensor::fmt_shape(&ins[i]),
            ));
        }
        i += 1;
    }
    if residual && ins[i] != out {
        return Err(Error::shape(
            format!("{op} residual"),
            crate::tensor::fmt_shape(out),
            crate::tensor::fmt_shape(&ins[i]),
        ));
    }
    Ok(())
}

/// Bindings of the optional epilogue operands (bias, residual) that follow the two main inputs
/// of matmul/conv; a dummy buffer stands in for an absent one.
pub(crate) fn epilogue_binds(bias: bool, residual: bool) -> [Bind; 2] {
    let b = if bias { Bind::Input(2) } else { Bind::Dummy };
    let r = if residual {
        Bind::Input(2 + bias as usize)
    } else {
        Bind::Dummy
    };
    [b, r]
}

/// Checks that attribute `attr` of `op` fits the 32-bit words kernel parameters are made of:
/// shapes are inferred in `usize`, so a larger value would be truncated into the kernel's
/// parameters and the CPU reference (which reads the same struct) and GPU would agree on a
/// wrong answer. Run in each op's shape rule, so a model is refused at check time.
pub(crate) fn attr_u32(op: &str, attr: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::graph(format!(
            "{op}: attribute {attr} = {v} exceeds {} (kernel parameters are 32-bit)",
            u32::MAX
        ))
    })
}

/// Checks every element of an array attribute with [`attr_u32`] (`pad[2]` in errors).
pub(crate) fn attrs_u32(op: &str, attr: &str, vs: &[usize]) -> Result<()> {
    for (i, &v) in vs.iter().enumerate() {
        attr_u32(op, &format!("{attr}[{i}]"), v)?;
    }
    Ok(())
}

/// Checks an intermediate extent that kernels compute in signed 32-bit arithmetic (padded
/// input extents: `oy * stride + r * dilation` stays below them).
pub(crate) fn check_i32_extent(op: &str, what: &str, v: usize) -> Result<()> {
    if v > i32::MAX as usize {
        return Err(Error::graph(format!(
            "{op}: {what} {v} exceeds {} (kernels index it in 32-bit signed arithmetic)",
            i32::MAX
        )));
    }
    Ok(())
}

/// Checks that float attribute `attr` of `op` is finite (model files store attributes as
/// JSON, which has no NaN or infinity).
pub(crate) fn finite_attr(op: &str, attr: &str, v: f32) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::graph(format!(
            "{op}: attribute {attr} = {v} is not a finite number"
        )));
    }
    Ok(())
}

/// `v` as a kernel parameter word; shape rules have checked it fits (saturates otherwise).
pub(crate) fn word(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Little helper for ops that feed f32 values through the u32 uniform words.
pub(crate) fn f32_word(v: f32) -> u32 {
    v.to_bits()
}

impl Pack {
    /// Applies the re-layout to a constant's data.
    pub fn apply(self, data: &[f32], shape: &[usize]) -> Vec<f32> {
        match self {
            Pack::TransposeLast2 => {
                let r = shape.len();
                let (k, n) = (shape[r - 2], shape[r - 1]);
                let mut out = vec![0.0; data.len()];
                for (src, dst) in data.chunks(k * n).zip(out.chunks_mut(k * n)) {
                    for kk in 0..k {
                        for j in 0..n {
                            dst[j * k + kk] = src[kk * n + j];
                        }
                    }
                }
                out
            }
            Pack::KnPadded4 { trans_b } => {
                let r = shape.len();
                let (k, n) = if trans_b {
                    (shape[r - 1], shape[r - 2])
                } else {
                    (shape[r - 2], shape[r - 1])
                };
                let n4 = n.div_ceil(4) * 4;
                let mut out = Vec::with_capacity(data.len() / n * n4);
                for src in data.chunks(k * n) {
                    for kk in 0..k {
                        for j in 0..n4 {
                            out.push(match (j < n, trans_b) {
                                (false, _) => 0.0,
                                (true, false) => src[kk * n + j],
                                (true, true) => src[j * k + kk],
                            });
                        }
                    }
                }
                out
            }
            Pack::Rows4 { cols } => {
                let c4 = cols.div_ceil(4) * 4;
                let mut out = Vec::with_capacity(data.len() / cols.max(1) * c4);
                for row in data.chunks(cols.max(1)) {
                    out.extend_from_slice(row);
                    out.resize(out.len() + c4 - row.len(), 0.0);
                }
                out
            }
            Pack::ConvTaps { groups } => conv::pack_conv_taps(data, shape, groups),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_splits_large_jobs() {
        assert_eq!(grid_1d(10, 65535), [10, 1, 1]);
        assert_eq!(grid_1d(70000, 65535), [65535, 2, 1]);
        assert_eq!(grid_1d(0, 65535), [1, 1, 1]);
    }

    use crate::profile::DeviceProfile;

    /// The kernel a family picks for inputs of these shapes (f32, dense).
    fn pick(op: &Op, ins: &[Vec<usize>], is_const: &[bool], p: &DeviceProfile) -> Option<String> {
        let tys: Vec<ValueType> = ins.iter().map(|s| ValueType::f32(s)).collect();
        let out = op.infer(&tys).unwrap();
        let formats = vec![WeightFormat::Dense; ins.len()];
        let cx = SelectCtx {
            ins: &tys,
            out: &out,
            is_const,
            formats: &formats,
            device: p,
            density: &[],
        };
        let lcx = LowerCtx {
            in_shapes: ins,
            out_shape: &out.shape,
            is_const,
            formats: &formats,
            max_workgroups: 65535,
        };
        op.plan_gpu(&cx, &lcx).unwrap().map(|(k, _)| k)
    }

    fn set(p: &mut DeviceProfile, family: &str, slot: &str, k: serde_json::Value) {
        p.kernels
            .entry(family.into())
            .or_default()
            .insert(slot.into(), k);
    }

    #[test]
    fn gemm_choice_follows_rows_layout_and_constness() {
        let mut p = DeviceProfile::portable();
        set(
            &mut p,
            "matmul",
            "gemm",
            serde_json::json!({"kernel": "vec4", "tm": 4, "tn": 4}),
        );
        let lin = Op::MatMul(MatMul {
            trans_b: true,
            ..Default::default()
        });
        let c = [false, true];
        let k = |op: &Op, a: Vec<usize>, b: Vec<usize>, c: &[bool], p: &DeviceProfile| {
            pick(op, &[a, b], c, p).unwrap()
        };
        // Untuned GEMV takes the family's default; tuned GEMM its choice.
        assert_eq!(k(&lin, vec![1, 64], vec![32, 64], &c, &p), "vec4-1x4");
        assert_eq!(k(&lin, vec![8, 64], vec![32, 64], &c, &p), "vec4-4x4");
        // vec4 cannot take K = 63: a constant B falls back to the bcast kernel.
        assert_eq!(k(&lin, vec![8, 63], vec![32, 63], &c, &p), "bcast-4x8");
        // Activation B: vec4 when K % 4 == 0 and B is [N, K], else the scalar tiled kernel.
        assert_eq!(
            k(&lin, vec![8, 64], vec![32, 64], &[false, false], &p),
            "vec4-4x4"
        );
        let mm = Op::MatMul(MatMul::default());
        assert_eq!(
            k(&mm, vec![8, 64], vec![64, 32], &[false, false], &p),
            "tiled-4x4"
        );
        // A tuned choice with an unsupported block shape is never used.
        set(
            &mut p,
            "matmul",
            "gemm",
            serde_json::json!({"kernel": "bcast", "tm": 3, "tn4": 2}),
        );
        assert_eq!(k(&lin, vec![8, 64], vec![32, 64], &c, &p), "bcast-4x8");
    }

    #[test]
    fn depthwise_detected_and_naive_forced() {
        let p = DeviceProfile::portable();
        let dw = Op::Conv2d(Conv2d {
            groups: 32,
            ..Default::default()
        });
        let ins = [vec![1, 32, 9, 9], vec![32, 1, 3, 3]];
        assert_eq!(pick(&dw, &ins, &[false, true], &p).unwrap(), "depthwise-4");
        let mut naive = p.clone();
        naive.naive_only = true;
        assert_eq!(pick(&dw, &ins, &[false, true], &naive).unwrap(), "naive");
    }

    #[test]
    fn no_gpu_kernel_for_other_dtypes_or_packed_weights() {
        let p = DeviceProfile::portable();
        let cast = Op::Cast(Cast { to: DType::I32 });
        assert_eq!(pick(&cast, &[vec![4]], &[false], &p), None);
        let relu = Op::Unary(Unary {
            act: Activation::Relu,
        });
        let tys = [ValueType::new(DType::I32, &[4])];
        let out = ValueType::new(DType::I32, &[4]);
        let cx = SelectCtx {
            ins: &tys,
            out: &out,
            is_const: &[false],
            formats: &[WeightFormat::Dense],
            device: &p,
            density: &[],
        };
        let Op::Unary(u) = &relu else { unreachable!() };
        assert_eq!(u.select(&cx), None);
    }

    #[test]
    fn choices_are_checked_against_the_registry() {
        let ok = serde_json::json!({"kernel": "tiled", "px": 4});
        assert_eq!(
            Op::check_choice("conv2d", "conv", &ok).unwrap(),
            "tiled-8x4"
        );
        let zero = serde_json::json!({"kernel": "tiled", "px": 0});
        assert!(Op::check_choice("conv2d", "conv", &zero).is_err());
        assert!(Op::check_choice("conv2d", "nope", &ok).is_err());
        assert!(Op::check_choice("nope", "conv", &ok).is_err());
        let gemm = serde_json::json!({"kernel": "vec4", "tm": 4, "tn": 4});
        assert!(Op::check_choice("conv2d", "conv", &gemm).is_err());
    }

    #[test]
    fn activation_codes_are_distinct() {
        let acts = Activation::all();
        assert_eq!(acts.len(), 23);
        let mut codes: Vec<u32> = acts.iter().map(|a| a.code().0).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), acts.len());
        assert_eq!(Activation::LeakyRelu { alpha: 0.1 }.apply(-2.0), -0.2);
        assert_eq!(Activation::Relu6.apply(7.0), 6.0);
    }
}
