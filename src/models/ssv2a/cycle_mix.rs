//! Cycle Mix (`Pipeline.cycle_mix`, `pipeline.py:107-155`; spec §2.6): the remixer is sampled
//! `its + 1` rounds × S candidates, and the candidate whose cosine similarities to the 64 slot
//! CLAPs have the smallest (unbiased) standard deviation wins; the best so far is fed back
//! into slot 0 through the CLAP-side manifold encoder.
//!
//! ```text
//! src  = fold_clips(clips, N)                      once            [B, 64, M]
//! for i in 0..=its:
//!     src[all-zero clip rows] = fixed_src[...]     (multimodal only)
//!     ref = fold2claps(src, N); ref[:, 0] = 0                       [B, 64, C]
//!     if i > 0: src[:, 0] = fold_claps(best, N)
//!     cand[s] = normalize(remixer.sample(src, clips, N))   s < S    [B, S, C]
//!     score[b, s] = std_n cos(cand[b, s], ref[b, n])   (n − 1; all slots incl. padding)
//!     s* = argmin score; update best where score < best score (initially 1.0)
//! ```
//!
//! **Candidates share one remixer pass** ([`RemixMode::Shared`], the default). The official
//! code calls the remixer S times per round, each on a random slot permutation of the same
//! (src, clips). The remixer has no positional embedding and no mask, works per token and
//! sums over tokens in its attention context, so its μ and log-variance do not depend on the
//! slot order (only the float summation order changes). The S candidates therefore differ only
//! in their Gaussian noise, and one pass per round gives the same candidates at 1/S of the
//! cost. [`RemixMode::Shuffled`] runs the literal version instead, the S permuted copies
//! batched into one remixer call, for checking.
//!
//! Differences from the official code: the best CLAP starts at zeros instead of
//! `torch.empty(B, 512)` (only observable if no candidate ever scores below 1.0), and the
//! CLAP width comes from the config instead of a hard-coded 512.

use crate::tensor::{HostTensor, Tensor};
use crate::{Error, Result};

use super::sampling::{apply, l2_normalize_rows, Draw, DrawKind, Noise, VarSamples};
use super::Ssv2a;

/// How the S candidates of a round are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RemixMode {
    /// One remixer pass per round; the candidates differ by their noise (exact, see above).
    #[default]
    Shared,
    /// The official literal version: candidate s runs the remixer on its own random slot
    /// permutation; the S permuted copies go through one batched remixer call.
    Shuffled,
}

/// Cycle Mix knobs. `Default` is the official CLI's 64/64/64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CycleMixOptions {
    /// Rounds − 1 (`cycle_its`).
    pub its: usize,
    /// Candidates per round (`cycle_samples`).
    pub samples: usize,
    /// Gaussian samples averaged per variational draw (`var_samples`).
    pub var_samples: usize,
    /// Draw once with std/√var_samples instead of averaging var_samples draws (the same
    /// distribution; see [`VarSamples`]). Off by default (the official computation).
    pub collapsed_sampling: bool,
    pub remix: RemixMode,
}

impl CycleMixOptions {
    pub fn var(&self) -> VarSamples {
        VarSamples { n: self.var_samples, collapsed: self.collapsed_sampling }
    }
}

impl Default for CycleMixOptions {
    fn default() -> Self {
        CycleMixOptions { its: 64, samples: 64, var_samples: 64, collapsed_sampling: false, remix: RemixMode::Shared }
    }
}

/// The slot sequence of one Cycle Mix call.
#[derive(Clone, Debug)]
pub struct MixInput {
    /// [B, slot, clip_dim]: slot 0 the global embedding (or zeros), then sources, zero padding.
    pub clips: HostTensor,
    /// [B, slot, manifold_dim]: codes for the slots whose CLIP row is all zeros (multimodal:
    /// audio sources, empty slot 0, padding), re-applied every round.
    pub fixed_src: Option<HostTensor>,
    /// [B·slot] per-slot weights (not in the official code; `None` = all 1, the official
    /// computation): slot k's manifold code and CLIP row are multiplied by its weight in the
    /// remixer's input, so a source with weight 2 counts about twice in the remixer's global
    /// attention context and one with weight 0 is silenced. The scoring references (the
    /// generator's slot CLAPs) are not weighted.
    pub weights: Option<Vec<f32>>,
}

