//! Variational sampling as the official code does it, on the CPU (the tensors are small: at
//! most `N · B · 64 · 512` values per call), with every random draw named so that tests can
//! inject the exact noise PyTorch used.
//!
//! The official `sample_normal` draws `mu + exp(0.5·logvar) ⊙ ε`; every call site averages N
//! such draws: `acc = 0; for i in 0..N { acc += (ε_i·std + mu) / N }`. [`average_of_samples`]
//! reproduces that f32 arithmetic step by step (same rounding order), so with injected ε the
//! result matches PyTorch to an ulp or two. Drawing once with std/√N would be equal in
//! distribution but not sample for sample; we keep the literal average.

use crate::rng::Rng;
use crate::{Error, Result};

/// What a random draw is for, so an injected [`Noise`] can hand out the stored tensor of that
/// draw. `round` and `candidate` are Cycle Mix's loop indices (0 elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Draw {
    pub kind: DrawKind,
    pub round: usize,
    pub candidate: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrawKind {
    /// `manifold.fold_clips` ε: [N, .., manifold_dim].
    FoldClips,
    /// `manifold.fold_claps` ε: [N, .., manifold_dim].
    FoldClaps,
    /// `generator.fold2claps` ε: [N, .., clap_dim].
    Generator,
    /// `remixer.sample` ε of one candidate: [N, B, clap_dim].
    Remix,
    /// The slot shuffle of one candidate (`random.sample(range(slot), slot)`).
    Shuffle,
    /// `Aggregator.sample` ε: [N, B, 512].
    Aggregator,
    /// Train-mode dropout of the aggregator: uniforms in [0, 1) per element.
    Dropout,
}

impl Draw {
    pub fn new(kind: DrawKind) -> Draw {
        Draw { kind, round: 0, candidate: 0 }
    }
    pub fn at(kind: DrawKind, round: usize, candidate: usize) -> Draw {
        Draw { kind, round, candidate }
    }
}

/// A source of randomness. [`Rng`] draws fresh values (in call order, ignoring the tag); tests
/// implement it to replay PyTorch's stored noise.
pub trait Noise {
    /// `n` standard normals, laid out as the draw's shape in row-major order.
    fn normals(&mut self, draw: Draw, n: usize) -> Result<Vec<f32>>;
    /// Several draws, as consecutive [`Noise::normals`] calls (an implementation may fill
    /// them together, as [`Rng`] does on all cores).
    fn normals_many(&mut self, draws: &[(Draw, usize)]) -> Result<Vec<Vec<f32>>> {
        draws.iter().map(|&(d, n)| self.normals(d, n)).collect()
    }
    /// A permutation of `0..n`.
    fn permutation(&mut self, draw: Draw, n: usize) -> Result<Vec<usize>>;
    /// `n` uniforms in [0, 1).
    fn uniforms(&mut self, draw: Draw, n: usize) -> Result<Vec<f32>>;
}

impl Noise for Rng {
    fn normals(&mut self, _: Draw, n: usize) -> Result<Vec<f32>> {
        Ok(Rng::normals(self, n))
    }
    fn normals_many(&mut self, draws: &[(Draw, usize)]) -> Result<Vec<Vec<f32>>> {
        Ok(Rng::normals_many(self, &draws.iter().map(|d| d.1).collect::<Vec<_>>()))
    }
    fn permutation(&mut self, _: Draw, n: usize) -> Result<Vec<usize>> {
        Ok(Rng::permutation(self, n))
    }
    fn uniforms(&mut self, _: Draw, n: usize) -> Result<Vec<f32>> {
        Ok((0..n).map(|_| self.uniform() as f32).collect())
    }
}

/// How a variational head is sampled.
///
/// The official way is the average of `n` Gaussian draws. With `collapsed`, one draw per value
/// is scaled by 1/√n instead: `mu + std·ε/√n`. The average of n independent N(mu, std²) draws
/// *is* N(mu, std²/n), so both have exactly the same distribution, but the collapsed draw needs
/// n× fewer random numbers (64× at the official setting, where generating them otherwise
/// dominates Cycle Mix's time). Neither reproduces PyTorch's random stream, so only injected
/// noise (average mode) can match PyTorch value for value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VarSamples {
    pub n: usize,
    pub collapsed: bool,
}

impl VarSamples {
    /// The official average of `n` draws.
    pub fn average(n: usize) -> VarSamples {
        VarSamples { n, collapsed: false }
    }
    /// One draw with std/√n (same distribution, n× fewer random numbers).
    pub fn collapsed(n: usize) -> VarSamples {
        VarSamples { n, collapsed: true }
    }
    /// Random numbers needed for `m` values.
    pub fn draws(&self, m: usize) -> usize {
        if self.collapsed {
            m
        } else {
            self.n * m
        }
    }
}

impl From<usize> for VarSamples {
    fn from(n: usize) -> VarSamples {
        VarSamples::average(n)
    }
}

