//! CLAP's audio tower against the PyTorch golden `clap_audio` (audioldm 0.1.1's `CLAP` with a
//! reduced `HTSAT_Swin_Transformer`, made by `tests/reference/make_clap_audio.py`): the
//! fixture's state dict converted in memory by the real AudioLDM plan; a batch of three 48 kHz
//! waveforms (repeat-padded, exact, cropped) with the log-mel after bn0, the 256×256 image, the
//! Swin stages, the token mean and the projected embedding; the fp16 pack; the converter's
//! checks of the fixed tensors; the error for packs without the tower.
//!
//! Tolerance: f32 on both sides, max |error| ≤ 1e-4 · max |reference| per compared tensor
//! (different summation orders; the figures are printed). fp16 pack vs f32: SNR ≥ 40 dB.

mod common;

use common::golden::{error_stats, Golden};
use common::run;
use ssv2a::convert::plan::MemSource;
use ssv2a::models::audioldm::{self, AudioLdmConfig};
use ssv2a::models::clap::{self, frontend, swin};
use ssv2a::tensor::HostTensor;
use ssv2a::{Gpu, Tensor, Weights};

const REL: f64 = 1e-4;
const AB: &str = "cond_stage_model.model.audio_branch";

fn e(x: ssv2a::Error) -> String {
    x.to_string()
}

fn config(g: &Golden) -> AudioLdmConfig {
    AudioLdmConfig::from_json(&g.config()).unwrap()
}

fn pack_from(gpu: &Gpu, g: &Golden, src: &MemSource, f16: bool) -> Result<Weights, String> {
    let plan = audioldm::plan(src, &config(g)).map_err(e)?;
    Weights::from_bytes(gpu, plan.to_bytes(src, f16).map_err(e)?, &g.name).map_err(e)
}

/// Max |error| relative to max |reference|; fails above `REL`.
fn check(what: &str, got: &[f32], want: &[f32]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, PyTorch {}", got.len(), want.len()));
    }
    let abs = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
    let (rel, snr) = error_stats(got, want);
    eprintln!("clap audio parity {what}: max abs {abs:.3e}, rel {rel:.3e}, SNR {snr:.1} dB");
    if rel > REL || rel.is_nan() {
        return Err(format!("{what}: max error {abs:.3e} is {rel:.3e} of the largest reference value (limit {REL:e})"));
    }
    Ok(())
}

/// make_clap_audio.py's `wave(n)`: noise from a multiplicative hash plus a 110-sample triangle,
/// f64 arithmetic rounded once to f32.
fn wave(n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let h = (i * 2654435761) % (1 << 32);
            let noise = (h >> 16) as f64 / 65536.0 - 0.5;
            let tri = ((i % 110) as f64 - 55.0).abs() / 55.0 - 0.5;
            (0.3 * noise + 0.6 * tri) as f32
        })
        .collect()
}

/// The fixture's three raw waveforms and the crop offset of the long one.
fn raw_waves(g: &Golden) -> (Vec<Vec<f32>>, usize) {
    let exact = wave(480000);
    assert_eq!(&exact[..1000], &g.get("in.exact_head").data[..], "the Rust wave() differs from the fixture script's");
    let offset = g.get("in.long_offset").data[0] as usize;
    (vec![g.get("in.short").data.clone(), exact, wave(491616)], offset)
}

#[test]
fn clap_audio_matches_pytorch() {
    run(|gpu| async move {
        let g = Golden::load("clap_audio");
        let src = g.state();
        let w = pack_from(&gpu, &g, &src, false)?;
        assert_eq!(w.meta("components"), Some("clap_audio"));
        let model = clap::load_audio(&w).map_err(e)?;
        let c = &model.config;
        assert_eq!((c.depths.clone(), c.num_heads.clone(), c.windows.clone()), (vec![2; 4], vec![2, 2, 4, 8], vec![8; 4]), "sizes from the shapes");
        assert_eq!((c.embed_dim, c.patch_size, c.window_size, c.mel_bins, c.joint_embed_shape), (8, 4, 1024, 64, 16));
        let (raw, offset) = raw_waves(&g);
        let refs: Vec<&[f32]> = raw.iter().map(|v| v.as_slice()).collect();
        let offsets = [0, 0, offset];
        let clips = model.clips(&refs, &offsets).map_err(e)?;
        let mut trace = vec![];
        let out = model.forward(&clips, Some(&mut trace)).map_err(e)?;
        let mut compared = 0;
        for (name, x) in &trace {
            let want = g.get(&format!("inter.{name}"));
            // The fixture keeps items 0-1 (front end) or item 0 (Swin) of the batch of 3.
            assert_eq!(x.shape()[1..], want.shape[1..], "{name}");
            let got = x.to_vec().await.map_err(e)?;
            check(name, &got[..want.data.len()], &want.data)?;
            compared += 1;
        }
        assert_eq!(compared, g.intermediates().len(), "every intermediate of the fixture is compared");
        check("audio_embeds", &out.to_vec().await.map_err(e)?, &g.get("out.audio_embeds").data)?;
        let want_n = &g.get("out.audio_embeds_normalized").data;
        check("audio_embeds_normalized", &model.embed(&clips).map_err(e)?.to_vec().await.map_err(e)?, want_n)?;
        // The convenience path the pipeline calls gives the same.
        check("embed_waves", &model.embed_waves(&refs, &offsets).map_err(e)?.to_vec().await.map_err(e)?, want_n)?;
        Ok(())
    });
}

