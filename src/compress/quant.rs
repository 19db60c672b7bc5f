//! Post-training weight quantization: which weights, which layout, clipping, and the report.

use super::targets::{fmt_ratio, SkippedWeight, Target};
use crate::error::{Error, Result};
use crate::format::{matrix_dims, QuantSpec, WeightFormat, WeightParts};
use crate::graph::Graph;
use crate::model::Model;
use crate::ops::Op;
use crate::tensor::{fmt_shape, DType, Tensor};
use half::f16;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// The storage a quantized weight gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightKind {
    /// 8-bit integer codes with a scale per output channel or per group (4x smaller than f32).
    Int8,
    /// 4-bit integer codes, two per byte, with a scale per group (about 7x smaller).
    Int4,
    /// Half precision (2x smaller, ~3 significant digits, no scales to choose).
    F16,
    /// 8-bit codes with power-of-two scales, so dequantization is a shift (fixed-point hardware).
    Pow2,
}

impl FromStr for WeightKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "int8" | "i8" => WeightKind::Int8,
            "int4" | "i4" => WeightKind::Int4,
            "f16" | "half" | "fp16" => WeightKind::F16,
            "pow2" | "pow2-int8" => WeightKind::Pow2,
            other => {
                return Err(Error::Input(format!(
                    "unknown weight kind '{other}' (expected int8 | int4 | f16 | pow2)"
                )))
            }
        })
    }
}

impl fmt::Display for WeightKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightKind::Int8 => "int8",
            WeightKind::Int4 => "int4",
            WeightKind::F16 => "f16",
            WeightKind::Pow2 => "pow2",
        })
    }
}

/// How the range each scale covers is chosen. Round-to-nearest from the max-abs value wastes
/// most of the codes on one outlier; clipping it trades a large error on that value for a finer
/// step on all the others. Clipping means `clip(w, -a, a)` before encoding, and the encoder then
/// takes `a` as the group's max-abs. It does not apply to f16 weights.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Clip {
    /// The full range: every value is represented within half a step.
    #[default]
    None,
    /// Per scale group, the threshold that minimises the squared error of quantize-dequantize
    /// against the unclipped weights at the format's bit width: a grid search over
    /// `a = t * max|w|` (t from 0.50 to 1.00, coarse then fine steps of 0.01; for power-of-two
    /// scales over the shift choices instead). `t = 1` is a candidate, so a group's error never
    /// exceeds the unclipped one.
    Mse,
    /// `a` = this percentile (in (0, 100]) of `|w|` over each scale group (nearest rank). A
    /// group whose percentile is 0 (mostly exact zeros) is left unclipped rather than erased.
    Percentile(f32),
    /// A fixed `a` for every group (finite, > 0).
    Abs(f32),
}

impl Clip {
    /// Rejects a percentile outside (0, 100] and a non-positive or non-finite absolute
    /// threshold (`Error::Input`).
    pub fn check(&self) -> Result<()> {
        match *self {
            Clip::Percentile(p) if !(p > 0.0 && p <= 100.0) => Err(Error::Input(format!(
                "clip percentile {p} is outside (0, 100]"
            ))),
            Clip::Abs(a) if !(a.is_finite() && a > 0.0) => Err(Error::Input(format!(
                "clip threshold {a} must be a finite number > 0"
            ))),
            _ => Ok(()),
        }
    }
}

impl FromStr for Clip {
    type Err = Error;
    /// `none`, `mse`, `pct:P` (or `percentile:P`) and `abs:A`; the values are checked.
    fn from_str(s: &str) -> Result<Self> {
        let num = |v: &str, what: &str| {
            v.trim()
                .parse::<f32>()
                .map_err(|_| Error::Input(format!("clip {what} '{v}' is not a number (in '{s}')")))
        };
        let lower = s.to_ascii_lowercase();
        let clip = match lower.split_once(':') {
            None if lower == "none" => Clip::None,
            None if lower == "mse" => Clip::Mse,
            Some(("pct" | "percentile" | "p", v)) => Clip::Percentile(num(v, "percentile")?),
            Some(("abs", v)) => Clip::Abs(num(v, "threshold")?),
            _ => {
                return Err(Error::Input(format!(
                    "unknown clipping '{s}' (expected none | mse | pct:P | abs:A)"
                )))
            }
        };
        clip.check()?;
        Ok(clip)
    }
}

