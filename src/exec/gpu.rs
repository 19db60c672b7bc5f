//! Runs a `Plan` on a wgpu device. Everything is built once in `new` (buffers per memory slot,
//! constant buffers, packed weights, one uniform buffer, pipelines, bind groups, staging
//! buffers); a run writes the inputs, records every dispatch into one compute pass of one
//! command encoder, submits once and maps the outputs back once.

use crate::error::{Error, Result};
use crate::gpu::kernel::map_read;
use crate::gpu::GpuContext;
use crate::ops::{Bind, Pack};
use crate::sched::{Plan, ValueKind};
use crate::tensor::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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
    /// (buffer, offset, bytes) per graph input.
    inputs: Vec<(wgpu::Buffer, u64, u64)>,
    /// (buffer, offset, staging buffer, shape) per graph output.
    outputs: Vec<(wgpu::Buffer, u64, wgpu::Buffer, Vec<usize>)>,
    /// Bytes held by this executor's buffers (activations, weights, uniforms, staging).
    pub device_bytes: u64,
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
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
        let dummy = ctx.storage("dummy", 16);

        // Constants, packed as their kernels ask, uploaded once (shared when asked twice).
        let mut consts: HashMap<(usize, Option<Pack>), wgpu::Buffer> = HashMap::new();
        let mut textures: HashMap<(usize, Pack), wgpu::TextureView> = HashMap::new();
        for node in &plan.nodes {
            for d in &node.dispatches {
                for b in &d.bindings {
                    let (inp, pack, tex_width) = match *b {
                        Bind::Input(i) => (i, None, None),
                        Bind::Packed(i, p) => (i, Some(p), None),
                        Bind::Texture(i, p, w) => (i, Some(p), Some(w)),
                        _ => continue,
                    };
                    let v = node.inputs[inp];
                    let pv = &plan.values[v];
                    let done = match (tex_width, pack) {
                        (Some(_), Some(p)) => textures.contains_key(&(v, p)),
                        _ => consts.contains_key(&(v, pack)),
                    };
                    if pv.kind != ValueKind::Weight || done {
                        continue;
                    }
                    let t = weights
                        .get(&pv.name)
                        .ok_or_else(|| Error::MissingWeight(pv.name.clone()))?;
                    let data = t.f32s(&pv.name)?;
                    let packed;
                    let bytes: &[u8] = match pack {
                        Some(p) => {
                            packed = p.apply(data, t.shape());
                            bytemuck::cast_slice(&packed)
                        }
                        None => bytemuck::cast_slice(data),
                    };
                    device_bytes += bytes.len() as u64;
                    match (tex_width, pack) {
                        (Some(w), Some(p)) => {
                            textures.insert(
                                (v, p),
                                ctx.texture_rgba32f(&pv.name, bytemuck::cast_slice(bytes), w),
                            );
                        }
                        _ => {
                            consts.insert((v, pack), ctx.storage_with(&pv.name, bytes));
                        }
                    }
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
            match pv.kind {
                ValueKind::Weight => consts.get(&(v, None)).map(|b| (b, 0, pv.bytes)),
                _ => plan.memory.offset_of[v].map(|o| (&arena, o, pv.bytes)),
            }
        };
        let mut steps = Vec::new();
        let mut u = 0;
        // Node-private scratch textures, made before any bind group borrows them.
        let mut scratch: HashMap<(usize, usize), wgpu::TextureView> = HashMap::new();
        for (ni, node) in plan.nodes.iter().enumerate() {
            for b in node.dispatches.iter().flat_map(|d| &d.bindings) {
                if let Bind::ScratchStore(k, w, h, f) = *b {
                    scratch
                        .entry((ni, k))
                        .or_insert_with(|| ctx.scratch_texture(&node.name, w, h, f));
                }
            }
        }
        for (ni, node) in plan.nodes.iter().enumerate() {
            for d in &node.dispatches {
                let pipeline = ctx.pipeline(&d.shader, d.act)?;
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
                        _ => (&dummy, 0, 16),
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
            outputs.push((buf.clone(), off, staging, plan.values[v].shape.clone()));
        }
        Ok(GpuExecutor {
            ctx,
            steps,
            inputs,
            outputs,
            device_bytes,
        })
    }

    fn record(&self, enc: &mut wgpu::CommandEncoder) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("wgedge run"),
            timestamp_writes: None,
        });
        for s in &self.steps {
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.dispatch_workgroups(s.workgroups[0], s.workgroups[1], s.workgroups[2]);
        }
    }

    /// One full run: inputs (graph order, checked by the session) in, outputs out.
    pub async fn run(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let ctx = &self.ctx;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        for ((buf, off, bytes), t) in self.inputs.iter().zip(inputs) {
            let data = t.bytes();
            debug_assert_eq!(data.len() as u64, *bytes);
            ctx.queue.write_buffer(buf, *off, data);
        }
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgedge run"),
            });
        self.record(&mut enc);
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
        for (_, _, staging, shape) in &self.outputs {
            let data: Vec<f32> = {
                let view = staging
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| Error::Gpu(format!("reading outputs: {e}")))?;
                bytemuck::cast_slice::<u8, f32>(&view[..crate::tensor::numel(shape) * 4]).to_vec()
            };
            staging.unmap();
            out.push(Tensor::new(shape, data)?);
        }
        Ok(out)
    }

    /// Runs the recorded dispatches `iters` times on data already on the device and waits for
    /// completion (the "resident" benchmark mode).
    pub fn run_resident(&self, iters: usize) -> Result<()> {
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgedge resident"),
            });
        for _ in 0..iters {
            self.record(&mut enc);
        }
        self.ctx.queue.submit([enc.finish()]);
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
