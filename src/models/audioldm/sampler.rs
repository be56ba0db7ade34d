//! Sampling AudioLDM latents: the training noise schedule, DDIM as `audioldm==0.1.1` runs it
//! (`latent_diffusion/ddim.py` `DDIMSampler`, `util.py` `make_ddim_*`), DPM-Solver++(2M) as
//! diffusers' `DPMSolverMultistepScheduler` runs it (diffusers 0.42.1, `algorithm_type =
//! "dpmsolver++"`, `solver_order = 2`, midpoint, `final_sigmas_type = "zero"`), and
//! classifier-free guidance with both halves in one batched UNet call.
//!
//! - Schedule: LDM "linear" betas = linspace(√start, √end, T)² in f64 (torch.linspace's
//!   two-sided formula), ᾱ = cumulative product in f64, kept as f32 the way `register_buffer`
//!   stores them; every coefficient below is derived from those f32 values as the original does.
//! - DDIM: spacing c = T // steps, timesteps {0, c, …, (steps − 1)·c} + 1 (200 steps → 1, 6, …,
//!   996). For a step count that divides T this is upstream's "uniform" schedule exactly; for
//!   the others upstream runs more timesteps than asked (7 → 8) or indexes ᾱ[T] and crashes
//!   (3, 300, 1000), so here — deliberately — exactly `steps` timesteps are run, diffusers'
//!   "leading" spacing with offset 1: any count in 1..=T−1 works ([`ddim_timesteps`]),
//!   ᾱ_prev of the first index = ᾱ[0], σ = η·√((1−ᾱ_prev)/(1−ᾱ)·(1−ᾱ/ᾱ_prev)) (η = 1 in AudioLDM),
//!   x0 = (x − √(1−ᾱ)·ε)/√ᾱ, x_prev = √ᾱ_prev·x0 + √(1−ᾱ_prev−σ²)·ε + σ·z, no clipping.
//! - DPM-Solver++(2M): diffusers' timestep spacings (linspace, leading + offset, trailing),
//!   σ = √((1−ᾱ)/ᾱ) at those timesteps plus a final 0; first step and last step first order
//!   (the last is the x0 prediction itself), second-order multistep in between. It is
//!   deterministic: no noise is drawn.
//! - Noise: the caller seeds a [`Rng`] (same numbers on native and wasm32); x_T is drawn first
//!   (row-major), then one tensor of the latent's shape per DDIM step with σ ≠ 0. Parity tests
//!   inject PyTorch's x_T and per-step noise instead.

use crate::rng::Rng;
use crate::tensor::{HostTensor, Tensor};
use crate::{Error, Gpu, Result};

use super::unet::UNet;
use super::vae::Trace;
use super::DiffusionConfig;

/// The training noise schedule: ᾱ_t for t = 0..T−1, as the f32 buffer the original holds.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    alphas_cumprod: Vec<f32>,
}

/// torch.linspace in f64: the first half counts up from `start`, the second half down from
/// `end` (ATen's CPU kernel), so both ends are exact.
fn torch_linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    let half = n / 2;
    (0..n).map(|i| if i < half { start + step * i as f64 } else { end - step * (n - 1 - i) as f64 }).collect()
}

/// LDM `make_beta_schedule("linear", T, start, end)`: linspace(√start, √end, T)² in f64 (what
/// a checkpoint's `betas` buffer holds, rounded to f32).
pub fn ldm_linear_betas(timesteps: usize, linear_start: f64, linear_end: f64) -> Vec<f64> {
    torch_linspace(linear_start.sqrt(), linear_end.sqrt(), timesteps).into_iter().map(|s| s * s).collect()
}