/// The official "average of N samples": `acc += (ε_i·exp(0.5·logvar) + mu) / N` for i in 0..N,
/// in f32 with PyTorch's rounding order. mu, logvar: [m] values; eps: [N, m] -> [m].
pub fn average_of_samples(mu: &[f32], logvar: &[f32], eps: &[f32], n: usize) -> Result<Vec<f32>> {
    let m = mu.len();
    if logvar.len() != m || eps.len() != n * m || n == 0 {
        return Err(Error::arg("average_of_samples", format!("mu {m}, logvar {} and eps {} values for N = {n} (want N·{m})", logvar.len(), eps.len())));
    }
    let std: Vec<f32> = logvar.iter().map(|&l| (0.5f32 * l).exp()).collect();
    let nf = n as f32;
    let mut acc = vec![0f32; m];
    for e in eps.chunks_exact(m) {
        for j in 0..m {
            acc[j] += (e[j] * std[j] + mu[j]) / nf;
        }
    }
    Ok(acc)
}

/// `mu + exp(0.5·logvar)·ε/√n` per value: the collapsed form of [`VarSamples`].
pub fn collapsed_sample(mu: &[f32], logvar: &[f32], eps: &[f32], n: usize) -> Result<Vec<f32>> {
    if logvar.len() != mu.len() || eps.len() != mu.len() || n == 0 {
        return Err(Error::arg("collapsed_sample", format!("mu {}, logvar {}, eps {} values, N = {n}", mu.len(), logvar.len(), eps.len())));
    }
    let k = 1.0 / (n as f32).sqrt();
    Ok(mu.iter().zip(logvar).zip(eps).map(|((&m, &l), &e)| m + (0.5f32 * l).exp() * (e * k)).collect())
}

/// Sample values of mu / logvar (both [m]) with ε from `noise` for `draw` ([N, m] values, or
/// [m] collapsed).
pub fn sample(mu: &[f32], logvar: &[f32], s: VarSamples, noise: &mut dyn Noise, draw: Draw) -> Result<Vec<f32>> {
    let want = s.draws(mu.len());
    let eps = noise.normals(draw, want)?;
    if eps.len() != want {
        return Err(Error::arg("sample", format!("noise source gave {} values for {draw:?}, expected {want}", eps.len())));
    }
    apply(mu, logvar, &eps, s)
}

/// [`average_of_samples`] or [`collapsed_sample`] with given ε.
pub fn apply(mu: &[f32], logvar: &[f32], eps: &[f32], s: VarSamples) -> Result<Vec<f32>> {
    if s.collapsed {
        collapsed_sample(mu, logvar, eps, s.n)
    } else {
        average_of_samples(mu, logvar, eps, s.n)
    }
}

/// `x / ‖x‖₂` per row of `dim` values, as the official `x / x.norm(p=2, dim=-1, keepdim=True)`
/// (no epsilon: a zero row becomes NaN there; here it stays zero instead of NaN).
pub fn l2_normalize_rows(x: &mut [f32], dim: usize) {
    for row in x.chunks_exact_mut(dim) {
        let norm = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt() as f32;
        if norm > 0.0 {
            for v in row.iter_mut() {
                *v /= norm;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_matches_hand_computation() {
        // mu 1, logvar 2 -> std e; eps (1, -1) -> ((e + 1)/2 + (−e + 1)/2) = 1.
        let v = average_of_samples(&[1.0], &[2.0], &[1.0, -1.0], 2).unwrap();
        assert!((v[0] - 1.0).abs() < 1e-6, "{v:?}");
        // one sample, logvar 0: mu + eps
        let v = average_of_samples(&[0.5, -1.0], &[0.0, 0.0], &[0.25, 2.0], 1).unwrap();
        assert_eq!(v, vec![0.75, 1.0]);
        assert!(average_of_samples(&[0.0], &[0.0], &[0.0; 3], 2).is_err());
    }

    #[test]
    fn collapsed_has_the_average_s_distribution() {
        // mean of 64 draws vs one draw/8: same variance (std 2/8 = 0.25 here).
        let mut r = Rng::new(5);
        let (mu, lv) = (vec![1.0f32; 20_000], vec![(4.0f32).ln(); 20_000]);
        let a = sample(&mu, &lv, VarSamples::average(64), &mut r, Draw::new(DrawKind::Remix)).unwrap();
        let c = sample(&mu, &lv, VarSamples::collapsed(64), &mut r, Draw::new(DrawKind::Remix)).unwrap();
        for v in [a, c] {
            let m = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
            let sd = (v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            assert!((m - 1.0).abs() < 0.01 && (sd - 0.25).abs() < 0.01, "mean {m} std {sd}");
        }
    }

    #[test]
    fn normalize_rows() {
        let mut x = vec![3.0, 4.0, 0.0, 0.0];
        l2_normalize_rows(&mut x, 2);
        assert_eq!(x, vec![0.6, 0.8, 0.0, 0.0]);
    }
}
