//! `ssv2a bench unet`: one full-size AudioLDM UNet step on seeded random weights (no real
//! checkpoint is needed): pack build and load time, step time, and GPU memory (weights, and the
//! peak of one step measured with an empty buffer pool).
//!
//! Timing as `crate::bench`: one warm-up step (pipeline compilation), then `reps` timed steps,
//! each followed by [`Gpu::sync`]; the clock is a parameter because wasm32 has no `std::time`.

use super::{GpuTimes, Profile};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::weights::{pack_metadata, serialize_pack, PackTensor, Weights};
use crate::{Gpu, Result};

use crate::models::audioldm::unet::{param_shapes, UNet, UnetConfig};
use crate::models::audioldm::{load_unet, AudioLdmConfig, KIND};

/// An AudioLDM pack holding only a UNet of `cfg` with random weights: U(±1/√fan_in) for
/// matrices, 1 ± 0.1 for norm scales, ±0.1 for biases.
pub fn random_unet_pack(cfg: &UnetConfig, f16: bool, seed: u64) -> Result<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut tensors = vec![];
    for (key, shape) in param_shapes(cfg)? {
        let n: usize = shape.iter().product();
        let values = if shape.len() > 1 {
            let b = 1.0 / ((n / shape[0]) as f32).sqrt();
            rng.uniforms(n, -b, b)
        } else if key.ends_with(".weight") {
            rng.uniforms(n, 0.9, 1.1)
        } else {
            rng.uniforms(n, -0.1, 0.1)
        };
        tensors.push(PackTensor::encode(format!("model.diffusion_model.{key}"), shape, &values, f16));
    }
    let mut config = AudioLdmConfig::s_full_v2();
    config.unet = Some(serde_json::to_value(cfg).map_err(|e| crate::Error::Format(e.to_string()))?);
    let json = serde_json::to_string(&config).map_err(|e| crate::Error::Format(e.to_string()))?;
    let mut meta = pack_metadata(KIND, &json, if f16 { "f16" } else { "f32" });
    meta.insert("components".into(), "unet".into());
    serialize_pack(&tensors, &meta)
}

/// The result of [`unet_step`].
#[derive(Clone, Debug, PartialEq)]
pub struct UnetStep {
    pub batch: usize,
    pub frames: usize,
    pub f16: bool,
    pub params: usize,
    /// Building the random pack on the CPU, then parsing and uploading it.
    pub build_s: f64,
    pub load_s: f64,
    /// Bytes of GPU buffers held after loading (the weights).
    pub weight_bytes: u64,
    /// The warm-up step (includes pipeline compilation).
    pub first_s: f64,
    /// Timed steps, sorted.
    pub times_s: Vec<f64>,
    /// Highest bytes held by live tensors during one step (weights included).
    pub peak_in_use: u64,
    /// Highest bytes allocated during one step starting from an empty pool (weights included).
    pub peak_allocated: u64,
    /// The device layer's work in the median timed step, and a GPU-timed step (with `profile`).
    pub profile: Option<Profile>,
}

impl std::fmt::Display for UnetStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b as f64 / 1e6;
        let best = self.times_s.first().copied().unwrap_or(f64::NAN);
        let median = self.times_s.get(self.times_s.len() / 2).copied().unwrap_or(f64::NAN);
        write!(
            f,
            "unet step batch {} latent [{}, 8, {}, 16] {}: best {:.3} s, median {:.3} s over {} (warm-up {:.2} s); \
             weights {:.1} MB ({} params); peak in use {:.1} MB (activations {:.1} MB), peak allocated {:.1} MB \
             (activations {:.1} MB); pack build {:.1} s, load {:.1} s",
            self.batch,
            self.batch,
            self.frames,
            if self.f16 { "f16" } else { "f32" },
            best,
            median,
            self.times_s.len(),
            self.first_s,
            mb(self.weight_bytes),
            self.params,
            mb(self.peak_in_use),
            mb(self.peak_in_use.saturating_sub(self.weight_bytes)),
            mb(self.peak_allocated),
            mb(self.peak_allocated.saturating_sub(self.weight_bytes)),
            self.build_s,
            self.load_s,
        )?;
        if let Some(p) = &self.profile {
            write!(f, "\nprofile of the median step:\n{p}")?;
        }
        Ok(())
    }
}

/// Time one UNet step at `batch` on a latent of `frames` (256 = 10 s) with random weights of
/// `cfg` and measure its GPU memory. With `profile`, also the device layer's counters of the
/// median step and, where the adapter has timestamp queries, one more step timed on the GPU.
#[allow(clippy::too_many_arguments)]
pub async fn unet_step(gpu: &Gpu, cfg: &UnetConfig, batch: usize, frames: usize, f16: bool, reps: usize, profile: bool, now: fn() -> f64) -> Result<UnetStep> {
    let t0 = now();
    let bytes = random_unet_pack(cfg, f16, 0x5eed)?;
    let params = param_shapes(cfg)?.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    let t1 = now();
    gpu.trim_pool();
    let base = gpu.memory().in_use;
    let unet = {
        let w = Weights::from_bytes(gpu, bytes, "random UNet")?;
        let unet = load_unet(&w)?;
        gpu.sync().await?;
        unet
    };
    let t2 = now();
    let weight_bytes = gpu.memory().in_use - base;
    let mut rng = Rng::new(1);
    let x = Tensor::from_slice(gpu, &rng.normals(batch * cfg.in_channels * frames * 16), [batch, cfg.in_channels, frames, 16])?;
    let film = Tensor::from_slice(gpu, &rng.normals(batch * cfg.film_dim()), [batch, cfg.film_dim()])?.l2_normalize()?;
    let t: Vec<f32> = (0..batch).map(|i| if i % 2 == 0 { 996.0 } else { 501.0 }).collect();
    let step = |unet: &UNet| unet.forward(&x, &t, &film, None);
    let s = now();
    drop(step(&unet)?);
    gpu.sync().await?;
    let first_s = now() - s;
    gpu.trim_pool();
    gpu.reset_peak();
    let mut runs = vec![];
    let mut peaks = None;
    for _ in 0..reps.max(1) {
        let c = gpu.counters();
        let s = now();
        drop(step(&unet)?);
        gpu.sync().await?;
        runs.push((now() - s, gpu.counters() - c));
        if peaks.is_none() {
            let m = gpu.memory();
            peaks = Some((m.peak_in_use - base, m.peak_allocated - base));
        }
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let times_s: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let profile = if profile {
        let (wall_s, counters) = runs[runs.len() / 2];
        let gpu_times = match gpu.gpu_timer_mode() {
            Some(_) => {
                let mode = gpu.start_gpu_timer()?;
                drop(step(&unet)?);
                Some(GpuTimes::new(mode, &gpu.stop_gpu_timer().await?))
            }
            None => None,
        };
        Some(Profile { wall_s, counters, gpu: gpu_times })
    } else {
        None
    };
    let (peak_in_use, peak_allocated) = peaks.unwrap_or_default();
    Ok(UnetStep { batch, frames, f16, params, build_s: t1 - t0, load_s: t2 - t1, weight_bytes, first_s, times_s, peak_in_use, peak_allocated, profile })
}