impl MixInput {
    /// Image to audio (`image_to_audio`): slot 0 = the image's global CLIP embedding, slots
    /// 1..=L the detected sources in order, zeros after. At most `slot − 1` sources (the
    /// official code would randomly keep 63 of more; its detector keeps at most 16).
    pub fn image(global: &[f32], sources: &[&[f32]], slot: usize) -> Result<MixInput> {
        let d = global.len();
        if sources.len() + 1 > slot {
            return Err(Error::arg("cycle mix", format!("{} sources do not fit in {slot} slots (slot 0 is the global embedding)", sources.len())));
        }
        let mut clips = vec![0f32; slot * d];
        clips[..d].copy_from_slice(global);
        for (i, s) in sources.iter().enumerate() {
            if s.len() != d {
                return Err(Error::arg("cycle mix", format!("source {i} has {} values, the global embedding {d}", s.len())));
            }
            clips[(i + 1) * d..(i + 2) * d].copy_from_slice(s);
        }
        Ok(MixInput { clips: HostTensor::new([1, slot, d], clips)?, fixed_src: None, weights: None })
    }

    /// Multimodal composition (`srcs_to_audio`): slot 0 empty; `clip_sources` (image CLIP and
    /// prior-mapped text embeddings, clip_dim each) from slot 1, then `code_sources` (fixed
    /// manifold codes, e.g. `fold_claps` of audio CLAPs, manifold_dim each), one slot each.
    /// (The official code writes every audio into the same slot, so only the last audio counts;
    /// here each gets its own.)
    pub fn multimodal(clip_sources: &[&[f32]], code_sources: &[&[f32]], slot: usize, clip_dim: usize, manifold_dim: usize) -> Result<MixInput> {
        let n = clip_sources.len() + code_sources.len();
        if n + 1 > slot {
            return Err(Error::arg("cycle mix", format!("{n} sources do not fit in {slot} slots (slot 0 stays empty)")));
        }
        let mut clips = vec![0f32; slot * clip_dim];
        let mut fixed = vec![0f32; slot * manifold_dim];
        for (i, s) in clip_sources.iter().enumerate() {
            if s.len() != clip_dim || s.iter().all(|&v| v == 0.0) {
                return Err(Error::arg("cycle mix", format!("clip source {i}: need {clip_dim} values, not all zero")));
            }
            clips[(i + 1) * clip_dim..(i + 2) * clip_dim].copy_from_slice(s);
        }
        for (i, s) in code_sources.iter().enumerate() {
            if s.len() != manifold_dim {
                return Err(Error::arg("cycle mix", format!("code source {i} has {} values, expected {manifold_dim}", s.len())));
            }
            let k = clip_sources.len() + 1 + i;
            fixed[k * manifold_dim..(k + 1) * manifold_dim].copy_from_slice(s);
        }
        Ok(MixInput { clips: HostTensor::new([1, slot, clip_dim], clips)?, fixed_src: Some(HostTensor::new([1, slot, manifold_dim], fixed)?), weights: None })
    }
}

/// What one round computed (for tests and inspection).
#[derive(Clone, Debug)]
pub struct RoundTrace {
    /// [B, slot, M] after the slot-0 injection.
    pub src: HostTensor,
    /// [B, slot, C] the slot CLAPs (slot 0 zeroed).
    pub src_claps: HostTensor,
    /// [B, S, C] the candidates.
    pub remix: HostTensor,
    /// [B, S]
    pub score: HostTensor,
    /// Argmin per batch item.
    pub best: Vec<usize>,
    /// [B, C] the best so far after this round.
    pub rt_claps: HostTensor,
}

pub type CycleMixTrace = Vec<RoundTrace>;