impl NoiseSchedule {
    /// LDM `make_beta_schedule("linear", T, start, end)` and `np.cumprod(1 − β)`.
    pub fn ldm_linear(timesteps: usize, linear_start: f64, linear_end: f64) -> Result<NoiseSchedule> {
        let ok = timesteps >= 2 && linear_start > 0.0 && linear_end > 0.0 && linear_start <= linear_end && linear_end < 1.0;
        if !ok {
            return Err(Error::Format(format!("noise schedule: T {timesteps}, betas {linear_start}..{linear_end}")));
        }
        let mut acc = 1f64;
        let alphas_cumprod = torch_linspace(linear_start.sqrt(), linear_end.sqrt(), timesteps)
            .into_iter()
            .map(|s| {
                acc *= 1.0 - s * s;
                acc as f32
            })
            .collect();
        Ok(NoiseSchedule { alphas_cumprod })
    }

    pub fn from_config(c: &DiffusionConfig) -> Result<NoiseSchedule> {
        Self::ldm_linear(c.timesteps, c.linear_start, c.linear_end)
    }

    /// ᾱ_t, t = 0..T−1.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// Training timesteps T.
    pub fn len(&self) -> usize {
        self.alphas_cumprod.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alphas_cumprod.is_empty()
    }
}

/// The DDIM schedule of `DDIMSampler.make_schedule(steps, "uniform", eta)`. Index i runs
/// timestep `timesteps[i]`; sampling goes from the last index down to 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Ddim {
    pub timesteps: Vec<usize>,
    pub alphas: Vec<f32>,
    pub alphas_prev: Vec<f32>,
    pub sigmas: Vec<f32>,
}

/// f32 coefficients of one DDIM step, each rounded as PyTorch rounds it.
#[derive(Clone, Copy, Debug)]
struct DdimCoef {
    sqrt_one_minus_a: f32,
    sqrt_a: f32,
    sqrt_a_prev: f32,
    dir: f32,
    sigma: f32,
}

impl Ddim {
    pub fn new(schedule: &NoiseSchedule, steps: usize, eta: f64) -> Result<Ddim> {
        let t_train = schedule.len();
        if !(0.0..=1.0).contains(&eta) {
            // η > 1 makes 1 − ᾱ_prev − σ² negative (NaN latents upstream).
            return Err(Error::arg("ddim", format!("eta {eta} must be in [0, 1]")));
        }
        let timesteps = ddim_timesteps(t_train, steps)?;
        let ac = schedule.alphas_cumprod();
        let alphas: Vec<f32> = timesteps.iter().map(|&t| ac[t]).collect();
        let alphas_prev: Vec<f32> = std::iter::once(ac[0]).chain(timesteps[..timesteps.len() - 1].iter().map(|&t| ac[t])).collect();
        // make_ddim_sampling_parameters: f64 arithmetic on the f32 values.
        let sigmas = alphas
            .iter()
            .zip(&alphas_prev)
            .map(|(&a, &ap)| {
                let (a, ap) = (a as f64, ap as f64);
                (eta * ((1.0 - ap) / (1.0 - a) * (1.0 - a / ap)).sqrt()) as f32
            })
            .collect();
        Ok(Ddim { timesteps, alphas, alphas_prev, sigmas })
    }

    /// Number of steps (may exceed the requested count; see the module docs).
    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }

    fn coef(&self, index: usize) -> Result<DdimCoef> {
        if index >= self.len() {
            return Err(Error::arg("ddim", format!("step index {index} of {}", self.len())));
        }
        let (a, ap, s) = (self.alphas[index], self.alphas_prev[index], self.sigmas[index]);
        Ok(DdimCoef { sqrt_one_minus_a: (1.0 - a).sqrt(), sqrt_a: a.sqrt(), sqrt_a_prev: ap.sqrt(), dir: (1.0 - ap - s * s).sqrt(), sigma: s })
    }

    /// `p_sample_ddim` given ε: returns (x_prev, pred_x0). `noise` is required when σ ≠ 0.
    /// x, eps, noise: [n, c, t, f] -> ([n, c, t, f], [n, c, t, f])
    pub fn step(&self, index: usize, x: &Tensor, eps: &Tensor, noise: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let k = self.coef(index)?;
        eps.expect("ddim eps", x.shape())?;
        let pred_x0 = x.axpby(1.0, eps, -k.sqrt_one_minus_a)?.scale(1.0 / k.sqrt_a)?;
        let mut x_prev = pred_x0.axpby(k.sqrt_a_prev, eps, k.dir)?;
        if k.sigma != 0.0 {
            let z = noise.ok_or_else(|| Error::arg("ddim", format!("step {index} has σ = {} and needs noise", k.sigma)))?;
            z.expect("ddim noise", x.shape())?;
            x_prev = x_prev.axpby(1.0, z, k.sigma)?;
        }
        Ok((x_prev, pred_x0))
    }
}

