//! The audio source decoder on arbitrary bytes (sniffing, symphonia's WAV/FLAC/MP3/Ogg Vorbis
//! readers and decoders, our checks), then the source normalisation on what came out: an error,
//! or finite samples within the cap at an accepted rate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssv2a::media::audio::{decode, remove_mean_and_peak_normalize, AudioLimits, MAX_RATE, MIN_RATE};

fuzz_target!(|data: &[u8]| {
    let limits = AudioLimits { max_seconds: 1.0 };
    if let Ok(d) = decode(data, "fuzz", &limits) {
        assert!((MIN_RATE..=MAX_RATE).contains(&d.sample_rate));
        assert!(d.channels > 0);
        assert!(!d.samples.is_empty() && d.samples.len() <= d.sample_rate as usize);
        assert!(d.samples.iter().all(|x| x.is_finite()));
        let y = remove_mean_and_peak_normalize(&d.samples);
        assert!(y.iter().all(|v| v.is_finite() && v.abs() <= 0.5 + 1e-6));
    }
});