impl Ssv2a {
    /// Cycle Mix: one unit-norm CLAP [B, clap_dim] per scene of `input`.
    pub async fn cycle_mix(&self, input: &MixInput, opts: &CycleMixOptions, noise: &mut dyn Noise, trace: Option<&mut CycleMixTrace>) -> Result<HostTensor> {
        self.cycle_mix_with(input, opts, noise, trace, &mut |_, _| {}, &|| false).await
    }

    /// [`Ssv2a::cycle_mix`] with `progress(round, rounds)` after each round and `cancel()`
    /// polled before each round ([`Error::Cancelled`]).
    pub async fn cycle_mix_with(
        &self,
        input: &MixInput,
        opts: &CycleMixOptions,
        noise: &mut dyn Noise,
        mut trace: Option<&mut CycleMixTrace>,
        progress: &mut dyn FnMut(usize, usize),
        cancel: &dyn Fn() -> bool,
    ) -> Result<HostTensor> {
        const OP: &str = "cycle mix";
        let cfg = &self.config;
        let (cd, m, c) = (cfg.clip_dim, cfg.manifold_dim, cfg.clap_dim);
        let [b, slot, d] =
            <[usize; 3]>::try_from(input.clips.shape.as_slice()).map_err(|_| Error::shape(OP, "clips [B, slot, clip_dim]", &input.clips.shape))?;
        if d != cd || b == 0 || slot == 0 {
            return Err(Error::shape(OP, format!("clips [B ≥ 1, slot ≥ 1, {cd}]"), &input.clips.shape));
        }
        if let Some(f) = &input.fixed_src {
            if f.shape != [b, slot, m] {
                return Err(Error::shape(OP, format!("fixed_src [{b}, {slot}, {m}]"), &f.shape));
            }
        }
        if opts.samples == 0 || opts.var_samples == 0 {
            return Err(Error::arg(OP, "samples and var_samples must be at least 1"));
        }
        if let Some(w) = &input.weights {
            if w.len() != b * slot || w.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(Error::arg(OP, format!("weights: need {} finite values ≥ 0 (one per slot), got {}", b * slot, w.len())));
            }
        }
        if input.clips.data.iter().any(|v| !v.is_finite()) || input.fixed_src.as_ref().is_some_and(|f| f.data.iter().any(|v| !v.is_finite())) {
            return Err(Error::arg(OP, "inputs contain NaN or infinity"));
        }
        let gpu = self.remixer.styler_gpu();
        let n = opts.var();
        let s_count = opts.samples;
        let clips_t = Tensor::upload(gpu, &input.clips)?;
        // A slot is "empty" when its CLIP row is exactly zero (torch: clips.bool().sum(-1) == 0).
        let zero: Vec<bool> = input.clips.data.chunks_exact(cd).map(|r| r.iter().all(|&v| v == 0.0)).collect();
        let mut src = self.manifold.fold_clips(&clips_t, n, noise, Draw::new(DrawKind::FoldClips)).await?;
        let mut rt_claps = vec![0f32; b * c];
        let mut rt_scores = vec![1f32; b];
        for i in 0..=opts.its {
            if cancel() {
                return Err(Error::Cancelled);
            }
            if let Some(f) = &input.fixed_src {
                for (k, _) in zero.iter().enumerate().filter(|(_, z)| **z) {
                    src.data[k * m..(k + 1) * m].copy_from_slice(&f.data[k * m..(k + 1) * m]);
                }
            }
            let mut refs = self.generator.fold2claps(&Tensor::upload(gpu, &src)?, n, noise, Draw::at(DrawKind::Generator, i, 0)).await?;
            for bi in 0..b {
                refs.data[bi * slot * c..bi * slot * c + c].fill(0.0);
            }
            if i > 0 {
                let best = Tensor::from_slice(gpu, &rt_claps, [b, c])?;
                let code = self.manifold.fold_claps(&best, n, noise, Draw::at(DrawKind::FoldClaps, i, 0)).await?;
                for bi in 0..b {
                    src.data[bi * slot * m..bi * slot * m + m].copy_from_slice(&code.data[bi * m..(bi + 1) * m]);
                }
            }
            let remix = match &input.weights {
                None => self.candidates(&src, &input.clips, &clips_t, i, opts, noise).await?, // [B, S, C]
                Some(w) => {
                    let (ws, wc) = (weighted(&src, w), weighted(&input.clips, w));
                    self.candidates(&ws, &wc, &Tensor::upload(gpu, &wc)?, i, opts, noise).await?
                }
            };
            let mut score = vec![0f32; b * s_count];
            let mut best = vec![0usize; b];
            for bi in 0..b {
                for j in 0..s_count {
                    let cand = &remix[(bi * s_count + j) * c..(bi * s_count + j + 1) * c];
                    let cos: Vec<f64> = refs.data[bi * slot * c..(bi + 1) * slot * c].chunks_exact(c).map(|r| cosine(cand, r)).collect();
                    score[bi * s_count + j] = std_unbiased(&cos) as f32;
                }
                let row = &score[bi * s_count..(bi + 1) * s_count];
                // torch.argmin: the first minimum
                let j = (0..s_count).fold(0, |a, j| if row[j] < row[a] { j } else { a });
                best[bi] = j;
                if row[j] < rt_scores[bi] {
                    rt_scores[bi] = row[j];
                    rt_claps[bi * c..(bi + 1) * c].copy_from_slice(&remix[(bi * s_count + j) * c..(bi * s_count + j + 1) * c]);
                }
            }
            if let Some(tr) = trace.as_deref_mut() {
                tr.push(RoundTrace {
                    src: src.clone(),
                    src_claps: refs,
                    remix: HostTensor::new([b, s_count, c], remix)?,
                    score: HostTensor::new([b, s_count], score)?,
                    best,
                    rt_claps: HostTensor::new([b, c], rt_claps.clone())?,
                });
            }
            progress(i + 1, opts.its + 1);
        }
        HostTensor::new([b, c], rt_claps)
    }

    /// The S unit-norm candidates of round `i`: [B, S, C] flattened.
    async fn candidates(
        &self,
        src: &HostTensor,
        clips: &HostTensor,
        clips_t: &Tensor,
        i: usize,
        opts: &CycleMixOptions,
        noise: &mut dyn Noise,
    ) -> Result<Vec<f32>> {
        let gpu = clips_t.gpu();
        let [b, slot, m] = [src.shape[0], src.shape[1], src.shape[2]];
        let cd = clips.shape[2];
        let c = self.config.clap_dim;
        let (n, s_count) = (opts.var(), opts.samples);
        let mut out = vec![0f32; b * s_count * c];
        // Per candidate, in the official order: the shuffle (if any), then the noise.
        let mut perms = vec![];
        let want = n.draws(b * c);
        let eps = match opts.remix {
            // No shuffles between the noise draws: all S drawn together.
            RemixMode::Shared => noise.normals_many(&(0..s_count).map(|j| (Draw::at(DrawKind::Remix, i, j), want)).collect::<Vec<_>>())?,
            RemixMode::Shuffled => {
                let mut eps = vec![];
                for j in 0..s_count {
                    let p = noise.permutation(Draw::at(DrawKind::Shuffle, i, j), slot)?;
                    let mut seen = vec![false; slot];
                    if p.len() != slot || p.iter().any(|&x| x >= slot || std::mem::replace(&mut seen[x], true)) {
                        return Err(Error::arg("cycle mix", format!("noise source gave an invalid permutation of {slot} slots")));
                    }
                    perms.push(p);
                    eps.push(noise.normals(Draw::at(DrawKind::Remix, i, j), want)?);
                }
                eps
            }
        };
        if eps.len() != s_count || eps.iter().any(|e| e.len() != want) {
            return Err(Error::arg("cycle mix", format!("noise source gave the wrong number of values for the remix draws (expected {s_count} × {want})")));
        }
        let (mu, lv) = match opts.remix {
            RemixMode::Shared => {
                let (mu, lv) = self.remixer.forward(&Tensor::upload(gpu, src)?, clips_t, None)?;
                (mu.to_vec().await?, lv.to_vec().await?)
            }
            RemixMode::Shuffled => {
                // Batch index j·B + b holds candidate j of scene b.
                let mut sp = Vec::with_capacity(s_count * src.data.len());
                let mut cp = Vec::with_capacity(s_count * clips.data.len());
                for p in &perms {
                    for bi in 0..b {
                        for &k in p {
                            sp.extend_from_slice(&src.data[(bi * slot + k) * m..(bi * slot + k + 1) * m]);
                            cp.extend_from_slice(&clips.data[(bi * slot + k) * cd..(bi * slot + k + 1) * cd]);
                        }
                    }
                }
                let st = Tensor::from_slice(gpu, &sp, [s_count * b, slot, m])?;
                let ct = Tensor::from_slice(gpu, &cp, [s_count * b, slot, cd])?;
                let (mu, lv) = self.remixer.forward(&st, &ct, None)?;
                (mu.to_vec().await?, lv.to_vec().await?)
            }
        };
        for (j, e) in eps.iter().enumerate() {
            let off = if opts.remix == RemixMode::Shuffled { j * b * c } else { 0 };
            let mut cand = apply(&mu[off..off + b * c], &lv[off..off + b * c], e, n)?;
            l2_normalize_rows(&mut cand, c);
            for bi in 0..b {
                out[(bi * s_count + j) * c..(bi * s_count + j + 1) * c].copy_from_slice(&cand[bi * c..(bi + 1) * c]);
            }
        }
        Ok(out)
    }

    /// Image to CLAP: Cycle Mix of one scene (slot 0 = `global`, then `sources`).
    /// Returns the unit-norm CLAP embedding [clap_dim].
    pub async fn image_to_clap(&self, global: &[f32], sources: &[&[f32]], opts: &CycleMixOptions, noise: &mut dyn Noise) -> Result<Vec<f32>> {
        if global.len() != self.config.clip_dim {
            return Err(Error::arg("image_to_clap", format!("global embedding has {} values, expected {}", global.len(), self.config.clip_dim)));
        }
        let input = MixInput::image(global, sources, self.config.remixer.slot)?;
        Ok(self.cycle_mix(&input, opts, noise, None).await?.data)
    }
}

