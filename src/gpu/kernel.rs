//! Pipeline cache keyed by shader + const header + activation, and buffer helpers.

use super::shader::{Overrides, ShaderKey, TexFormat};
use super::GpuContext;
use crate::error::Result;
use std::collections::HashMap;
use std::sync::Mutex;

/// A shader module plus the values of its pipeline-overridable constants.
type PipelineKey = (ShaderKey, Vec<(&'static str, u64)>);

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<ShaderKey, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

impl GpuContext {
    /// The compute pipeline for `shader` with pipeline constants `overrides`, built once per
    /// context. The WGSL is validated by naga first so a bad kernel is an `Error::ShaderCompile`.
    pub fn pipeline(
        &self,
        shader: &ShaderKey,
        overrides: &Overrides,
    ) -> Result<wgpu::ComputePipeline> {
        let key = (shader.clone(), overrides.key());
        if let Some(p) = self.kernels.pipelines.lock().map_err(poisoned)?.get(&key) {
            return Ok(p.clone());
        }
        let module = {
            let mut mods = self.kernels.modules.lock().map_err(poisoned)?;
            match mods.get(shader) {
                Some(m) => m.clone(),
                None => {
                    let parsed = super::shader::validate(shader)?;
                    super::shader::check_workgroup_limits(
                        &parsed,
                        &shader.label(),
                        &self.profile.limits,
                    )?;
                    let m = self
                        .device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(&shader.label()),
                            source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                        });
                    mods.insert(shader.clone(), m.clone());
                    m
                }
            }
        };
        let constants: Vec<(&str, f64)> = overrides.0.to_vec();
        let p = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&shader.label()),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        self.kernels
            .pipelines
            .lock()
            .map_err(poisoned)?
            .insert(key, p.clone());
        Ok(p)
    }

    /// A storage buffer initialised with `data` (a multiple of 4 bytes; padded to at least 16).
    pub fn storage_with(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let buf = self.storage(label, data.len() as u64);
        if !data.is_empty() {
            self.queue.write_buffer(&buf, 0, data);
        }
        buf
    }

    /// An rgba32float texture `width` texels wide holding `data` (4 floats per texel), as a view.
    pub fn texture_rgba32f(&self, label: &str, data: &[f32], width: u32) -> wgpu::TextureView {
        self.texture_rgba(
            label,
            bytemuck::cast_slice(data),
            width,
            wgpu::TextureFormat::Rgba32Float,
        )
    }

    /// An rgba32uint texture `width` texels wide holding `data` (4 words per texel): packed
    /// weight codes for kernels that gather them through the texture path.
    pub fn texture_rgba32u(&self, label: &str, data: &[u32], width: u32) -> wgpu::TextureView {
        self.texture_rgba(
            label,
            bytemuck::cast_slice(data),
            width,
            wgpu::TextureFormat::Rgba32Uint,
        )
    }

    /// A 2-D texture of `format` (an uncompressed colour format) `width` texels wide holding
    /// `data`, zero-padded to whole rows.
    pub fn texture_rgba(
        &self,
        label: &str,
        data: &[u8],
        width: u32,
        format: wgpu::TextureFormat,
    ) -> wgpu::TextureView {
        let texel = format.block_copy_size(None).unwrap_or(16);
        let width = width.max(1);
        let height = (data.len() as u32 / texel).div_ceil(width).max(1);
        let size = wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        };
        let tex = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let mut texels = data.to_vec();
        texels.resize((width * height * texel) as usize, 0);
        self.queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &tex,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            &texels,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(width * texel),
                rows_per_image: Some(height),
            },
            size,
        );
        tex.create_view(&wgpu::TextureViewDescriptor::default())
    }

    /// An uninitialised rgba32float texture a kernel writes (storage) and another reads.
    pub fn scratch_texture(
        &self,
        label: &str,
        width: u32,
        height: u32,
        format: TexFormat,
    ) -> wgpu::TextureView {
        let tex = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width: width.max(1),
                height: height.max(1),
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: match format {
                TexFormat::Rgba32F => wgpu::TextureFormat::Rgba32Float,
                TexFormat::R32F => wgpu::TextureFormat::R32Float,
                TexFormat::Rgba32U => wgpu::TextureFormat::Rgba32Uint,
            },
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING,
            view_formats: &[],
        });
        tex.create_view(&wgpu::TextureViewDescriptor::default())
    }

    /// An uninitialised storage buffer of `bytes` (at least 16).
    pub fn storage(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).div_ceil(4) * 4,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> crate::Error {
    crate::Error::Gpu("pipeline cache lock poisoned".into())
}

/// Maps `buffer` for reading and waits for it (polling the device on native; on the web the
/// browser completes the map and the returned future resolves).
pub(crate) async fn map_read(ctx: &GpuContext, buffers: &[&wgpu::Buffer]) -> Result<()> {
    let done = std::sync::Arc::new(Mutex::new((
        0usize,
        None::<String>,
        None::<std::task::Waker>,
    )));
    for b in buffers {
        let d = done.clone();
        b.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            if let Ok(mut g) = d.lock() {
                g.0 += 1;
                if let Err(e) = r {
                    g.1 = Some(e.to_string());
                }
                if let Some(w) = g.2.take() {
                    w.wake();
                }
            }
        });
    }
    #[cfg(not(target_arch = "wasm32"))]
    ctx.wait_idle()?;
    #[cfg(target_arch = "wasm32")]
    let _ = ctx;
    let n = buffers.len();
    std::future::poll_fn(|cx| {
        let mut g = match done.lock() {
            Ok(g) => g,
            Err(_) => {
                return std::task::Poll::Ready(Err(crate::Error::Gpu("map lock poisoned".into())))
            }
        };
        if let Some(e) = g.1.take() {
            return std::task::Poll::Ready(Err(crate::Error::Gpu(format!(
                "buffer map failed: {e}"
            ))));
        }
        if g.0 == n {
            std::task::Poll::Ready(Ok(()))
        } else {
            g.2 = Some(cx.waker().clone());
            std::task::Poll::Pending
        }
    })
    .await
}
