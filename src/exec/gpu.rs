//! Runs a `Plan` on a wgpu device. Everything is built once in `new` (buffers per memory slot,
//! constant buffers, packed weights, one uniform buffer, pipelines, bind groups, staging
//! buffers); a run writes the inputs, records the dispatches into one command encoder, submits
//! once and maps the outputs back once.
//!
//! A plan with CPU nodes (ops, dtypes or weight formats no GPU kernel takes) is run in
//! segments: the GPU work before a CPU node is submitted together with copies of the node's
//! inputs into a readback buffer, the CPU reference computes the node, its output is written
//! back into the arena, and recording goes on in a new encoder.

use crate::error::{Error, Result};
use crate::gpu::kernel::map_read;
use crate::gpu::GpuContext;
use crate::ops::quant::{self, QPart};
use crate::ops::sparse::{self, SPart};
use crate::ops::{Bind, Op, Pack};
use crate::sched::{Placement, Plan, ValueKind};
use crate::tensor::{Tensor, ValueType};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// An input of a CPU node: a constant kept on the host, or a range of the arena read back.
enum HopInput {
    Host(Tensor),
    Arena {
        offset: u64,
        /// Bytes copied (the value's bytes rounded up to 4) and where in the readback buffer.
        copy: u64,
        at: u64,
        ty: ValueType,
    },
}

/// A node the CPU runs in the middle of a GPU plan.
struct CpuHop {
    op: Op,
    /// The CPU kernel the plan named (fast or reference).
    kernel: String,
    /// Weights read as stored (packed), so the output type is the plan's, not inferred from
    /// the inputs.
    out_ty: Option<ValueType>,
    inputs: Vec<HopInput>,
    /// Holds the arena inputs between submit and read.
    readback: Option<wgpu::Buffer>,
    out_offset: u64,
}

enum Segment {
    /// Steps `start..end` recorded into one compute pass.
    Gpu(usize, usize),
    /// Boxed: a hop is much larger than a GPU segment.
    Cpu(Box<CpuHop>),
}

struct Step {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// Index of the plan node this dispatch belongs to.
    node: usize,
}

pub struct GpuExecutor {
    ctx: Arc<GpuContext>,
    steps: Vec<Step>,
    segments: Vec<Segment>,
    /// The activation arena (CPU nodes write their outputs into it).
    arena: wgpu::Buffer,
    /// (buffer, offset, bytes) per graph input.
    inputs: Vec<(wgpu::Buffer, u64, u64)>,
    /// (buffer, offset, staging buffer, dtype and shape) per graph output.
    outputs: Vec<(wgpu::Buffer, u64, wgpu::Buffer, ValueType)>,
    /// Bytes held by this executor's buffers (activations, weights, uniforms, staging).
    pub device_bytes: u64,
    /// Of those, the weights' (dense, re-laid-out, or packed as stored).
    pub weight_bytes: u64,
    /// One run at a time: runs share the arena, the readback and the staging buffers.
    lock: RunLock,
    /// The threads the CPU nodes' kernels run on (the session's, [`GpuExecutor::set_cpu_pool`];
    /// rayon's global pool until set).
    cpu_pool: crate::cpu::Pool,
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// `data` zero-padded to a multiple of 4 bytes (buffer writes and copies move whole words).
fn padded4(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if data.len().is_multiple_of(4) {
        std::borrow::Cow::Borrowed(data)
    } else {
        let mut v = data.to_vec();
        v.resize(align(data.len() as u64, 4) as usize, 0);
        std::borrow::Cow::Owned(v)
    }
}

impl GpuExecutor {
    /// Builds every GPU resource the plan needs. Errors from wgpu are captured and returned.
    pub async fn new(
        ctx: Arc<GpuContext>,
        plan: &Plan,
        weights: &BTreeMap<String, Tensor>,
    ) -> Result<GpuExecutor> {
        let c = ctx.clone();
        let exec = c
            .scoped("building the session's GPU resources", || {
                Self::build(ctx, plan, weights)
            })
            .await?;
        Ok(exec)
    }

