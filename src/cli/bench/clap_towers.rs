//! `ssv2a bench clap`: CLAP's text tower (roberta-base, AudioLDM's 512 tokens) and audio tower
//! (HTSAT-tiny on 10 s clips at 48 kHz, front end included) with seeded random weights at the
//! released sizes. `tests/reference/bench_clap.py` runs the PyTorch CPU baseline and this in
//! one run and prints the ratios.
//!
//! Timing: one warm-up run per shape (pipeline compilation), then `reps` timed runs, each
//! ending with a readback.

use std::collections::BTreeMap;
use std::time::Instant;

use ssv2a::models::audioldm;
use ssv2a::models::clap::{AudioConfig, ClapAudio, ClapText, TextConfig, TextTokens, PREFIX};
use ssv2a::rng::Rng;
use ssv2a::{Gpu, Tensor, Weights};

#[derive(clap::Args)]
pub struct Args {
    /// Timed repetitions after one warm-up run.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Store matrices as f16 (the default packs) or f32.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Audio batch sizes (AudioLDM ranks its 3 candidates in one batch).
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    audio_batches: Vec<usize>,
    /// Text sequence length (AudioLDM pads to 512).
    #[arg(long, default_value_t = 512)]
    text_len: usize,
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "?".into())
}

async fn time<F, Fut>(reps: usize, f: F) -> anyhow::Result<(f64, f64, f64)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let t0 = Instant::now();
    f().await?;
    let warm = t0.elapsed().as_secs_f64();
    let mut t = vec![];
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        f().await?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok((t[0], t[t.len() / 2], warm))
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let f16 = match a.dtype.as_str() {
        "f16" => true,
        "f32" => false,
        other => anyhow::bail!("--dtype must be f16 or f32, not `{other}`"),
    };
    let gpu = Gpu::new().await?;
    let info = gpu.info();
    println!("adapter: {} ({:?}); weights {}; load average at start: {}", info.name, info.backend, a.dtype, load());
    let text_cfg = TextConfig::roberta_base();
    let audio_cfg = AudioConfig::htsat_tiny();
    let cfg = audioldm::AudioLdmConfig { clap_text: Some(text_cfg.clone()), clap_audio: Some(audio_cfg.clone()), ..audioldm::AudioLdmConfig::s_full_v2() };
    let w = Weights::random(&gpu, audioldm::KIND, &serde_json::to_string(&cfg)?, 15, f16, BTreeMap::new());
    let root = w.sub(PREFIX);

    let text = ClapText::load(&root, &text_cfg)?;
    let len = a.text_len.min(text_cfg.max_len());
    let mut rng = Rng::new(3);
    let n = len / 2;
    let mut ids = vec![1u32; len];
    let mut mask = vec![0f32; len];
    for i in 0..n {
        ids[i] = if i == 0 {
            0
        } else if i + 1 == n {
            2
        } else {
            3 + (rng.uniform() * 50000.0) as u32
        };
        mask[i] = 1.0;
    }
    let tokens = TextTokens { batch: 1, len, ids, mask };
    let (best, med, warm) = time(a.reps, || async { Ok(text.embed(&tokens)?.to_vec().await.map(|_| ())?) }).await?;
    println!("clap-text roberta-base batch 1, {len} tokens ({n} real): best {best:.3} s, median {med:.3} s; warm-up {warm:.2} s; load {}", load());
    drop(text);

    let audio = ClapAudio::load(&root, &audio_cfg)?;
    for &b in &a.audio_batches {
        let wave: Vec<f32> = rng.normals(b * audio_cfg.clip_samples).iter().map(|v| v * 0.1).collect();
        let x = Tensor::from_slice(&gpu, &wave, [b, audio_cfg.clip_samples])?;
        let (best, med, warm) = time(a.reps, || async { Ok(audio.embed(&x)?.to_vec().await.map(|_| ())?) }).await?;
        println!(
            "clap-audio HTSAT-tiny batch {b}, 10 s clips: best {best:.3} s ({:.3} s/clip), median {med:.3} s; warm-up {warm:.2} s; load {}",
            best / b as f64,
            load()
        );
    }
    Ok(())
}
