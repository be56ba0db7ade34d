//! Resample raw little-endian f32 samples from stdin to stdout, for the comparison with soxr
//! and torchaudio (`tests/reference/resample_snr.py`).
//!
//! `cargo run --example resample -- FROM TO [hq|torchaudio] < in.f32 > out.f32`

use std::io::{Read, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(from), Some(to)) = (args.first(), args.get(1)) else {
        return Err("usage: resample FROM TO [hq|torchaudio] < in.f32 > out.f32".into());
    };
    let (from, to): (u32, u32) = (from.parse()?, to.parse()?);
    let mut raw = Vec::new();
    std::io::stdin().read_to_end(&mut raw)?;
    let x: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let y = match args.get(2).map(String::as_str).unwrap_or("hq") {
        "hq" => ssv2a::media::resample::resample(&x, from, to)?,
        "torchaudio" => ssv2a::media::resample::torchaudio_resample(&x, from, to)?,
        m => return Err(format!("unknown method {m} (hq or torchaudio)").into()),
    };
    let out: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::io::stdout().write_all(&out)?;
    Ok(())
}