/// diffusers' `timestep_spacing` (with `steps_offset` for "leading").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing {
    /// `np.linspace(0, T−1, n+1).round()` reversed, last dropped (diffusers' default).
    Linspace,
    /// `arange(n+1)·(T // (n+1))` reversed, last dropped, plus `steps_offset` (what AudioLDM's
    /// diffusers scheduler config gives: leading with offset 1).
    Leading { steps_offset: usize },
    /// `arange(T, 0, −T/n).round() − 1`.
    Trailing,
}

/// DPM-Solver++(2M) schedule: timesteps and VE sigmas (one more, the final 0).
#[derive(Clone, Debug, PartialEq)]
pub struct DpmSolver {
    pub timesteps: Vec<usize>,
    pub sigmas: Vec<f32>,
}

/// (α_t, σ_t, λ_t) of a VE sigma, `_sigma_to_alpha_sigma_t`.
fn alpha_sigma(sigma: f32) -> (f64, f64) {
    let s = sigma as f64;
    let alpha = 1.0 / (s * s + 1.0).sqrt();
    (alpha, s * alpha)
}

/// DDIM timesteps for `steps` of `t_train`: {0, c, …, (steps − 1)·c} + 1 with c = t_train //
/// steps (upstream's schedule whenever steps divides t_train). Any count in 1..=t_train − 1;
/// others are a one-line error.
pub fn ddim_timesteps(t_train: usize, steps: usize) -> Result<Vec<usize>> {
    if steps == 0 || steps >= t_train {
        return Err(Error::arg("ddim", format!("{steps} DDIM steps: 1..={} are supported", t_train.saturating_sub(1))));
    }
    let c = t_train / steps;
    Ok((0..steps).map(|i| i * c + 1).collect())
}

/// DPM-Solver++ timesteps (high to low) for `steps` of `t_train` with `spacing`, as diffusers
/// computes them; a count whose timesteps fall outside 0..t_train or do not decrease is a
/// one-line error naming the supported range.
pub fn dpm_timesteps(t_train: usize, steps: usize, spacing: Spacing) -> Result<Vec<usize>> {
    if let Some(t) = dpm_timesteps_raw(t_train, steps, spacing) {
        return Ok(t);
    }
    let max = (1..t_train).rev().find(|&n| dpm_timesteps_raw(t_train, n, spacing).is_some()).unwrap_or(0);
    Err(Error::arg("dpm-solver", format!("{steps} DPM-Solver++ steps: 1..={max} are supported ({spacing:?} spacing over {t_train} timesteps)")))
}

fn dpm_timesteps_raw(t_train: usize, steps: usize, spacing: Spacing) -> Option<Vec<usize>> {
    if steps == 0 || steps >= t_train {
        return None;
    }
    let n = steps;
    let timesteps: Vec<i64> = match spacing {
        Spacing::Linspace => {
            // np.linspace(0, T-1, n+1): i·step, the last value exactly T−1; numpy rounds half to even.
            // Reversed, the trailing 0 dropped: i = n, n−1, …, 1.
            let stop = (t_train - 1) as f64;
            let step = stop / n as f64;
            (1..=n).rev().map(|i| if i == n { stop } else { (i as f64 * step).round_ties_even() } as i64).collect()
        }
        Spacing::Leading { steps_offset } => {
            let ratio = t_train / (n + 1);
            (1..=n).rev().map(|i| (i * ratio + steps_offset) as i64).collect()
        }
        Spacing::Trailing => {
            let ratio = t_train as f64 / n as f64;
            let len = (t_train as f64 / ratio).ceil() as usize;
            (0..len).map(|i| (t_train as f64 - i as f64 * ratio).round_ties_even() as i64 - 1).collect()
        }
    };
    if timesteps.iter().any(|&t| t < 0 || t as usize >= t_train) || timesteps.windows(2).any(|w| w[0] <= w[1]) {
        return None;
    }
    Some(timesteps.into_iter().map(|t| t as usize).collect())
}