#[test]
fn clap_audio_fp16_pack_is_close_to_f32() {
    run(|gpu| async move {
        let g = Golden::load("clap_audio");
        let src = g.state();
        let m32 = clap::load_audio(&pack_from(&gpu, &g, &src, false)?).map_err(e)?;
        let m16 = clap::load_audio(&pack_from(&gpu, &g, &src, true)?).map_err(e)?;
        let (raw, offset) = raw_waves(&g);
        let refs: Vec<&[f32]> = raw.iter().map(|v| v.as_slice()).collect();
        let clips = m32.clips(&refs, &[0, 0, offset]).map_err(e)?;
        let a = m32.forward(&clips, None).map_err(e)?.to_vec().await.map_err(e)?;
        let b = m16.forward(&clips, None).map_err(e)?.to_vec().await.map_err(e)?;
        let (_, snr) = error_stats(&b, &a);
        eprintln!("clap audio tiny fp16 vs f32: SNR {snr:.1} dB");
        assert!(snr > 40.0, "fp16 pack diverges: SNR {snr:.1} dB");
        Ok(())
    });
}

/// Inputs the tower refuses, with errors naming the input.
#[test]
fn clap_audio_input_errors() {
    run(|gpu| async move {
        let g = Golden::load("clap_audio");
        let model = clap::load_audio(&pack_from(&gpu, &g, &g.state(), false)?).map_err(e)?;
        let short = vec![0.5f32; 1000];
        let long = vec![0.5f32; 480010];
        let err = model.clips(&[&short, &long], &[0, 11]).unwrap_err().to_string();
        assert!(err.contains("waveform 1") && err.contains("offset 11") && err.contains("10"), "{err}");
        let err = model.clips(&[&short], &[3]).unwrap_err().to_string();
        assert!(err.contains("waveform 0") && err.contains("only longer ones are cropped"), "{err}");
        let err = model.clips(&[&short], &[]).unwrap_err().to_string();
        assert!(err.contains("1 waveforms with 0 crop offsets"), "{err}");
        let mut bad = short.clone();
        bad[7] = f32::INFINITY;
        let err = model.clips(&[&bad], &[0]).unwrap_err().to_string();
        assert!(err.contains("sample 7"), "{err}");
        let wrong = Tensor::zeros(&gpu, [1, 1000]).map_err(e)?;
        let err = model.forward(&wrong, None).unwrap_err().to_string();
        assert!(err.contains("480000"), "{err}");
        Ok(())
    });
}

fn with(src: &MemSource, name: &str, t: HostTensor) -> MemSource {
    let mut tensors = src.tensors.clone();
    tensors.insert(name.to_string(), t);
    MemSource { name: src.name.clone(), tensors }
}

