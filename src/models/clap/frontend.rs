//! The host-side constants and input fitting of CLAP's audio front end (HTSAT's
//! `spectrogram_extractor`, `logmel_extractor` and `reshape_wav2img`), as the original computes
//! them; the GPU side is in [`super::audio`].
//!
//! - [`fit_clip`]: AudioLDM's `get_audio_features` length rule (crop or "repeatpad");
//! - [`stft_basis`]: torchlibrosa's `STFT.conv_real` / `conv_imag` (periodic Hann × DFT);
//! - [`bicubic_matrix`]: PyTorch's `F.interpolate(mode="bicubic", align_corners=True)` along
//!   one axis as a dense [out, in] matrix, computed in f32 exactly as its CPU kernel does.

use crate::{Error, Result};

/// Fit a waveform to `clip` samples as audioldm 0.1.1's `get_audio_features` does (unfused
/// model, `data_filling="repeatpad"`):
/// - longer: the `clip` samples from `offset` (the original draws it with
///   `np.random.randint(0, overflow + 1)` from NumPy's global RNG, after the three
///   `np.random.choice` draws of its "fusion" truncation; a port cannot reproduce that stream,
///   so the caller chooses it: 0, or its own seeded draw in `0..=len − clip`);
/// - shorter: tiled `floor(clip / len)` times, then zero-padded (`offset` must be 0);
/// - exactly `clip`: unchanged (`offset` must be 0).
///
/// `what` names the waveform in errors. Non-finite samples are an error.
pub fn fit_clip(wave: &[f32], clip: usize, offset: usize, what: &str) -> Result<Vec<f32>> {
    const OP: &str = "clap audio";
    if wave.is_empty() || clip == 0 {
        return Err(Error::arg(OP, format!("{what}: an empty waveform")));
    }
    if let Some(i) = wave.iter().position(|v| !v.is_finite()) {
        return Err(Error::arg(OP, format!("{what}: sample {i} is {} (waveforms must be finite)", wave[i])));
    }
    let n = wave.len();
    if n > clip {
        let overflow = n - clip;
        if offset > overflow {
            return Err(Error::arg(OP, format!("{what}: crop offset {offset} is past the last possible start {overflow} ({n} samples, clips of {clip})")));
        }
        return Ok(wave[offset..offset + clip].to_vec());
    }
    if offset != 0 {
        return Err(Error::arg(
            OP,
            format!("{what}: crop offset {offset} for a waveform of {n} samples, not longer than a clip of {clip} (only longer ones are cropped)"),
        ));
    }
    let mut out = Vec::with_capacity(clip);
    for _ in 0..clip / n {
        out.extend_from_slice(wave);
    }
    out.resize(clip, 0.0);
    Ok(out)
}

/// torchlibrosa's STFT weights for `n_fft` (window length = `n_fft`, periodic Hann), as one
/// [2·(n_fft/2 + 1), n_fft] matrix: rows `0..bins` are `conv_real` (`w[n]·cos(2πnk/N)`), rows
/// `bins..2·bins` are `conv_imag` (`−w[n]·sin(2πnk/N)`), computed in f64 from `nk mod N` and
/// rounded once to f32. (torchlibrosa raises a complex root of unity to the power `nk` in
/// NumPy; the two agree to about 1e-7: the converter checks a checkpoint's copy against this.)
pub fn stft_basis(n_fft: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let mut out = vec![0f32; 2 * bins * n_fft];
    let two_pi = 2.0 * std::f64::consts::PI;
    for k in 0..bins {
        for n in 0..n_fft {
            let w = 0.5 - 0.5 * (two_pi * n as f64 / n_fft as f64).cos();
            let a = two_pi * ((n * k) % n_fft) as f64 / n_fft as f64;
            out[k * n_fft + n] = (w * a.cos()) as f32;
            out[(bins + k) * n_fft + n] = (-w * a.sin()) as f32;
        }
    }
    out
}

/// PyTorch's bicubic interpolation with `align_corners=True` along one axis, `input` → `output`
/// samples, as a dense row-major [output, input] matrix: row `o` holds the four weights of
/// output `o` (Keys cubic, a = −0.75) at the input indices `⌊x⌋ − 1 … ⌊x⌋ + 2` clamped to the
/// border (a clamped index adds its weight to the edge sample), where `x = o·(input − 1)/
/// (output − 1)`. Scale, position and weights are computed in f32 in the kernel's order
/// (`area_pixel_compute_scale`, `guard_index_and_lambda`, `get_cubic_upsample_coefficients`).
pub fn bicubic_matrix(input: usize, output: usize) -> Vec<f32> {
    const A: f32 = -0.75;
    let cc1 = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let cc2 = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = if output > 1 { (input as f32 - 1.0) / (output as f32 - 1.0) } else { 0.0 };
    let mut m = vec![0f32; output * input];
    for o in 0..output {
        let real = scale * o as f32;
        let idx = (real.floor() as i64).min(input as i64 - 1);
        let t = (real - idx as f32).clamp(0.0, 1.0);
        let coeffs = [cc2(t + 1.0), cc1(t), cc1(1.0 - t), cc2(1.0 - t + 1.0)];
        for (j, c) in coeffs.iter().enumerate() {
            let i = (idx - 1 + j as i64).clamp(0, input as i64 - 1) as usize;
            m[o * input + i] += c;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeatpad_crop_and_exact() {
        let w = [1.0, 2.0, 3.0];
        assert_eq!(fit_clip(&w, 8, 0, "w").unwrap(), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 0.0, 0.0]);
        assert_eq!(fit_clip(&w, 3, 0, "w").unwrap(), w.to_vec());
        assert_eq!(fit_clip(&[1.0, 2.0, 3.0, 4.0, 5.0], 3, 2, "w").unwrap(), vec![3.0, 4.0, 5.0]);
        assert!(fit_clip(&[1.0, 2.0, 3.0, 4.0, 5.0], 3, 3, "w").is_err());
        assert!(fit_clip(&w, 8, 1, "w").is_err());
        assert!(fit_clip(&[], 8, 0, "w").is_err());
        assert!(fit_clip(&[f32::NAN], 8, 0, "w").is_err());
    }

    #[test]
    fn bicubic_rows_sum_to_one_and_identity_when_sizes_match() {
        let m = bicubic_matrix(1001, 1024);
        for r in m.chunks(1001) {
            let s: f32 = r.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "{s}");
        }
        let id = bicubic_matrix(5, 5);
        for o in 0..5 {
            for i in 0..5 {
                assert_eq!(id[o * 5 + i], if o == i { 1.0 } else { 0.0 });
            }
        }
    }

    #[test]
    fn stft_basis_is_windowed_dft() {
        let b = stft_basis(8);
        // Bin 0 real row is the window; imag row is zero.
        let hann: Vec<f32> = (0..8).map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / 8.0).cos()) as f32).collect();
        assert_eq!(&b[..8], &hann[..]);
        assert!(b[5 * 8..5 * 8 + 8].iter().all(|v| v.abs() < 1e-7));
    }
}