impl DpmSolver {
    pub fn new(schedule: &NoiseSchedule, steps: usize, spacing: Spacing) -> Result<DpmSolver> {
        let timesteps = dpm_timesteps(schedule.len(), steps, spacing)?;
        let ac = schedule.alphas_cumprod();
        let mut sigmas: Vec<f32> = timesteps
            .iter()
            .map(|&t| {
                let a = ac[t];
                ((1.0 - a) / a).sqrt()
            })
            .collect();
        sigmas.push(0.0);
        Ok(DpmSolver { timesteps, sigmas })
    }

    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }

    /// `convert_model_output` (ε → x0) at step `i`. x, eps: [n, c, t, f] -> [n, c, t, f]
    pub fn x0(&self, i: usize, x: &Tensor, eps: &Tensor) -> Result<Tensor> {
        eps.expect("dpm-solver eps", x.shape())?;
        let (a, s) = alpha_sigma(*self.sigmas.get(i).ok_or_else(|| Error::arg("dpm-solver", format!("step {i} of {}", self.len())))?);
        x.axpby((1.0 / a) as f32, eps, (-s / a) as f32)
    }

    /// One `step` given the x0 prediction of this step (`x0`) and of the previous one (`prev`,
    /// None at the first step). x, x0, prev: [n, c, t, f] -> x at the next timestep.
    pub fn step(&self, i: usize, x: &Tensor, x0: &Tensor, prev: Option<&Tensor>) -> Result<Tensor> {
        if i >= self.len() {
            return Err(Error::arg("dpm-solver", format!("step {i} of {}", self.len())));
        }
        let (sig_t, sig_s0) = (self.sigmas[i + 1], self.sigmas[i]);
        if sig_t == 0.0 {
            // Final step (first order, lower_order_final): σ_t = 0, α_t = 1, exp(−h) = 0.
            return Ok(x0.clone());
        }
        let (alpha_t, sigma_t) = alpha_sigma(sig_t);
        let (alpha_s0, sigma_s0) = alpha_sigma(sig_s0);
        let lambda = |a: f64, s: f64| a.ln() - s.ln();
        let h = lambda(alpha_t, sigma_t) - lambda(alpha_s0, sigma_s0);
        let ratio = (sigma_t / sigma_s0) as f32;
        let b = -alpha_t * ((-h).exp() - 1.0);
        match prev.filter(|_| i > 0) {
            None => x.axpby(ratio, x0, b as f32),
            Some(m1) => {
                let (alpha_s1, sigma_s1) = alpha_sigma(self.sigmas[i - 1]);
                let r0 = (lambda(alpha_s0, sigma_s0) - lambda(alpha_s1, sigma_s1)) / h;
                // D0 = m0, D1 = (m0 − m1)/r0; x = ratio·x + b·D0 + ½·b·D1 (midpoint).
                let c = 0.5 * b / r0;
                let d = x0.axpby((b + c) as f32, m1, (-c) as f32)?;
                x.axpby(ratio, &d, 1.0)
            }
        }
    }
}

/// Which sampler, with its schedule parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// DDIM with noise scale η (AudioLDM and SSV2A: 1.0).
    Ddim { eta: f64 },
    /// DPM-Solver++(2M), deterministic.
    DpmSolverPp { spacing: Spacing },
}

/// A sampler resolved for a step count: the method with its timesteps and coefficients.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampler {
    Ddim(Ddim),
    DpmSolver(DpmSolver),
}

