//! Audio sources: decoding each format against libsndfile's decode of the same file, bad inputs,
//! the official source normalisation, torchaudio's resampler and the high-quality resampler.
//! Fixtures: `tests/fixtures/audio/` (made by `tests/reference/make_audio_fixtures.py`).

mod common;

use common::golden::Golden;
use common::{assert_close, Tol};
use ssv2a::media::audio::{self, AudioLimits, DecodedAudio};
use ssv2a::media::resample::{self, Resampler};

fn path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio").join(name)
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap()
}

fn dec(b: &[u8], name: &str) -> Result<DecodedAudio, String> {
    audio::decode(b, name, &AudioLimits::default()).map_err(|e| e.to_string())
}

fn err(b: &[u8], name: &str) -> String {
    match dec(b, name) {
        Ok(d) => panic!("{name}: decoded {} samples, expected an error", d.samples.len()),
        Err(e) => {
            assert!(e.contains(name), "error does not name the input: {e}");
            e
        }
    }
}

/// Byte offset of a RIFF chunk's id.
fn chunk(b: &[u8], id: &[u8; 4]) -> usize {
    b.windows(4).position(|w| w == id).unwrap_or_else(|| panic!("no {id:?} chunk"))
}

#[test]
fn every_format_matches_libsndfile() {
    let g = Golden::load("audio/reference");
    // (file, sample rate, channels, container, codec, tolerance and why)
    let lossless = Tol { abs: 1e-7, rel: 0.0 };
    let cases: [(&str, u32, u16, &str, &str, Tol); 9] = [
        ("pcm_u8.wav", 16000, 1, "WAV", "PCM u8", lossless),
        ("pcm16_stereo.wav", 22050, 2, "WAV", "PCM s16le", lossless),
        ("pcm24.wav", 16000, 1, "WAV", "PCM s24le", lossless),
        ("pcm32.wav", 16000, 1, "WAV", "PCM s32le", lossless),
        ("float32.wav", 16000, 1, "WAV", "PCM f32", lossless),
        ("float64.wav", 8000, 1, "WAV", "PCM f64", lossless),
        ("stereo.flac", 44100, 2, "FLAC", "FLAC", lossless),
        // Vorbis: both decoders are float implementations of the same inverse MDCT (measured
        // max 3.0e-7).
        ("stereo.ogg", 44100, 2, "Ogg", "Vorbis", Tol { abs: 2e-6, rel: 0.0 }),
        // MP3: libmpg123 and symphonia differ in their synthesis arithmetic (measured max 1.6e-6).
        ("stereo.mp3", 44100, 2, "MP3", "MP3", Tol { abs: 1e-5, rel: 0.0 }),
    ];
    for (name, sr, ch, container, codec, tol) in cases {
        let d = dec(&bytes(name), name).unwrap();
        let want = &g.get(&format!("dec.{name}")).data;
        assert_eq!((d.sample_rate, d.channels, d.container, d.codec), (sr, ch, container, codec), "{name}");
        assert!(d.warnings.is_empty() && !d.capped, "{name}: {:?}", d.warnings);
        assert_close(name, &d.samples, want, tol).unwrap();
        if let Some(n) = d.total_frames {
            assert_eq!(n, want.len() as u64, "{name}: header frames");
        }
    }
}

#[test]
fn open_streams_the_same_samples_as_decode() {
    for name in ["pcm24.wav", "stereo.flac", "stereo.ogg", "stereo.mp3"] {
        let a = audio::open(&path(name), &AudioLimits::default()).unwrap();
        let b = dec(&bytes(name), name).unwrap();
        assert_eq!(a.samples, b.samples, "{name}");
        assert_eq!(a.sample_rate, b.sample_rate);
    }
    let e = audio::open(&path("missing.wav"), &AudioLimits::default()).unwrap_err().to_string();
    assert!(e.contains("missing.wav"), "{e}");
}

#[test]
fn decoding_stops_at_the_cap() {
    for name in ["pcm16_stereo.wav", "stereo.flac", "stereo.ogg", "stereo.mp3"] {
        let b = bytes(name);
        let whole = dec(&b, name).unwrap();
        let d = audio::decode(&b, name, &AudioLimits { max_seconds: 0.05 }).unwrap();
        let n = (0.05 * whole.sample_rate as f64).ceil() as usize;
        assert!(d.capped, "{name}");
        assert_eq!(d.samples.len(), n, "{name}");
        assert_eq!(d.samples[..], whole.samples[..n], "{name}");
    }
    assert!(audio::decode(&bytes("pcm24.wav"), "x.wav", &AudioLimits { max_seconds: 0.0 }).is_err());
    assert!(audio::decode(&bytes("pcm24.wav"), "x.wav", &AudioLimits { max_seconds: f64::NAN }).is_err());
    // decode_wav (our own output) reads the whole file.
    let (s, sr) = audio::decode_wav(&bytes("pcm16_stereo.wav"), "w").unwrap();
    assert_eq!((s.len(), sr), (3307, 22050));
}