    fn build(
        ctx: Arc<GpuContext>,
        plan: &Plan,
        weights: &BTreeMap<String, Tensor>,
    ) -> Result<GpuExecutor> {
        let mut device_bytes = 0u64;
        let arena = ctx.storage("activations", plan.memory.peak_bytes);
        device_bytes += plan.memory.peak_bytes;
        // Unused operand bindings (no bias, no residual) get their own 16-byte slot each, at
        // the storage offset alignment: WebGPU rejects a dispatch that binds overlapping ranges
        // of one buffer to two writable bindings, and every storage binding is read_write.
        let dummy_stride = (ctx.profile.limits.min_storage_buffer_offset_alignment as u64).max(16);
        let dummy_slots = (plan.nodes.iter().flat_map(|n| &n.dispatches))
            .map(|d| d.bindings.len() as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let dummy = ctx.storage("dummy", dummy_stride * dummy_slots);
        device_bytes += dummy_stride * dummy_slots;

        // The value whose memory `v` is (reshape/flatten outputs alias their input's).
        let root = |v: usize| plan.values[v].alias_of.unwrap_or(v);
        // A constant as the node sees it: the weight, viewed with the (aliased) value's shape.
        let host_weight = |v: usize| -> Result<Tensor> {
            let r = &plan.values[root(v)];
            let t = weights
                .get(&r.name)
                .ok_or_else(|| Error::MissingWeight(r.name.clone()))?;
            t.clone().reshaped(&plan.values[v].shape)
        };
        // Constants, packed as their kernels ask, uploaded once (shared when asked twice).
        // Unpacked ones are keyed by their root (aliases share the buffer), packed ones by the
        // value (the packing depends on the shape it is viewed with).
        let mut consts: HashMap<(usize, Option<Pack>), wgpu::Buffer> = HashMap::new();
        let mut textures: HashMap<(usize, Pack), wgpu::TextureView> = HashMap::new();
        // Which constants are read how: by GPU dispatches, and graph outputs that are weights.
        let mut wanted: Vec<(usize, Option<Pack>, Option<u32>)> = Vec::new();
        for node in plan.nodes.iter().filter(|n| n.placement == Placement::Gpu) {
            for d in &node.dispatches {
                for b in &d.bindings {
                    match *b {
                        Bind::Input(i) => wanted.push((node.inputs[i], None, None)),
                        Bind::Packed(i, p) => wanted.push((node.inputs[i], Some(p), None)),
                        Bind::Texture(i, p, w) => wanted.push((node.inputs[i], Some(p), Some(w))),
                        _ => {}
                    }
                }
            }
        }
        wanted.extend(plan.outputs.iter().map(|&v| (v, None, None)));
        // Packed weights read as stored (quantised codes, scales), keyed by the weight.
        let mut qbufs: HashMap<(usize, QPart), wgpu::Buffer> = HashMap::new();
        // Textures keyed by (weight, part, normalised format?).
        let mut qtexs: HashMap<(usize, QPart, bool), wgpu::TextureView> = HashMap::new();
        let mut weight_bytes = 0u64;
        for node in plan.nodes.iter().filter(|n| n.placement == Placement::Gpu) {
            for b in node.dispatches.iter().flat_map(|d| &d.bindings) {
                let (i, part, tex, norm) = match *b {
                    Bind::Quant(i, part) => (i, part, false, false),
                    Bind::QuantTex(i, part) => (i, part, true, false),
                    Bind::QuantTexNorm(i) => (i, QPart::CodesKn, true, true),
                    _ => continue,
                };
                let r = root(node.inputs[i]);
                let done = if tex {
                    qtexs.contains_key(&(r, part, norm))
                } else {
                    qbufs.contains_key(&(r, part))
                };
                let pv = &plan.values[r];
                if done || pv.kind != ValueKind::Weight {
                    continue;
                }
                let words = quant::pack_part(part, &pv.format, &pv.name, &pv.shape, weights)?;
                weight_bytes += words.len() as u64 * 4;
                if tex && norm {
                    // The K-major texels' bytes, 4 (int8) or 8 (f16) bytes a texel: one k of 4
                    // rows, converted to f32 by the texture unit.
                    let lay = quant::QLayout::of(&pv.format, &pv.shape).map_err(Error::Gpu)?;
                    let format = match (lay.bits, lay.zero) {
                        (8, false) => wgpu::TextureFormat::Rgba8Snorm,
                        (8, true) => wgpu::TextureFormat::Rgba8Unorm,
                        (16, _) => wgpu::TextureFormat::Rgba16Float,
                        _ => {
                            return Err(Error::Gpu(format!(
                                "no normalised texture for {}",
                                pv.format.label()
                            )))
                        }
                    };
                    let width = (lay.n4s() * lay.vpt() / 4) as u32;
                    let bytes: &[u8] = bytemuck::cast_slice(&words);
                    let view = ctx.texture_rgba(&pv.name, bytes, width, format);
                    qtexs.insert((r, part, norm), view);
                } else if tex {
                    let lay = quant::QLayout::of(&pv.format, &pv.shape).map_err(Error::Gpu)?;
                    let width = lay.texture_width(part) as u32;
                    let view = ctx.texture_rgba32u(&pv.name, &words, width);
                    qtexs.insert((r, part, norm), view);
                } else {
                    let buf = ctx.storage_with(&pv.name, bytemuck::cast_slice(&words));
                    qbufs.insert((r, part), buf);
                }
            }
        }
        // Sparse weights read as stored (row pointers, indices, values, scales), keyed by the
        // weight.
        let mut sbufs: HashMap<(usize, SPart), wgpu::Buffer> = HashMap::new();
        let mut stexs: HashMap<(usize, SPart), wgpu::TextureView> = HashMap::new();
        for node in plan.nodes.iter().filter(|n| n.placement == Placement::Gpu) {
            for b in node.dispatches.iter().flat_map(|d| &d.bindings) {
                let (i, part, tex) = match *b {
                    Bind::Sparse(i, part) => (i, part, false),
                    Bind::SparseTex(i, part) => (i, part, true),
                    _ => continue,
                };
                let r = root(node.inputs[i]);
                let pv = &plan.values[r];
                let done = if tex {
                    stexs.contains_key(&(r, part))
                } else {
                    sbufs.contains_key(&(r, part))
                };
                if done || pv.kind != ValueKind::Weight {
                    continue;
                }
                let words = sparse::pack_part(part, &pv.format, &pv.name, &pv.shape, weights)?;
                if tex {
                    // One row when it fits (no padding), else rows of TEX_WIDTH texels.
                    let texels = words.len().div_ceil(4).max(1);
                    let width = texels.min(sparse::TEX_WIDTH);
                    weight_bytes += (texels.div_ceil(width) * width * 16) as u64;
                    let view = ctx.texture_rgba32u(&pv.name, &words, width as u32);
                    stexs.insert((r, part), view);
                } else {
                    weight_bytes += words.len() as u64 * 4;
                    let buf = ctx.storage_with(&pv.name, bytemuck::cast_slice(&words));
                    sbufs.insert((r, part), buf);
                }
            }
        }
        for (v, pack, tex_width) in wanted {
            let key = if pack.is_some() { v } else { root(v) };
            let pv = &plan.values[v];
            let done = match (tex_width, pack) {
                (Some(_), Some(p)) => textures.contains_key(&(key, p)),
                _ => consts.contains_key(&(key, pack)),
            };
            if plan.values[root(v)].kind != ValueKind::Weight || done {
                continue;
            }
            let t = host_weight(v)?;
            let packed;
            let bytes: &[u8] = match pack {
                Some(p) => {
                    packed = p.apply(t.f32s(&pv.name)?, t.shape());
                    bytemuck::cast_slice(&packed)
                }
                // Unpacked constants go up as their bytes, whatever the dtype.
                None => t.bytes(),
            };
            weight_bytes += bytes.len() as u64;
            match (tex_width, pack) {
                (Some(w), Some(p)) => {
                    textures.insert(
                        (key, p),
                        ctx.texture_rgba32f(&pv.name, bytemuck::cast_slice(bytes), w),
                    );
                }
                _ => {
                    consts.insert((key, pack), ctx.storage_with(&pv.name, &padded4(bytes)));
                }
            }
        }

        // All uniform parameters in one buffer at aligned offsets.
        let ualign = ctx
            .profile
            .limits
            .min_uniform_buffer_offset_alignment
            .max(16) as u64;
        let mut uniform_data: Vec<u8> = Vec::new();
        let mut uoffsets = Vec::new();
        for d in plan.nodes.iter().flat_map(|n| &n.dispatches) {
            let off = align(uniform_data.len() as u64, ualign);
            uniform_data.resize(off as usize, 0);
            uniform_data.extend_from_slice(bytemuck::cast_slice(&d.params));
            let padded = align(uniform_data.len() as u64, 16);
            uniform_data.resize(padded as usize, 0);
            uoffsets.push((off, padded - off));
        }
        let uniform = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: (uniform_data.len() as u64).max(16),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !uniform_data.is_empty() {
            ctx.queue.write_buffer(&uniform, 0, &uniform_data);
        }
        device_bytes += uniform_data.len() as u64;

        // (buffer, offset, bytes) holding each value.
        let value_buf = |v: usize| -> Option<(&wgpu::Buffer, u64, u64)> {
            let pv = &plan.values[v];
            match plan.values[root(v)].kind {
                ValueKind::Weight => consts.get(&(root(v), None)).map(|b| (b, 0, pv.bytes)),
                _ => plan.memory.offset_of[v].map(|o| (&arena, o, pv.bytes)),
            }
        };
        let mut steps = Vec::new();
        let mut u = 0;
        // Node-private scratch textures, made before any bind group borrows them.
        let mut scratch: HashMap<(usize, usize), wgpu::TextureView> = HashMap::new();
        // Node-private scratch buffers (written as storage, read as a uniform).
        let mut scratch_bufs: HashMap<(usize, usize), wgpu::Buffer> = HashMap::new();
        for (ni, node) in plan.nodes.iter().enumerate() {
            for b in node.dispatches.iter().flat_map(|d| &d.bindings) {
                if let Bind::ScratchStore(k, w, h, f) = *b {
                    scratch
                        .entry((ni, k))
                        .or_insert_with(|| ctx.scratch_texture(&node.name, w, h, f));
                }
                if let Bind::ScratchBuf(k, words) = *b {
                    let size = align(u64::from(words.max(4)) * 4, 16);
                    scratch_bufs.entry((ni, k)).or_insert_with(|| {
                        device_bytes += size;
                        ctx.device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some(&node.name),
                            size,
                            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
                            mapped_at_creation: false,
                        })
                    });
                }
            }
        }
        for (ni, node) in plan.nodes.iter().enumerate() {
            for d in &node.dispatches {
                let pipeline = ctx.pipeline(&d.shader, &d.overrides)?;
                let layout = pipeline.get_bind_group_layout(0);
                let (uoff, usize_) = uoffsets[u];
                u += 1;
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniform,
                        offset: uoff,
                        size: wgpu::BufferSize::new(usize_),
                    }),
                }];
                let mut dummies = 0u64;
                for (i, b) in d.bindings.iter().enumerate() {
                    let view = match *b {
                        Bind::Texture(k, p, _) => {
                            Some(textures.get(&(node.inputs[k], p)).ok_or_else(|| {
                                Error::Gpu(format!(
                                    "node '{}': texture input {k} missing",
                                    node.name
                                ))
                            })?)
                        }
                        Bind::QuantTexNorm(k) => Some(
                            qtexs
                                .get(&(root(node.inputs[k]), QPart::CodesKn, true))
                                .ok_or_else(|| {
                                    Error::Gpu(format!(
                                        "node '{}': packed texture input {k} missing",
                                        node.name
                                    ))
                                })?,
                        ),
                        Bind::SparseTex(k, part) => {
                            Some(stexs.get(&(root(node.inputs[k]), part)).ok_or_else(|| {
                                Error::Gpu(format!(
                                    "node '{}': sparse texture input {k} missing",
                                    node.name
                                ))
                            })?)
                        }
                        Bind::QuantTex(k, part) => {
                            Some(qtexs.get(&(root(node.inputs[k]), part, false)).ok_or_else(
                                || {
                                    Error::Gpu(format!(
                                        "node '{}': packed texture input {k} missing",
                                        node.name
                                    ))
                                },
                            )?)
                        }
                        Bind::ScratchStore(k, ..) | Bind::ScratchRead(k) => {
                            Some(scratch.get(&(ni, k)).ok_or_else(|| {
                                Error::Gpu(format!(
                                    "node '{}': scratch texture {k} read before written",
                                    node.name
                                ))
                            })?)
                        }
                        _ => None,
                    };
                    if let Some(view) = view {
                        entries.push(wgpu::BindGroupEntry {
                            binding: i as u32 + 1,
                            resource: wgpu::BindingResource::TextureView(view),
                        });
                        continue;
                    }
                    let (buffer, offset, size) = match *b {
                        Bind::Input(k) => value_buf(node.inputs[k]).ok_or_else(|| {
                            Error::Gpu(format!("node '{}': input {k} has no buffer", node.name))
                        })?,
                        Bind::Output => value_buf(node.output).ok_or_else(|| {
                            Error::Gpu(format!("node '{}': output has no buffer", node.name))
                        })?,
                        Bind::Packed(k, p) => {
                            let b = consts.get(&(node.inputs[k], Some(p))).ok_or_else(|| {
                                Error::Gpu(format!(
                                    "node '{}': packed input {k} missing",
                                    node.name
                                ))
                            })?;
                            (b, 0, b.size())
                        }
                        Bind::Quant(k, part) => {
                            let b = qbufs.get(&(root(node.inputs[k]), part)).ok_or_else(|| {
                                Error::Gpu(format!(
                                    "node '{}': packed input {k} missing",
                                    node.name
                                ))
                            })?;
                            (b, 0, b.size())
                        }
                        Bind::ScratchBuf(k, _) | Bind::ScratchUniform(k) => {
                            let b = scratch_bufs.get(&(ni, k)).ok_or_else(|| {
                                Error::Gpu(format!(
                                    "node '{}': scratch buffer {k} read before written",
                                    node.name
                                ))
                            })?;
                            (b, 0, b.size())
                        }
                        Bind::Sparse(k, part) => {
                            let b = sbufs.get(&(root(node.inputs[k]), part)).ok_or_else(|| {
                                Error::Gpu(format!(
                                    "node '{}': sparse input {k} missing",
                                    node.name
                                ))
                            })?;
                            (b, 0, b.size())
                        }
                        _ => {
                            dummies += 1;
                            (&dummy, (dummies - 1) * dummy_stride, 16)
                        }
                    };
                    entries.push(wgpu::BindGroupEntry {
                        binding: i as u32 + 1,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer,
                            offset,
                            size: wgpu::BufferSize::new(align(size.max(4), 4)),
                        }),
                    });
                }
                let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&node.name),
                    layout: &layout,
                    entries: &entries,
                });
                steps.push(Step {
                    pipeline,
                    bind_group,
                    workgroups: d.workgroups,
                    node: ni,
                });
            }
        }

        // Segments: runs of GPU steps between CPU nodes.
        let mut segments = Vec::new();
        let mut first = 0;
        for (ni, node) in plan.nodes.iter().enumerate() {
            if node.placement != Placement::Cpu {
                continue;
            }
            let upto = steps.iter().take_while(|s| s.node < ni).count();
            if upto > first {
                segments.push(Segment::Gpu(first, upto));
            }
            first = upto;
            let mut inputs = Vec::new();
            let mut at = 0u64;
            for &v in &node.inputs {
                let pv = &plan.values[v];
                if pv.cpu_packed {
                    // A packed CPU kernel reads the weight as stored: descriptor and parts.
                    for n in crate::ops::cpu_fast::packed_names(&pv.name, &pv.format) {
                        let t = weights
                            .get(&n)
                            .ok_or_else(|| Error::MissingWeight(n.clone()))?;
                        inputs.push(HopInput::Host(t.clone()));
                    }
                    continue;
                }
                if plan.values[root(v)].kind == ValueKind::Weight {
                    inputs.push(HopInput::Host(host_weight(v)?));
                    continue;
                }
                let offset = plan.memory.offset_of[v].ok_or_else(|| {
                    Error::Gpu(format!(
                        "node '{}': input '{}' has no range",
                        node.name, pv.name
                    ))
                })?;
                let copy = align(pv.bytes, 4);
                inputs.push(HopInput::Arena {
                    offset,
                    copy,
                    at,
                    ty: pv.value_type(),
                });
                at += copy;
            }
            let readback = (at > 0).then(|| {
                device_bytes += at;
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&node.name),
                    size: at,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
            let out_offset = plan.memory.offset_of[node.output]
                .ok_or_else(|| Error::Gpu(format!("node '{}': output has no range", node.name)))?;
            segments.push(Segment::Cpu(Box::new(CpuHop {
                op: node.op.clone(),
                kernel: node.kernel.clone(),
                out_ty: (node.inputs.iter().any(|&v| plan.values[v].cpu_packed))
                    .then(|| plan.values[node.output].value_type()),
                inputs,
                readback,
                out_offset,
            })));
        }
        if steps.len() > first {
            segments.push(Segment::Gpu(first, steps.len()));
        }

        let inputs = plan
            .inputs
            .iter()
            .map(|&v| {
                value_buf(v)
                    .map(|(b, o, s)| (b.clone(), o, s))
                    .ok_or_else(|| Error::Gpu("graph input without a buffer".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut outputs = Vec::new();
        for &v in &plan.outputs {
            let (buf, off, bytes) =
                value_buf(v).ok_or_else(|| Error::Gpu("graph output without a buffer".into()))?;
            let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("staging"),
                size: align(bytes, 4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            device_bytes += bytes;
            outputs.push((buf.clone(), off, staging, plan.values[v].value_type()));
        }
        Ok(GpuExecutor {
            ctx,
            steps,
            segments,
            arena,
            inputs,
            outputs,
            device_bytes: device_bytes + weight_bytes,
            weight_bytes,
            lock: RunLock::default(),
            cpu_pool: crate::cpu::Pool::new(None),
        })
    }

    /// Runs the CPU nodes' kernels on `pool` (the session's `SessionOptions::threads`).
    pub fn set_cpu_pool(&mut self, pool: crate::cpu::Pool) {
        self.cpu_pool = pool;
    }

    fn record(&self, enc: &mut wgpu::CommandEncoder, steps: &[Step]) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("wgedge run"),
            timestamp_writes: None,
        });
        for s in steps {
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.dispatch_workgroups(s.workgroups[0], s.workgroups[1], s.workgroups[2]);
        }
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgedge run"),
            })
    }

    /// Records every segment into `enc`; at each CPU node submits what was recorded, runs the
    /// node on the CPU and continues in a new encoder, which it returns.
    async fn execute(&self, mut enc: wgpu::CommandEncoder) -> Result<wgpu::CommandEncoder> {
        let ctx = &self.ctx;
        for seg in &self.segments {
            let hop = match seg {
                Segment::Gpu(a, b) => {
                    self.record(&mut enc, &self.steps[*a..*b]);
                    continue;
                }
                Segment::Cpu(hop) => hop,
            };
            if let Some(rb) = &hop.readback {
                for inp in &hop.inputs {
                    if let HopInput::Arena {
                        offset, copy, at, ..
                    } = inp
                    {
                        enc.copy_buffer_to_buffer(&self.arena, *offset, rb, *at, *copy);
                    }
                }
            }
            ctx.queue.submit([enc.finish()]);
            let mut arena_ins = Vec::new();
            if let Some(rb) = &hop.readback {
                map_read(ctx, &[rb]).await?;
                {
                    let view = rb
                        .slice(..)
                        .get_mapped_range()
                        .map_err(|e| Error::Gpu(format!("reading CPU node inputs: {e}")))?;
                    for inp in &hop.inputs {
                        if let HopInput::Arena { at, ty, .. } = inp {
                            // Planned values have byte counts that fit (checked at plan time).
                            let n = usize::try_from(ty.bytes().unwrap_or(u64::MAX))
                                .map_err(|_| Error::Gpu(format!("{ty} too large to read")))?;
                            let at = *at as usize;
                            arena_ins.push(Tensor::from_bytes(
                                ty.dtype,
                                &ty.shape,
                                &view[at..at + n],
                            )?);
                        }
                    }
                }
                rb.unmap();
            }
            let mut from_arena = arena_ins.iter();
            let ins: Vec<&Tensor> = hop
                .inputs
                .iter()
                .map(|i| match i {
                    HopInput::Host(t) => Ok(t),
                    HopInput::Arena { .. } => from_arena
                        .next()
                        .ok_or_else(|| Error::Gpu("CPU node input missing".into())),
                })
                .collect::<Result<_>>()?;
            let out = self.cpu_pool.install(|| match &hop.out_ty {
                Some(ty) => hop.op.run_cpu_as(&hop.kernel, &ins, ty),
                None => hop.op.run_cpu(&hop.kernel, &ins),
            })?;
            // Ordered before everything submitted later, after everything submitted before.
            ctx.queue
                .write_buffer(&self.arena, hop.out_offset, &padded4(out.bytes()));
            enc = self.encoder();
        }
        Ok(enc)
    }

    /// One full run: inputs (graph order, checked by the session) in, outputs out.
    pub async fn run(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let _one_at_a_time = self.lock.lock().await;
        let ctx = &self.ctx;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        for ((buf, off, bytes), t) in self.inputs.iter().zip(inputs) {
            let data = t.bytes();
            debug_assert_eq!(data.len() as u64, *bytes);
            ctx.queue.write_buffer(buf, *off, &padded4(data));
        }
        let executed = self.execute(self.encoder()).await;
        let mut enc = match executed {
            Ok(enc) => enc,
            Err(e) => {
                scope.pop().await;
                return Err(e);
            }
        };
        for (src, off, staging, _) in &self.outputs {
            enc.copy_buffer_to_buffer(src, *off, staging, 0, staging.size());
        }
        ctx.queue.submit([enc.finish()]);
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("run: {e}")));
        }
        let stagings: Vec<&wgpu::Buffer> = self.outputs.iter().map(|o| &o.2).collect();
        map_read(ctx, &stagings).await?;
        let mut out = Vec::with_capacity(self.outputs.len());
        for (_, _, staging, ty) in &self.outputs {
            let t = {
                let view = staging
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| Error::Gpu(format!("reading outputs: {e}")))?;
                usize::try_from(ty.bytes().unwrap_or(u64::MAX))
                    .map_err(|_| Error::Gpu(format!("output {ty} too large to read")))
                    .and_then(|n| Tensor::from_bytes(ty.dtype, &ty.shape, &view[..n]))
            };
            staging.unmap();
            out.push(t?);
        }
        Ok(out)
    }

    /// Runs the plan `iters` times on data already on the device and waits for completion
    /// (the "resident" benchmark mode; CPU nodes read back and write as in a run).
    pub fn run_resident(&self, iters: usize) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        let _one_at_a_time = pollster::block_on(self.lock.lock());
        #[cfg(target_arch = "wasm32")]
        let _one_at_a_time = self.lock.try_lock().ok_or_else(|| Error::Unsupported {
            op: "run_resident".into(),
            what: "a resident run while another run is in flight".into(),
            backend: "webgpu".into(),
        })?;
        let scope = self
            .ctx
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = self.encoder();
        for _ in 0..iters {
            #[cfg(not(target_arch = "wasm32"))]
            {
                enc = pollster::block_on(self.execute(enc))?;
            }
            #[cfg(target_arch = "wasm32")]
            {
                // The browser cannot block on the readbacks of CPU nodes.
                if self.segments.iter().any(|s| matches!(s, Segment::Cpu(_))) {
                    return Err(Error::Unsupported {
                        op: "run_resident".into(),
                        what: "plans with CPU nodes".into(),
                        backend: "webgpu".into(),
                    });
                }
                for seg in &self.segments {
                    if let Segment::Gpu(a, b) = seg {
                        self.record(&mut enc, &self.steps[*a..*b]);
                    }
                }
            }
        }
        self.ctx.queue.submit([enc.finish()]);
        // Captured, so a validation error is returned rather than reaching wgpu's default
        // handler (which panics). On the web the scope is popped and its errors dropped.
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("resident run: {e}")));
        }
        #[cfg(target_arch = "wasm32")]
        drop(scope);
        self.ctx.wait_idle()
    }

    /// GPU time of each plan node (ms) for one run on the inputs already uploaded, from
    /// timestamp queries around each dispatch (one compute pass per dispatch, so the numbers
    /// include the pass boundaries). `Unsupported` without the TIMESTAMP_QUERY feature.
    pub async fn node_times(&self, nodes: usize) -> Result<Vec<f64>> {
        let ctx = &self.ctx;
        if !ctx.profile.features.timestamp_query {
            return Err(Error::Unsupported {
                op: "node_times".into(),
                what: "timestamp queries (the adapter lacks TIMESTAMP_QUERY)".into(),
                backend: ctx.profile.backend.clone(),
            });
        }
        let n = self
            .steps
            .len()
            .min(wgpu::QUERY_SET_MAX_QUERIES as usize / 2);
        if n == 0 {
            return Ok(vec![0.0; nodes]);
        }
        let _one_at_a_time = self.lock.lock().await;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let count = 2 * n as u32;
        let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("node times"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = count as u64 * 8;
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgedge node times"),
            });
        for (i, s) in self.steps.iter().take(n).enumerate() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("node"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &qs,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.dispatch_workgroups(s.workgroups[0], s.workgroups[1], s.workgroups[2]);
        }
        enc.resolve_query_set(&qs, 0..count, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
        ctx.queue.submit([enc.finish()]);
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("node times: {e}")));
        }
        map_read(ctx, &[&read]).await?;
        let ticks: Vec<u64> = {
            let view = read
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading timestamps: {e}")))?;
            bytemuck::cast_slice::<u8, u64>(&view).to_vec()
        };
        read.unmap();
        let ns_per_tick = ctx.queue.get_timestamp_period() as f64;
        // CPU nodes are not timed here (0 ms).
        let mut out = vec![0.0; nodes];
        for (i, s) in self.steps.iter().take(n).enumerate() {
            let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * ns_per_tick;
            if let Some(t) = out.get_mut(s.node) {
                *t += dt / 1e6;
            }
        }
        Ok(out)
    }

    /// Number of dispatches in one run.
    pub fn dispatch_count(&self) -> usize {
        self.steps.len()
    }
}

/// A lock whose waiting is a future (a run is async and awaits inside; a std mutex guard held
/// across an await would block the browser's only thread and trips clippy's await lint).
/// Waiters are all woken on release and race for it again: fair enough for a handful of threads
/// sharing one session.
#[derive(Default)]
struct RunLock {
    state: std::sync::Mutex<(bool, Vec<std::task::Waker>)>,
}

struct RunGuard<'a>(&'a RunLock);

impl RunLock {
    #[cfg(target_arch = "wasm32")]
    fn try_lock(&self) -> Option<RunGuard<'_>> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 {
            None
        } else {
            s.0 = true;
            Some(RunGuard(self))
        }
    }

    async fn lock(&self) -> RunGuard<'_> {
        std::future::poll_fn(|cx| {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.0 {
                s.1.push(cx.waker().clone());
                std::task::Poll::Pending
            } else {
                s.0 = true;
                std::task::Poll::Ready(RunGuard(self))
            }
        })
        .await
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        let waiters = {
            let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            s.0 = false;
            std::mem::take(&mut s.1)
        };
        for w in waiters {
            w.wake();
        }
    }
}