/// Rows of a [B, slot, d] tensor multiplied by their slot's weight.
fn weighted(x: &HostTensor, w: &[f32]) -> HostTensor {
    let d = x.shape[2];
    let mut out = x.clone();
    for (row, &wk) in out.data.chunks_exact_mut(d).zip(w) {
        row.iter_mut().for_each(|v| *v *= wk);
    }
    out
}

/// The official cosine: `<a, b> / (‖a‖·‖b‖ + 1e-6)` (a zero row gives 0).
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        d += x as f64 * y as f64;
        na += x as f64 * x as f64;
        nb += y as f64 * y as f64;
    }
    d / (na.sqrt() * nb.sqrt() + 1e-6)
}

/// Standard deviation with Bessel's correction (torch.std's default); NaN for one value.
fn std_unbiased(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_helpers() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 2.0 / (2.0 + 1e-6)).abs() < 1e-12);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 0.0]), 0.0);
        // std of (1, 2, 3) with n − 1 = 1
        assert!((std_unbiased(&[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn inputs_are_checked() {
        let (g, s3): (&[f32], &[f32]) = (&[1.0; 4], &[1.0; 3]);
        assert!(MixInput::image(g, &[g; 3], 4).is_ok());
        assert!(MixInput::image(g, &[g; 4], 4).is_err());
        assert!(MixInput::image(g, &[s3], 4).is_err());
        let (c, a, b): (&[f32], &[f32], &[f32]) = (&[1.0; 2], &[0.5; 3], &[0.25; 3]);
        let mm = MixInput::multimodal(&[c], &[a, b], 4, 2, 3).unwrap();
        assert_eq!(&mm.clips.data[..4], &[0.0, 0.0, 1.0, 1.0]);
        assert_eq!(&mm.fixed_src.unwrap().data[6..], &[0.5, 0.5, 0.5, 0.25, 0.25, 0.25]);
    }
}