#[test]
fn truncated_files_keep_their_valid_head_with_a_warning() {
    for name in ["pcm16_stereo.wav", "stereo.flac", "stereo.ogg", "stereo.mp3"] {
        let b = bytes(name);
        let whole = dec(&b, name).unwrap();
        // Ogg: inside the last page (this file's first audio page holds almost all of it).
        let at = if name.ends_with(".ogg") { b.windows(4).rposition(|w| w == b"OggS").unwrap() + 100 } else { b.len() * 6 / 10 };
        let cut = &b[..at];
        let d = dec(cut, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!d.samples.is_empty() && d.samples.len() < whole.samples.len(), "{name}: {} of {}", d.samples.len(), whole.samples.len());
        assert!(!d.warnings.is_empty(), "{name}: no warning for a truncated file");
        assert!(d.warnings.iter().all(|w| w.contains(name)), "{:?}", d.warnings);
        // The head is the same audio (Vorbis/MP3 may differ in the last, overlapped frame).
        let n = d.samples.len().saturating_sub(4096).max(d.samples.len() / 2);
        assert_eq!(d.samples[..n], whole.samples[..n], "{name}");
    }
    // Only the header left: nothing decodable.
    let b = bytes("pcm24.wav");
    let data = chunk(&b, b"data");
    let e = err(&b[..data + 8], "head_only.wav");
    assert!(e.contains("no"), "{e}");
    let e = err(&bytes("stereo.flac")[..3000], "head_only.flac");
    assert!(e.contains("no audio samples") && e.contains("probably truncated"), "{e}");
    let e = err(&bytes("stereo.ogg")[..5000], "head_only.ogg");
    assert!(e.contains("ends before its first complete audio packet"), "{e}");
}

#[test]
fn bad_headers_and_samples_are_named_errors() {
    let wav = bytes("pcm16_stereo.wav");
    let fmt = chunk(&wav, b"fmt ");
    for rate in [0u32, 1, 999, 384_001, 1_000_000_000] {
        let mut b = wav.clone();
        b[fmt + 12..fmt + 16].copy_from_slice(&rate.to_le_bytes());
        let e = err(&b, "rate.wav");
        assert!(e.contains("rate") || e.contains("header"), "{rate} Hz: {e}");
    }
    let mut b = wav.clone();
    b[fmt + 10..fmt + 12].copy_from_slice(&0u16.to_le_bytes());
    let e = err(&b, "zero_channels.wav");
    assert!(e.contains("0 channels"), "{e}");
    // Found by the fuzzer: 65,025 channels overflowed symphonia's block-align product.
    let e = err(&bytes("fuzz_wav_channels.wav"), "fuzz_wav_channels.wav");
    assert!(e.contains("65025 channels"), "{e}");
    // Found by the fuzzer: MPEG frame headers, then a RIFF header with that channel count
    // further on. The sniffed container's reader is used, never a scan for other formats.
    let d = dec(&bytes("fuzz_mp3_riff.mp3"), "fuzz_mp3_riff.mp3").unwrap();
    assert_eq!((d.container, d.samples.len()), ("MP3", 1152));

    // Zero samples: a data chunk of length 0.
    let data = chunk(&wav, b"data");
    let mut b = wav[..data + 8].to_vec();
    b[data + 4..data + 8].copy_from_slice(&0u32.to_le_bytes());
    let e = err(&b, "empty.wav");
    assert!(e.contains("no audio"), "{e}");

    // NaN and infinity in a float WAV.
    let f = bytes("float32.wav");
    let data = chunk(&f, b"data") + 8;
    for (bad, at) in [(f32::NAN, 5usize), (f32::INFINITY, 100), (f32::NEG_INFINITY, 0)] {
        let mut b = f.clone();
        b[data + 4 * at..data + 4 * at + 4].copy_from_slice(&bad.to_le_bytes());
        let e = err(&b, "nan.wav");
        assert!(e.contains(&format!("sample {at} ")), "{e}");
    }

    let e = err(&bytes("opus.ogg"), "opus.ogg");
    assert!(e.contains("Opus"), "{e}");
    let e = err(b"", "empty.mp3");
    assert!(e.contains("empty"), "{e}");
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let e = err(&garbage, "garbage.wav");
    assert!(e.contains("not a recognised audio file"), "{e}");
    // 0xFFFB alone looks like an MPEG sync word; without a second frame it is not audio.
    let mut sync = garbage.clone();
    sync[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x00]);
    err(&sync, "sync.mp3");
    // Containers we do not read are named, with the codec where the head says it.
    let mut mp4 = vec![0, 0, 0, 24];
    mp4.extend_from_slice(b"ftypM4A \0\0\0\0M4A mp42");
    mp4.extend_from_slice(&[0, 0, 0, 0x40]);
    mp4.extend_from_slice(b"stsd\0\0\0\0\0\0\0\x01\0\0\0\x30mp4a");
    mp4.resize(200, 0);
    let e = err(&mp4, "song.m4a");
    assert!(e.contains("MP4") && e.contains("AAC"), "{e}");
    let e = err(&[0x1A, 0x45, 0xDF, 0xA3, 1, 2, 3, 4], "clip.webm");
    assert!(e.contains("Matroska/WebM"), "{e}");
    // A WAV of another codec (A-law is decodable; an unknown format tag is not).
    let mut b = wav.clone();
    b[fmt + 8..fmt + 10].copy_from_slice(&0x0055u16.to_le_bytes()); // MPEG Layer 3 in WAV
    err(&b, "odd_codec.wav");
}