impl fmt::Display for Clip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clip::None => f.write_str("none"),
            Clip::Mse => f.write_str("mse"),
            Clip::Percentile(p) => write!(f, "pct:{p}"),
            Clip::Abs(a) => write!(f, "abs:{a}"),
        }
    }
}

/// What [`quantize`] does. Start from [`QuantConfig::new`], which fills in the defaults of a
/// kind (int4: groups of 32 with f16 scales; the others: per output channel, f32 scales).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantConfig {
    /// The storage of every quantized weight.
    pub weights: WeightKind,
    /// Values per scale along the reduction dim K; 0 = one scale per output channel. Must be 0
    /// for f16. Small groups follow local ranges (int4 needs them) at the cost of more scales.
    pub group: usize,
    /// Unsigned codes with a zero point per scale, for skewed ranges (int8, int4, pow2).
    pub asym: bool,
    /// Outlier clipping before encoding (int8, int4, pow2).
    pub clip: Clip,
    /// Weight names or node names to leave dense (a weight is left dense if any node reading
    /// it is named). A name that is neither is an error, so a typo is not silently ignored.
    pub skip: Vec<String>,
    /// Store scales as f16 (half their bytes; with 4-bit codes and groups of 32, f32 scales
    /// would be a fifth of the stored size). Ignored by pow2 (i8 shifts) and f16.
    pub scale_f16: bool,
}

impl QuantConfig {
    /// The defaults for `weights`: int4 in groups of 32 with f16 scales; int8, pow2 and f16 per
    /// output channel with f32 scales; symmetric, no clipping, nothing skipped.
    pub fn new(weights: WeightKind) -> Self {
        let int4 = weights == WeightKind::Int4;
        QuantConfig {
            weights,
            group: if int4 { 32 } else { 0 },
            asym: false,
            clip: Clip::None,
            skip: Vec::new(),
            scale_f16: int4,
        }
    }

    /// The weight format this configuration stores, after checking that its options go
    /// together (`Error::Input` otherwise).
    pub fn format(&self) -> Result<WeightFormat> {
        self.clip.check()?;
        let quant = |bits: u8, pow2: bool| {
            let scale_dtype = if self.scale_f16 && !pow2 {
                DType::F16
            } else {
                DType::F32
            };
            let spec = QuantSpec {
                bits,
                group: self.group,
                zero_points: self.asym,
                pow2,
                scale_dtype,
            };
            spec.check()?;
            Ok(WeightFormat::Quant(spec))
        };
        match self.weights {
            WeightKind::F16 if self.group != 0 => Err(Error::Input(format!(
                "a group size ({}) applies to int8, int4 and pow2 weights; f16 has no scales",
                self.group
            ))),
            WeightKind::F16 if self.asym => Err(Error::Input(
                "asymmetric (zero-point) quantization applies to int8, int4 and pow2 weights, \
                 not f16"
                    .into(),
            )),
            WeightKind::F16 => Ok(WeightFormat::Half),
            WeightKind::Int8 => quant(8, false),
            WeightKind::Int4 => quant(4, false),
            WeightKind::Pow2 => quant(8, true),
        }
    }
}

impl Default for QuantConfig {
    /// Int8 per output channel: the format that costs the least accuracy.
    fn default() -> Self {
        QuantConfig::new(WeightKind::Int8)
    }
}

