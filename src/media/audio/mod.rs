//! Audio in and out.
//!
//! In: [`decode`] / [`open`] (module `decode`) read the first seconds of a WAV, FLAC, MP3 or Ogg
//! Vorbis source, channel 0; [`remove_mean_and_peak_normalize`] is the official source
//! preprocessing; resampling is [`crate::media::resample`].
//!
//! Out: WAV encoding through `hound`: 16-bit PCM (the official output's format: soundfile's
//! default subtype PCM_16, float scaled by 32767) or 32-bit float, mono. Encoding is
//! target-independent (the browser gets bytes); [`write_wav_atomic`] writes natively via a
//! temporary file renamed into place, so an existing file is never left half-written.

mod decode;

pub use decode::*;

use crate::{Error, Result};

/// SSV2A's audio-source preprocessing (`ssv2a/model/clap.py` `clap_embed_auds`, after the
/// resample to 16 kHz and taking channel 0, with `ssv2a/data/utils.py` `normalize_wav`):
/// subtract the mean; divide by (max|x| + 1e-8) and multiply by 0.5; divide by max|x| again
/// (no epsilon) and multiply by 0.5; NaN becomes 0 (`np.nan_to_num`), so silence or a constant
/// gives zeros. The result peaks at 0.5. f32 arithmetic in the official order; the mean is
/// summed in f64 (numpy's pairwise f32 sum differs from it by about 1 ulp).
pub fn remove_mean_and_peak_normalize(x: &[f32]) -> Vec<f32> {
    if x.is_empty() {
        return Vec::new();
    }
    let mean = (x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64) as f32;
    let peak = |v: &[f32]| v.iter().fold(0.0f32, |m, &a| if a.abs() > m || a.is_nan() { a.abs() } else { m });
    let mut y: Vec<f32> = x.iter().map(|&v| v - mean).collect();
    // numpy 1.x: a float32 scalar plus a Python float is a float64 sum.
    let d = (peak(&y) as f64 + 1e-8) as f32;
    y.iter_mut().for_each(|v| *v = *v / d * 0.5);
    let m = peak(&y);
    y.iter_mut().for_each(|v| {
        let r = 0.5 * (*v / m);
        *v = if r.is_nan() { 0.0 } else { r.clamp(f32::MIN, f32::MAX) };
    });
    y
}

/// Sample format of a WAV file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// 16-bit PCM: round(x·32767), clipped to [−32767, 32767].
    #[default]
    Pcm16,
    /// 32-bit IEEE float, unscaled.
    Float32,
}

/// Encode mono samples at `sample_rate` as a WAV file in memory.
pub fn encode_wav(samples: &[f32], sample_rate: u32, format: WavFormat) -> Result<Vec<u8>> {
    if sample_rate == 0 {
        return Err(Error::arg("encode_wav", "sample rate 0"));
    }
    if let Some(i) = samples.iter().position(|x| !x.is_finite()) {
        return Err(Error::arg("encode_wav", format!("sample {i} is not finite ({})", samples[i])));
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: if format == WavFormat::Pcm16 { 16 } else { 32 },
        sample_format: if format == WavFormat::Pcm16 { hound::SampleFormat::Int } else { hound::SampleFormat::Float },
    };
    let mut cur = std::io::Cursor::new(Vec::with_capacity(44 + samples.len() * 4));
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).map_err(|e| Error::Format(format!("WAV: {e}")))?;
        for &x in samples {
            let r = match format {
                WavFormat::Pcm16 => w.write_sample((x * 32767.0).round().clamp(-32767.0, 32767.0) as i16),
                WavFormat::Float32 => w.write_sample(x),
            };
            r.map_err(|e| Error::Format(format!("WAV: {e}")))?;
        }
        w.finalize().map_err(|e| Error::Format(format!("WAV: {e}")))?;
    }
    Ok(cur.into_inner())
}

/// Decode a whole audio file (any format [`decode`] reads; no cap) to channel 0 and its
/// sample rate. For short files such as our own output; sources go through [`decode`].
pub fn decode_wav(bytes: &[u8], name: &str) -> Result<(Vec<f32>, u32)> {
    let d = decode(bytes, name, &AudioLimits::whole())?;
    Ok((d.samples, d.sample_rate))
}

/// Encode and write a WAV file atomically.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_wav_atomic(path: &std::path::Path, samples: &[f32], sample_rate: u32, format: WavFormat) -> Result<()> {
    crate::fs::write_atomic(path, &encode_wav(samples, sample_rate, format)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm16_and_float_round_trip() {
        let x: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.01).sin() * 0.9).collect();
        let b = encode_wav(&x, 16000, WavFormat::Pcm16).unwrap();
        let (y, sr) = decode_wav(&b, "t.wav").unwrap();
        assert_eq!(sr, 16000);
        assert_eq!(y.len(), x.len());
        // PCM16 quantisation: |error| ≤ half a step of 1/32767 (decoded with 1/32768).
        assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1.0 / 32767.0 + 1e-4 * a.abs()));
        let b = encode_wav(&x, 16000, WavFormat::Float32).unwrap();
        assert_eq!(decode_wav(&b, "t.wav").unwrap().0, x);
        assert!(b.len() >= 44 + 4 * x.len());
    }

    #[test]
    fn clipping_and_bad_input() {
        let b = encode_wav(&[2.0, -2.0], 16000, WavFormat::Pcm16).unwrap();
        let r = hound::WavReader::new(std::io::Cursor::new(b)).unwrap().into_samples::<i16>().map(|s| s.unwrap()).collect::<Vec<_>>();
        assert_eq!(r, vec![32767, -32767]);
        assert!(encode_wav(&[f32::NAN], 16000, WavFormat::Pcm16).is_err());
        assert!(decode_wav(b"RIFF0000WAVEjunk", "junk.wav").is_err());
    }
}