#[test]
fn source_normalisation_matches_the_official_numpy() {
    let g = Golden::load("audio/reference");
    let got = audio::remove_mean_and_peak_normalize(&g.get("norm.in").data);
    // f32 ops in the official order; the mean is an f64 sum here, a pairwise f32 sum in numpy.
    assert_close("normalise", &got, &g.get("norm.out").data, Tol { abs: 1e-7, rel: 1e-6 }).unwrap();
    let peak = got.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!((peak - 0.5).abs() < 1e-6, "{peak}");
    // Silence and constants: 0/0 is NaN, which becomes 0 as np.nan_to_num makes it.
    assert_eq!(audio::remove_mean_and_peak_normalize(&[0.3; 7]), vec![0.0; 7]);
    assert!(audio::remove_mean_and_peak_normalize(&[]).is_empty());
}

#[test]
fn torchaudio_resample_matches_torchaudio() {
    let g = Golden::load("audio/reference");
    let mut n = 0;
    for (k, v) in &g.tensors {
        let Some(pair) = k.strip_prefix("ta.").and_then(|s| s.strip_suffix(".in")) else { continue };
        let (a, b) = pair.split_once('_').unwrap();
        let (orig, new): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
        let got = resample::torchaudio_resample(&v.data, orig, new).unwrap();
        let want = &g.get(&format!("ta.{pair}.out")).data;
        let peak = want.iter().fold(0f64, |m, x| m.max(x.abs() as f64));
        assert_close(&format!("torchaudio {orig}->{new}"), &got, want, Tol { abs: 1e-5 * peak, rel: 1e-5 }).unwrap();
        n += 1;
    }
    assert_eq!(n, 7);
}

/// SNR in dB of `got` against `want` over `range`.
fn snr(got: &[f32], want: &[f64], range: std::ops::Range<usize>) -> f64 {
    let (mut s, mut e) = (0.0, 0.0);
    for i in range {
        s += want[i] * want[i];
        e += (got[i] as f64 - want[i]).powi(2);
    }
    10.0 * (s / e.max(1e-300)).log10()
}

#[test]
fn hq_resampler_reproduces_sines_analytically() {
    for (from, to) in [(44100u32, 48000u32), (22050, 48000), (16000, 48000), (8000, 48000), (96000, 48000), (48000, 44100), (44101, 48000)] {
        let nyq = from.min(to) as f64 / 2.0;
        for frac in [0.01, 0.3, 0.85] {
            let f = frac * nyq;
            let n = from as usize / 5;
            let x: Vec<f32> = (0..n).map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / from as f64 + 0.3).sin() as f32).collect();
            let y = resample::resample(&x, from, to).unwrap();
            let want: Vec<f64> = (0..y.len()).map(|k| (2.0 * std::f64::consts::PI * f * k as f64 / to as f64 + 0.3).sin()).collect();
            // Away from the ends, where the signal's own edges (zeros outside) matter.
            let edge = (200.0 * to as f64 / from.min(to) as f64) as usize;
            let s = snr(&y, &want, edge..y.len() - edge);
            assert!(s > 100.0, "{from}->{to} at {f:.0} Hz: SNR {s:.1} dB");
        }
    }
    // Above the output's Nyquist frequency: removed (96 kHz → 48 kHz, 30 kHz tone).
    let x: Vec<f32> = (0..19200).map(|i| (2.0 * std::f64::consts::PI * 30000.0 * i as f64 / 96000.0).sin() as f32).collect();
    let y = resample::resample(&x, 96000, 48000).unwrap();
    let rms = (y[400..y.len() - 400].iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / (y.len() - 800) as f64).sqrt();
    assert!(20.0 * (rms * 2f64.sqrt()).log10() < -110.0, "alias at {:.1} dB", 20.0 * (rms * 2f64.sqrt()).log10());
    // The streaming interface: rates and errors.
    assert_eq!(Resampler::new(44100, 48000).unwrap().rates(), (44100, 48000));
    assert!(Resampler::new(0, 48000).is_err());
}