/// What quantizing one weight cost.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerReport {
    /// The weight's name.
    pub name: String,
    /// Its stored format, as [`WeightFormat::label`] writes it ("int8", "int4-g32-f16s", ...).
    pub format: String,
    /// Its logical shape as stored (after any transposition).
    pub shape: Vec<usize>,
    /// True when a `[K, N]` matmul weight was rewritten as `[N, K]` with `trans_b` set.
    pub transposed: bool,
    /// Signal to quantization noise, `10 log10(sum w^2 / sum (w - dequant(w))^2)` in dB,
    /// against the original unclipped weights; infinite when the weights survive exactly.
    pub sqnr_db: f64,
    /// Largest `|w - dequant(w)|` (clipping error included).
    pub max_abs_err: f32,
    /// `sum w^2` of the original weight: with `sqnr_db` it gives the noise energy, so layers
    /// combine into the model's SQNR ([`QuantReport::total_sqnr_db`]).
    pub sum_sq: f64,
    /// Mean over scale groups of the clipping threshold relative to the group's max-abs
    /// (1 = nothing clipped).
    pub clip: f32,
    /// Bytes as dense f32.
    pub bytes_before: usize,
    /// Bytes of the stored parts (codes, scales, zero points).
    pub bytes_after: usize,
}

/// The weights to quantize, in first-use order, and the matmul/conv weights left dense (the
/// skip list names weights or nodes).
fn select(
    graph: &Graph,
    weights: &BTreeMap<String, Tensor>,
    skip: &[String],
) -> (Vec<Target>, Vec<SkippedWeight>) {
    let skip: HashSet<&str> = skip.iter().map(String::as_str).collect();
    super::targets::select(graph, weights, "quantized", &|w, users| {
        if skip.contains(w) {
            return Err("named in the skip list".into());
        }
        match users.iter().find(|n| skip.contains(**n)) {
            Some(n) => Err(format!("read by node '{n}', named in the skip list")),
            None => Ok(()),
        }
    })
}

/// `[K, N]` -> `[N, K]` of weight `name`.
fn transpose2d(t: &Tensor, name: &str) -> Result<Tensor> {
    let [k, n] = t.shape() else {
        return Err(Error::shape(
            format!("transposing weight '{name}'"),
            "rank 2",
            fmt_shape(t.shape()),
        ));
    };
    let (k, n) = (*k, *n);
    Tensor::new(&[n, k], super::targets::transpose2d(t.f32s(name)?, k, n))
}

/// What [`quantize`] did: one [`LayerReport`] per quantized weight, the weights it left dense,
/// and the model's total weight bytes before and after. `Display` prints it as a table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuantReport {
    /// The quantized weights, in the order the graph first uses them.
    pub layers: Vec<LayerReport>,
    /// Matmul/conv weights left dense, with the reason (skip list, layout, shape, dtype).
    pub skipped: Vec<SkippedWeight>,
    /// All weight bytes of the input model.
    pub model_bytes_before: usize,
    /// All weight bytes of the quantized model (dense biases and norms included).
    pub model_bytes_after: usize,
}

impl QuantReport {
    /// f32 bytes of the quantized weights.
    pub fn bytes_before(&self) -> usize {
        self.layers.iter().map(|l| l.bytes_before).sum()
    }

    /// Stored bytes of the quantized weights.
    pub fn bytes_after(&self) -> usize {
        self.layers.iter().map(|l| l.bytes_after).sum()
    }