/// The fixed tensors a full checkpoint carries (STFT basis, relative position indices, shift
/// masks) are checked against the runtime's and not packed; wrong ones, unknown tensors and a
/// config that contradicts the shapes are errors naming the tensor.
#[test]
fn converter_checks_fixed_tensors_and_sizes() {
    let g = Golden::load("clap_audio");
    let src = g.state();
    let cfg = config(&g);
    let basis = frontend::stft_basis(1024);
    let mut full =
        with(&src, &format!("{AB}.spectrogram_extractor.stft.conv_real.weight"), HostTensor::new([513, 1, 1024], basis[..513 * 1024].to_vec()).unwrap());
    full = with(&full, &format!("{AB}.spectrogram_extractor.stft.conv_imag.weight"), HostTensor::new([513, 1, 1024], basis[513 * 1024..].to_vec()).unwrap());
    let idx: Vec<f32> = swin::relative_position_index(8).iter().map(|&v| v as f32).collect();
    full = with(&full, &format!("{AB}.layers.0.blocks.1.attn.relative_position_index"), HostTensor::new([64, 64], idx.clone()).unwrap());
    let mask = swin::shift_mask(64, 64, 8, 4);
    full = with(&full, &format!("{AB}.layers.0.blocks.1.attn_mask"), HostTensor::new([64, 64, 64], mask.clone()).unwrap());
    full = with(&full, &format!("{AB}.tscam_conv.weight"), HostTensor::zeros([10, 64, 2, 3]));
    let plan = audioldm::plan(&full, &cfg).unwrap();
    let names: Vec<&str> = plan.tensors.iter().map(|t| t.name.as_str()).collect();
    assert!(!names
        .iter()
        .any(|n| n.contains("spectrogram_extractor") || n.contains("relative_position_index") || n.contains("attn_mask") || n.contains("tscam")));
    assert!(names.contains(&format!("{AB}.layers.3.blocks.1.attn.v.bias").as_str()), "qkv split into q, k, v");

    let mut bad_basis = basis[..513 * 1024].to_vec();
    bad_basis[5000] += 1e-3;
    let err =
        audioldm::plan(&with(&src, &format!("{AB}.spectrogram_extractor.stft.conv_real.weight"), HostTensor::new([513, 1, 1024], bad_basis).unwrap()), &cfg)
            .err()
            .unwrap()
            .to_string();
    assert!(err.contains("conv_real") && err.contains("periodic-Hann DFT"), "{err}");
    let mut bad_idx = idx;
    bad_idx[3] = 0.0;
    let err = audioldm::plan(&with(&src, &format!("{AB}.layers.1.blocks.0.attn.relative_position_index"), HostTensor::new([64, 64], bad_idx).unwrap()), &cfg)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("layers.1.blocks.0.attn.relative_position_index"), "{err}");
    let mut bad_mask = mask;
    bad_mask[64 * 64 * 63] = 0.5;
    let err = audioldm::plan(&with(&src, &format!("{AB}.layers.0.blocks.1.attn_mask"), HostTensor::new([64, 64, 64], bad_mask).unwrap()), &cfg)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("layers.0.blocks.1.attn_mask") && err.contains("shift 4"), "{err}");
    // A mask of a 32×32 grid in stage 0: spec_size 128, not the config's 256.
    let err = audioldm::plan(&with(&src, &format!("{AB}.layers.0.blocks.1.attn_mask"), HostTensor::zeros([16, 64, 64])), &cfg).err().unwrap().to_string();
    assert!(err.contains("spec_size"), "{err}");
    let err = audioldm::plan(&with(&src, &format!("{AB}.layers.0.blocks.0.extra.weight"), HostTensor::zeros([2])), &cfg).err().unwrap().to_string();
    assert!(err.contains("layers.0.blocks.0.extra.weight"), "{err}");
    let mut v = g.config();
    v["clap_audio"]["embed_dim"] = serde_json::json!(96);
    let err = audioldm::plan(&src, &AudioLdmConfig::from_json(&v).unwrap()).err().unwrap().to_string();
    assert!(err.contains("clap_audio.embed_dim = 96") && err.contains("say 8"), "{err}");
    let mut src2 = src.tensors.clone();
    src2.remove(&format!("{AB}.layers.2.blocks.1.attn.qkv.bias"));
    let err = audioldm::plan(&MemSource { name: src.name.clone(), tensors: src2 }, &cfg).err().unwrap().to_string();
    assert!(err.contains("layers.2.blocks.1.attn.qkv.bias"), "{err}");
}

/// A pack without the audio tower (the text-only golden converts to one) says so, naming the
/// pack and the tensor.
#[test]
fn pack_without_the_audio_tower_is_a_clear_error() {
    run(|gpu| async move {
        let g = Golden::load("clap_text");
        let src = g.state();
        let plan = audioldm::plan(&src, &AudioLdmConfig::from_json(&g.config()).unwrap()).map_err(e)?;
        let w = Weights::from_bytes(&gpu, plan.to_bytes(&src, true).map_err(e)?, "text-only.safetensors").map_err(e)?;
        assert!(!clap::has_audio(&w));
        let err = clap::load_audio(&w).err().map(|x| x.to_string()).unwrap_or_default();
        assert!(err.contains("text-only.safetensors") && err.contains("audio_branch.patch_embed.proj.weight") && err.contains("convert"), "{err}");
        Ok(())
    });
}

/// The demo's random AudioLDM pack carries a random audio tower (real front end and geometry,
/// reduced widths): a waveform embeds to a finite unit vector of the demo's CLAP width.
#[test]
fn demo_pack_has_a_random_audio_tower() {
    run(|gpu| async move {
        use ssv2a::pipeline::{demo, Model};
        let packs = demo::packs(&gpu, demo::WEIGHTS_SEED, false).map_err(e)?;
        let w = &packs[&Model::AudioLdm];
        assert!(clap::has_audio(w));
        let model = clap::load_audio(w).map_err(e)?;
        assert_eq!(model.config, demo::demo_audio_config());
        let sine: Vec<f32> = (0..100_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let out = model.embed_waves(&[&sine, &wave(500_000)], &[0, 7]).map_err(e)?;
        assert_eq!(out.shape(), [2, demo::DEMO_DIM]);
        let v = out.to_vec().await.map_err(e)?;
        for row in v.chunks(demo::DEMO_DIM) {
            let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(row.iter().all(|x| x.is_finite()) && (n - 1.0).abs() < 1e-4, "{row:?}");
        }
        Ok(())
    });
}