/// Whether `method` can run `steps` over `t_train` training timesteps (one-line error naming the
/// supported range): what `Settings::check` asks before any model is loaded.
pub fn check_steps(t_train: usize, method: Method, steps: usize) -> Result<()> {
    match method {
        Method::Ddim { .. } => ddim_timesteps(t_train, steps).map(|_| ()),
        Method::DpmSolverPp { spacing } => dpm_timesteps(t_train, steps, spacing).map(|_| ()),
    }
}

impl Sampler {
    pub fn new(schedule: &NoiseSchedule, method: Method, steps: usize) -> Result<Sampler> {
        Ok(match method {
            Method::Ddim { eta } => Sampler::Ddim(Ddim::new(schedule, steps, eta)?),
            Method::DpmSolverPp { spacing } => Sampler::DpmSolver(DpmSolver::new(schedule, steps, spacing)?),
        })
    }

    /// The timesteps in sampling order (high to low).
    pub fn timesteps(&self) -> Vec<usize> {
        match self {
            Sampler::Ddim(d) => d.timesteps.iter().rev().copied().collect(),
            Sampler::DpmSolver(d) => d.timesteps.clone(),
        }
    }

    /// Number of UNet evaluations.
    pub fn len(&self) -> usize {
        match self {
            Sampler::Ddim(d) => d.len(),
            Sampler::DpmSolver(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The model as the sampler sees it: ε for latents x at one timestep.
pub trait Denoiser {
    /// x: [n, c, t, f] -> ε [n, c, t, f]. May record named intermediates into `trace`.
    fn eps(&self, x: &Tensor, t: usize, trace: Option<&mut Trace>) -> Result<Tensor>;
}

/// Classifier-free guidance around the UNet: ε = ε_u + s·(ε_c − ε_u), both halves from one
/// UNet call on the batch [uncond; cond] (rows 0..n−1 unconditional), as `p_sample_ddim` does.
/// With no unconditional embedding or s = 1 the UNet runs on the conditional batch alone.
pub struct Guided<'a> {
    unet: &'a UNet,
    /// [uncond; cond] when guided, else cond. [2n or n, film]
    film: Tensor,
    batch: usize,
    scale: f32,
    guided: bool,
}

impl<'a> Guided<'a> {
    /// cond: [n, film], uncond: [n, film] (already broadcast to the batch).
    pub fn new(unet: &'a UNet, cond: &Tensor, uncond: Option<&Tensor>, scale: f32) -> Result<Guided<'a>> {
        let [n, f] = cond.dims("guidance cond")?;
        if f != unet.config.film_dim() {
            return Err(Error::shape("guidance cond", format!("[n, {}]", unet.config.film_dim()), cond.shape()));
        }
        if !scale.is_finite() {
            return Err(Error::arg("guidance", format!("scale {scale} must be finite")));
        }
        let guided = uncond.is_some() && scale != 1.0;
        let film = match uncond.filter(|_| guided) {
            Some(u) => {
                u.expect("guidance uncond", cond.shape())?;
                Tensor::concat(&[u, cond], 0)?
            }
            None => cond.clone(),
        };
        Ok(Guided { unet, film, batch: n, scale, guided })
    }
}

impl Denoiser for Guided<'_> {
    fn eps(&self, x: &Tensor, t: usize, trace: Option<&mut Trace>) -> Result<Tensor> {
        let n = self.batch;
        if x.shape().first() != Some(&n) {
            return Err(Error::shape("guidance", format!("x with batch {n}"), x.shape()));
        }
        if !self.guided {
            return self.unet.forward(x, &vec![t as f32; n], &self.film, None);
        }
        let x_in = Tensor::concat(&[x, x], 0)?;
        let e = self.unet.forward(&x_in, &vec![t as f32; 2 * n], &self.film, None)?;
        if let Some(tr) = trace {
            tr.push(("eps_batched".into(), e.clone()));
        }
        let (e_u, e_c) = (e.slice(0, 0, n, 1)?, e.slice(0, n, 2 * n, 1)?);
        e_u.axpby(1.0, &e_c.sub(&e_u)?, self.scale)
    }
}

/// Where the per-step noise of a stochastic sampler comes from.
pub enum StepNoise<'a> {
    /// Drawn from the RNG, one latent-shaped tensor per step that needs it.
    Rng(&'a mut Rng),
    /// Given: [steps, n, c, t, f], step i (in sampling order) uses row i.
    Given(&'a HostTensor),
}

impl StepNoise<'_> {
    fn take(&mut self, gpu: &Gpu, i: usize, shape: &[usize]) -> Result<Tensor> {
        let m: usize = shape.iter().product();
        match self {
            StepNoise::Rng(r) => Tensor::from_slice(gpu, &r.normals(m), shape.to_vec()),
            StepNoise::Given(h) => {
                let rows = h.shape.first().copied().unwrap_or(0);
                if h.shape.len() != shape.len() + 1 || h.shape[1..] != *shape || i >= rows {
                    return Err(Error::shape("sampler noise", format!("[>{i}, {shape:?}...]"), &h.shape));
                }
                Tensor::from_slice(gpu, &h.data[i * m..(i + 1) * m], shape.to_vec())
            }
        }
    }
}

/// Draw x_T ~ N(0, I) of `shape` from `rng`.
pub fn initial_latent(gpu: &Gpu, shape: &[usize], rng: &mut Rng) -> Result<Tensor> {
    let m: usize = shape.iter().product();
    Tensor::from_slice(gpu, &rng.normals(m), shape.to_vec())
}

/// Progress after a finished step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Steps done (1..=steps).
    pub step: usize,
    pub steps: usize,
    /// The timestep this step denoised.
    pub t: usize,
}

/// Run `sampler` from x_T. Before each step `cancel()` is checked (→ [`Error::Cancelled`]); after
/// each step the GPU work is waited for and `progress` is called. The trace records, per step
/// i, `step{i}.x` (the input), what the denoiser records under `step{i}.` (e.g.
/// `eps_batched`) and `step{i}.pred_x0`. x_t: [n, c, t, f] -> the final latent [n, c, t, f]
#[allow(clippy::too_many_arguments)]
pub async fn sample(
    denoiser: &dyn Denoiser,
    sampler: &Sampler,
    x_t: Tensor,
    noise: &mut StepNoise<'_>,
    progress: &mut dyn FnMut(Progress),
    cancel: &dyn Fn() -> bool,
    mut trace: Option<&mut Trace>,
) -> Result<Tensor> {
    let gpu = x_t.gpu().clone();
    let shape = x_t.shape().to_vec();
    let timesteps = sampler.timesteps();
    let steps = timesteps.len();
    let mut x = x_t;
    let mut prev_x0: Option<Tensor> = None;
    for (i, &t) in timesteps.iter().enumerate() {
        if cancel() {
            return Err(Error::Cancelled);
        }
        let mut inner = vec![];
        let eps = denoiser.eps(&x, t, trace.is_some().then_some(&mut inner))?;
        let (next, x0) = match sampler {
            Sampler::Ddim(d) => {
                let index = steps - 1 - i;
                let z = if d.sigmas[index] != 0.0 { Some(noise.take(&gpu, i, &shape)?) } else { None };
                d.step(index, &x, &eps, z.as_ref())?
            }
            Sampler::DpmSolver(d) => {
                let x0 = d.x0(i, &x, &eps)?;
                (d.step(i, &x, &x0, prev_x0.as_ref())?, x0)
            }
        };
        if let Some(tr) = trace.as_deref_mut() {
            tr.push((format!("step{i}.x"), x.clone()));
            tr.extend(inner.into_iter().map(|(k, v)| (format!("step{i}.{k}"), v)));
            tr.push((format!("step{i}.pred_x0"), x0.clone()));
        }
        prev_x0 = Some(x0);
        x = next;
        gpu.sync().await?;
        progress(Progress { step: i + 1, steps, t });
    }
    Ok(x)
}