    /// Lowest and highest per-layer SQNR (dB), or `None` without layers.
    pub fn sqnr_range(&self) -> Option<(f64, f64)> {
        let mut it = self.layers.iter().map(|l| l.sqnr_db);
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), s| (lo.min(s), hi.max(s))))
    }

    /// SQNR of all quantized weights together (signal and noise energies summed over the
    /// layers), in dB; `None` without layers.
    pub fn total_sqnr_db(&self) -> Option<f64> {
        if self.layers.is_empty() {
            return None;
        }
        let signal: f64 = self.layers.iter().map(|l| l.sum_sq).sum();
        let noise: f64 = (self.layers.iter())
            .map(|l| l.sum_sq * 10f64.powf(-l.sqnr_db / 10.0))
            .sum();
        Some(if noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (signal / noise).log10()
        })
    }

    /// The report as an aligned text table, one row per layer, then totals and the weights
    /// left dense.
    pub fn table(&self) -> String {
        let head = [
            "layer",
            "shape",
            "format",
            "SQNR dB",
            "max err",
            "clip",
            "f32 bytes",
            "stored",
            "ratio",
        ];
        let mut rows: Vec<[String; 9]> = self
            .layers
            .iter()
            .map(|l| {
                [
                    format!("{}{}", l.name, if l.transposed { " (T)" } else { "" }),
                    fmt_shape(&l.shape),
                    l.format.clone(),
                    fmt_db(l.sqnr_db),
                    format!("{:.3e}", l.max_abs_err),
                    format!("{:.3}", l.clip),
                    l.bytes_before.to_string(),
                    l.bytes_after.to_string(),
                    fmt_ratio(l.bytes_before, l.bytes_after),
                ]
            })
            .collect();
        let (before, after) = (self.bytes_before(), self.bytes_after());
        rows.push([
            format!("total ({} layers)", self.layers.len()),
            String::new(),
            String::new(),
            self.total_sqnr_db().map_or("-".into(), fmt_db),
            String::new(),
            String::new(),
            before.to_string(),
            after.to_string(),
            fmt_ratio(before, after),
        ]);
        let mut width = head.map(str::len);
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(width).enumerate() {
                // Names and labels read left-aligned, numbers right-aligned.
                if i < 3 {
                    s += &format!("{c:<w$}  ");
                } else {
                    s += &format!("{c:>w$}  ");
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = line(&head.map(String::from));
        for (i, r) in rows.iter().enumerate() {
            if i + 1 == rows.len() {
                let total: usize = width.iter().sum::<usize>() + 2 * (width.len() - 1);
                out += &"-".repeat(total);
                out += "\n";
            }
            out += &line(r);
        }
        out += &format!(
            "model weights: {} -> {} bytes ({} smaller)\n",
            self.model_bytes_before,
            self.model_bytes_after,
            fmt_ratio(self.model_bytes_before, self.model_bytes_after)
        );
        if self.layers.iter().any(|l| l.transposed) {
            out += "(T): a [K, N] matmul weight, stored transposed as [N, K] (trans_b set)\n";
        }
        for s in &self.skipped {
            out += &format!("left dense: {}: {}\n", s.name, s.reason);
        }
        out
    }
}

fn fmt_db(db: f64) -> String {
    if db.is_infinite() {
        "inf".into()
    } else {
        format!("{db:.1}")
    }
}

impl fmt::Display for QuantReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table())
    }
}

/// Quantizes the weight input (input 1) of every matmul and conv node of `model` as `cfg`
/// says, returning the new model and what it cost. See [`quantize_with_progress`].
pub fn quantize(model: &Model, cfg: &QuantConfig) -> Result<(Model, QuantReport)> {
    quantize_with_progress(model, cfg, &mut |_, _, _| {})
}

/// [`quantize`], calling `progress(done, total, weight)` once with `done = 0` before the first
/// weight and after each weight, so a command-line tool can draw a bar (the library draws none).
///
/// A weight is quantized when it is a declared graph weight, dense, f32, non-empty, not in
/// `cfg.skip`, and every node reading it reads it as the weight of a matmul or conv. A weight
/// shared by several nodes is quantized once. A `[K, N]` matmul weight (`trans_b = false`) is
/// stored transposed as `[N, K]` and its matmuls get `trans_b = true`: every packed format views
/// a weight as `[rows = output channels, cols = K]` with scales per row and groups along K, which
/// is what the kernels read. Weights that do not qualify stay dense and are listed in
/// [`QuantReport::skipped`] with the reason; biases and norm parameters are never touched.
///
/// Errors (`Error::Input`) for options that do not go together, unknown names in `skip`, a
/// percentile outside (0, 100] and a non-positive clip threshold. A weight the format cannot
/// encode (a value beyond the f16 range, say) is left dense with the reason.
pub fn quantize_with_progress(
    model: &Model,
    cfg: &QuantConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<(Model, QuantReport)> {
    let format = cfg.format()?;
    check_skip(&model.graph, &cfg.skip)?;
    let (targets, mut skipped) = select(&model.graph, &model.weights, &cfg.skip);
    let mut graph = model.graph.clone();
    let mut weights: BTreeMap<String, Tensor> = (*model.weights).clone();
    let mut layers = Vec::with_capacity(targets.len());
    let total = targets.len();
    progress(0, total, "");
    for (i, t) in targets.iter().enumerate() {
        let dense = weights
            .get(&t.name)
            .ok_or_else(|| Error::MissingWeight(t.name.clone()))?
            .to_f32();
        let w = if t.transpose {
            transpose2d(&dense, &t.name)?
        } else {
            dense
        };
        match quantize_weight(&t.name, &w, &format, cfg.clip) {
            Ok((parts, mut layer)) => {
                weights.remove(&t.name);
                weights.extend(parts);
                graph.formats.insert(t.name.clone(), format.clone());
                if t.transpose {
                    graph.weights[t.index].shape = w.shape().to_vec();
                    for &n in &t.users {
                        if let Op::MatMul(m) = &mut graph.nodes[n].op {
                            m.trans_b = true;
                        }
                    }
                }
                layer.transposed = t.transpose;
                layers.push(layer);
            }
            // The format cannot hold this weight (f16 overflow, non-finite values): the
            // model is still useful with this one layer dense.
            Err(Error::Unsupported { what, .. }) => skipped.push(SkippedWeight {
                name: t.name.clone(),
                reason: format!("cannot be stored as {}: {what}", format.label()),
            }),
            Err(e) => return Err(e),
        }
        progress(i + 1, total, &t.name);
    }
    let out = Model::new(graph, weights)?;
    let report = QuantReport {
        layers,
        skipped,
        model_bytes_before: model.weight_bytes(),
        model_bytes_after: out.weight_bytes(),
    };
    Ok((out, report))
}

/// Every name in `skip` must be a weight or a node of the graph.
fn check_skip(graph: &Graph, skip: &[String]) -> Result<()> {
    let known: HashSet<&str> = (graph.weights.iter().map(|w| w.name.as_str()))
        .chain(graph.nodes.iter().map(|n| n.name.as_str()))
        .collect();
    let unknown: Vec<&str> = skip
        .iter()
        .map(String::as_str)
        .filter(|s| !known.contains(s))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::Input(format!(
        "skip names no weight or node of the model: {}",
        unknown
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Clips, encodes and measures one weight (`w` f32 in its stored layout).
fn quantize_weight(
    name: &str,
    w: &Tensor,
    format: &WeightFormat,
    clip: Clip,
) -> Result<(WeightParts, LayerReport)> {
    let (rows, cols) = matrix_dims(w.shape())?;
    let x = w.f32s(name)?;
    if let Some(v) = x.iter().find(|v| !v.is_finite()) {
        return Err(Error::Unsupported {
            op: "quantize".into(),
            what: format!("weight '{name}' holds {v}"),
            backend: "any".into(),
        });
    }
    let (clipped, mean_t) = match format {
        WeightFormat::Quant(q) => clip_weight(q, x, rows, cols, clip),
        _ => (x.to_vec(), 1.0),
    };
    let parts = format.encode(name, &Tensor::new(w.shape(), clipped)?)?;
    let decoded = format.decode(name, w.shape(), &parts)?;
    let d = decoded.f32s(name)?;
    let (mut signal, mut noise, mut max_err) = (0f64, 0f64, 0f32);
    for (&a, &b) in x.iter().zip(d) {
        let e = f64::from(a) - f64::from(b);
        signal += f64::from(a) * f64::from(a);
        noise += e * e;
        max_err = max_err.max((a - b).abs());
    }
    let sqnr_db = if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    };
    let layer = LayerReport {
        name: name.to_string(),
        format: format.label(),
        shape: w.shape().to_vec(),
        transposed: false,
        sqnr_db,
        max_abs_err: max_err,
        sum_sq: signal,
        clip: mean_t,
        bytes_before: x.len() * 4,
        bytes_after: format.stored_bytes(name, &parts),
    };
    Ok((parts, layer))
}

/// The weight with each scale group clipped as `clip` says, and the mean threshold relative to
/// the groups' max-abs. Groups are those `q` encodes: `ceil(cols / group)` runs of `group`
/// consecutive values along each row (the last may be short), or whole rows when `group` is 0.
fn clip_weight(q: &QuantSpec, x: &[f32], rows: usize, cols: usize, clip: Clip) -> (Vec<f32>, f32) {
    let mut out = x.to_vec();
    if clip == Clip::None {
        return (out, 1.0);
    }
    let gsize = if q.group == 0 { cols } else { q.group };
    let ngroups = cols.div_ceil(gsize);
    let mut tsum = 0f64;
    for r in 0..rows {
        for g in 0..ngroups {
            let range = r * cols + g * gsize..r * cols + ((g + 1) * gsize).min(cols);
            let xs = &x[range.clone()];
            let lo = xs.iter().fold(0f32, |a, &v| a.min(v));
            let hi = xs.iter().fold(0f32, |a, &v| a.max(v));
            let amax = hi.max(-lo);
            let bounds = match clip {
                _ if amax == 0.0 => None,
                Clip::None => None,
                Clip::Abs(a) => (a < amax).then_some((-a, a)),
                Clip::Percentile(p) => {
                    let a = percentile_abs(xs, p);
                    (a > 0.0 && a < amax).then_some((-a, a))
                }
                Clip::Mse => mse_bounds(q, xs, lo, hi),
            };
            let t = match bounds {
                Some((l, h)) => {
                    for v in &mut out[range] {
                        *v = v.clamp(l, h);
                    }
                    f64::from(h.max(-l)) / f64::from(amax)
                }
                None => 1.0,
            };
            tsum += t.min(1.0);
        }
    }
    (out, (tsum / (rows * ngroups) as f64) as f32)
}

/// The `p`-th percentile (nearest rank) of `|x|`.
fn percentile_abs(xs: &[f32], p: f32) -> f32 {
    let mut a: Vec<f32> = xs.iter().map(|v| v.abs()).collect();
    let rank = (f64::from(p) / 100.0 * a.len() as f64).ceil() as usize;
    let k = rank.clamp(1, a.len()) - 1;
    *a.select_nth_unstable_by(k, f32::total_cmp).1
}

/// Clip bounds for one group that minimise the squared quantize-dequantize error against the
/// unclipped values, or `None` when not clipping is best. Symmetric formats clip to `±t·max|x|`,
/// asymmetric ones scale both ends of `[min(x, 0), max(x, 0)]` by `t`.
fn mse_bounds(q: &QuantSpec, xs: &[f32], lo: f32, hi: f32) -> Option<(f32, f32)> {
    let amax = f64::from(hi.max(-lo));
    let bounds = |t: f64| -> (f32, f32) {
        if q.zero_points {
            ((f64::from(lo) * t) as f32, (f64::from(hi) * t) as f32)
        } else {
            let a = (amax * t) as f32;
            (-a, a)
        }
    };
    let mut best = (group_sse(q, xs, None), 1.0f64);
    let try_t = |t: f64, best: &mut (f64, f64)| {
        let e = group_sse(q, xs, Some(bounds(t)));
        if e < best.0 {
            *best = (e, t);
        }
    };
    if q.pow2 {
        // Clipping helps a power-of-two scale only when it lets the shift grow: the candidates
        // are the ranges the next few shifts can represent.
        let denom = f64::from(code_range(q).1);
        let span = if q.zero_points {
            f64::from(hi) - f64::from(lo)
        } else {
            amax
        };
        let n0 = pow2_shift(span, denom);
        for n in (n0 + 1..=n0 + 4).filter(|&n| n <= 127) {
            let t = denom * 2f64.powi(-n) / span;
            if t < 1.0 {
                try_t(t, &mut best);
            }
        }
    } else {
        // Coarse steps of 0.05 over [0.5, 1), then steps of 0.01 around the best.
        for i in 0..10 {
            try_t(0.5 + 0.05 * f64::from(i), &mut best);
        }
        let centre = (best.1 * 100.0).round() as i32;
        for c in (centre - 4..=centre + 4).filter(|&c| (50..100).contains(&c) && c % 5 != 0) {
            try_t(f64::from(c) / 100.0, &mut best);
        }
    }
    (best.1 < 1.0).then(|| bounds(best.1))
}

/// Inclusive code range, as the encoder uses it.
fn code_range(q: &QuantSpec) -> (i32, i32) {
    match (q.bits, q.zero_points) {
        (8, false) => (-127, 127),
        (8, true) => (0, 255),
        (_, false) => (-7, 7),
        (_, true) => (0, 15),
    }
}

/// The encoder's power-of-two shift: the largest `n` in -127..=127 with `span * 2^n <= denom`.
fn pow2_shift(span: f64, denom: f64) -> i32 {
    let guess = (denom / span).log2().floor().clamp(-127.0, 127.0);
    let mut n = if span > 0.0 { guess as i32 } else { 0 };
    while n > -127 && span * 2f64.powi(n) > denom {
        n -= 1;
    }
    while span > 0.0 && n < 127 && span * 2f64.powi(n + 1) <= denom {
        n += 1;
    }
    n
}

/// Squared error against `xs` of encoding `xs` clipped to `bounds`, computed exactly as
/// `WeightFormat::encode` and `decode` do for one group (scale rounded up to its stored dtype,
/// rounded zero point, clamped codes), so the search ranks candidates by the error the stored
/// weight will really have. Infinite when the scale does not fit its dtype.
fn group_sse(q: &QuantSpec, xs: &[f32], bounds: Option<(f32, f32)>) -> f64 {
    let c = |v: f32| bounds.map_or(v, |(l, h)| v.clamp(l, h));
    let lo = xs.iter().fold(0f64, |a, &v| a.min(c(v).into()));
    let hi = xs.iter().fold(0f64, |a, &v| a.max(c(v).into()));
    let (qlo, qhi) = code_range(q);
    let denom = f64::from(qhi);
    let span = if q.zero_points { hi - lo } else { hi.max(-lo) };
    let scale = if q.pow2 {
        2f64.powi(-pow2_shift(span, denom))
    } else {
        let s = if span > 0.0 { span / denom } else { 1.0 };
        if q.scale_dtype == DType::F16 {
            let h = f16::from_f64(s);
            let h = if h.to_f64() < s {
                f16::from_bits(h.to_bits() + 1)
            } else {
                h
            };
            if !h.is_finite() {
                return f64::INFINITY;
            }
            h.to_f64()
        } else {
            let f = s as f32;
            let f = if f64::from(f) < s {
                f32::from_bits(f.to_bits() + 1)
            } else {
                f
            };
            f64::from(f)
        }
    };
    let z = if q.zero_points {
        (-lo / scale).round().clamp(0.0, denom) as i32
    } else {
        0
    };
    xs.iter()
        .map(|&v| {
            let code = ((f64::from(c(v)) / scale).round() as i32 + z).clamp(qlo, qhi);
            let d = (f64::from(code - z) * scale) as f32;
            let e = f64::from(v) - f64::from(d);
            e * e
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bits: u8, group: usize, asym: bool, pow2: bool, f16s: bool) -> QuantSpec {
        QuantSpec {
            bits,
            group,
            zero_points: asym,
            pow2,
            scale_dtype: if f16s { DType::F16 } else { DType::F32 },
        }
    }

    /// The simulated error of a group equals the error of the real encode + decode, so the
    /// search optimises what gets stored.
    #[test]
    fn group_sse_matches_encode() {
        let w = Tensor::random(&[1, 37], 11);
        let x = w.f32s("w").unwrap();
        for q in [
            spec(8, 0, false, false, false),
            spec(8, 0, true, false, false),
            spec(4, 0, false, false, true),
            spec(4, 0, true, false, true),
            spec(8, 0, false, true, false),
            spec(8, 0, true, true, false),
        ] {
            for bounds in [None, Some((-0.6f32, 0.6f32)), Some((-0.3, 0.9))] {
                let fmt = WeightFormat::Quant(q);
                let clipped: Vec<f32> = x
                    .iter()
                    .map(|&v| bounds.map_or(v, |(l, h)| v.clamp(l, h)))
                    .collect();
                let t = Tensor::new(&[1, 37], clipped).unwrap();
                let parts = fmt.encode("w", &t).unwrap();
                let d = fmt.decode("w", &[1, 37], &parts).unwrap();
                let real: f64 = x
                    .iter()
                    .zip(d.f32s("d").unwrap())
                    .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                    .sum();
                let sim = group_sse(&q, x, bounds);
                assert!(
                    (real - sim).abs() <= 1e-12 * real.max(1e-30),
                    "{}: {real} vs {sim}",
                    fmt.label()
                );
            }
        }
    }

    /// Shapes no format can hold are reported, not quantized (valid models cannot have them,
    /// so the graph here is unchecked).
    #[test]
    fn empty_and_scalar_weights_are_skipped() {
        use crate::graph::{Node, ValueSpec};
        use crate::ops::MatMul;
        let spec = |name: &str, shape: &[usize]| ValueSpec {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
        };
        let node = |w: &str| Node {
            name: format!("mm_{w}"),
            op: Op::MatMul(MatMul::default()),
            inputs: vec!["x".into(), w.into()],
            output: format!("y_{w}"),
        };
        let graph = Graph {
            inputs: vec![spec("x", &[1, 4])],
            weights: vec![spec("empty", &[4, 0]), spec("scalar", &[])],
            nodes: vec![node("empty"), node("scalar")],
            outputs: vec!["y_empty".into()],
            formats: BTreeMap::new(),
            dims: BTreeMap::new(),
        };
        let weights = BTreeMap::from([
            ("empty".to_string(), Tensor::zeros(&[4, 0])),
            ("scalar".to_string(), Tensor::zeros(&[])),
        ]);
        let (targets, skipped) = select(&graph, &weights, &[]);
        assert!(targets.is_empty());
        assert_eq!(skipped.len(), 2);
        assert!(
            skipped[0].reason.contains("empty weight"),
            "{:?}",
            skipped[0]
        );
        assert!(skipped[1].reason.contains("rank-0"), "{:?}", skipped[1]);
    }

    #[test]
    fn percentile_nearest_rank() {
        let xs: Vec<f32> = (1..=100).map(|i| -(i as f32)).collect();
        assert_eq!(percentile_abs(&xs, 100.0), 100.0);
        assert_eq!(percentile_abs(&xs, 99.0), 99.0);
        assert_eq!(percentile_abs(&xs, 50.5), 51.0);
        assert_eq!(percentile_abs(&xs, 0.001), 1.0);
    }

    #[test]
    fn clip_parsing() {
        assert_eq!("mse".parse::<Clip>().unwrap(), Clip::Mse);
        assert_eq!("pct:99.9".parse::<Clip>().unwrap(), Clip::Percentile(99.9));
        assert_eq!("abs:0.5".parse::<Clip>().unwrap(), Clip::Abs(0.5));
        for bad in [
            "pct:0", "pct:101", "abs:-1", "abs:inf", "abs:x", "max", "pct:nan",
        ] {
            assert!(matches!(bad.parse::<Clip>(), Err(Error::Input(_))), "{bad}");
        }
    }
}
