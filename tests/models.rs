//! Every model against its PyTorch golden (`tests/fixtures`, made by `tests/reference/`): the
//! fixture's state dict goes through the real converter rules in memory (f32 pack, so the
//! comparison measures the kernels, not fp16 rounding), the model runs on the GPU, and the
//! output and every intermediate are compared.
//!
//! Tolerances: f32 on both sides, different summation orders (tiled GPU kernels vs PyTorch's
//! CPU GEMM/conv); errors grow through tens of layers with values of order 1–10, hence abs
//! 1e-4 + rel 1e-3 on activations unless a case says otherwise.

mod common;

use common::golden::{compare_trace, Golden};
use common::{assert_close, run, Tol};
use ssv2a::models::audioldm::{self, vae::Vae, AudioLdmConfig, Decoder};
use ssv2a::models::hifigan::HifiGan;
use ssv2a::{Gpu, Tensor, Weights};

const ACT_TOL: Tol = Tol { abs: 1e-4, rel: 1e-3 };

fn e(x: ssv2a::Error) -> String {
    x.to_string()
}

/// Convert the fixture's state dict as an AudioLDM pack (f32) and load it.
fn audioldm_pack(gpu: &Gpu, g: &Golden, cfg: &AudioLdmConfig) -> Result<Weights, String> {
    let src = g.state();
    let plan = audioldm::plan(&src, cfg).map_err(e)?;
    let bytes = plan.to_bytes(&src, false).map_err(e)?;
    Weights::from_bytes(gpu, bytes, &g.name).map_err(e)
}

#[test]
fn audioldm_vae_matches_pytorch() {
    run(|gpu| async move {
        let g = Golden::load("audioldm_vae");
        let cfg = AudioLdmConfig::from_json(&g.config()).map_err(e)?;
        let w = audioldm_pack(&gpu, &g, &cfg)?;
        let vae = Vae::load(&w, &cfg.vae).map_err(e)?;
        let scale = w.host("scale_factor", &w.shape_of("scale_factor").map_err(e)?).map_err(e)?.data[0];
        let latent = g.upload(&gpu, "in.latent");
        let z = latent.scale(1.0f32 / scale).map_err(e)?;
        assert_close("scaled_latent", &z.to_vec().await.map_err(e)?, &g.get("inter.scaled_latent").data, Tol { abs: 0.0, rel: 1e-7 })?;
        let mut trace = vec![];
        let mel = vae.decode(&z, Some(&mut trace)).map_err(e)?;
        compare_trace(&g, &trace, "", ACT_TOL).await?;
        assert_close("mel", &mel.to_vec().await.map_err(e)?, &g.get("out.mel").data, ACT_TOL)?;
        w.sub("first_stage_model").finish().map_err(e)
    });
}

async fn hifigan_case(gpu: Gpu, name: &str) -> Result<(), String> {
    let g = Golden::load(name);
    let cfg = AudioLdmConfig::from_json(&g.config()).map_err(e)?;
    let w = audioldm_pack(&gpu, &g, &cfg)?;
    let voc = HifiGan::load(&w.sub("first_stage_model.vocoder"), &cfg.vocoder).map_err(e)?;
    let mel = g.get("in.mel");
    let (n, f, m) = (mel.shape[0], mel.shape[2], mel.shape[3]);
    let x = Tensor::upload(&gpu, mel).map_err(e)?.reshape([n, f, m]).map_err(e)?.permute(&[0, 2, 1]).map_err(e)?;
    let mut trace = vec![];
    let wav = voc.forward(&x, Some(&mut trace)).map_err(e)?;
    compare_trace(&g, &trace, "", ACT_TOL).await?;
    if wav.shape()[1] != cfg.vocoder.output_len(f) {
        return Err(format!("{name}: {} samples, config says {}", wav.shape()[1], cfg.vocoder.output_len(f)));
    }
    assert_close(&format!("{name} waveform"), &wav.to_vec().await.map_err(e)?, &g.get("out.waveform").data, ACT_TOL)?;
    w.finish().map_err(e)
}

#[test]
fn audioldm_hifigan_matches_pytorch() {
    run(|gpu| async move { hifigan_case(gpu, "audioldm_hifigan").await });
}

#[test]
fn audioldm_hifigan_weight_norm_is_folded() {
    run(|gpu| async move { hifigan_case(gpu, "audioldm_hifigan_wn").await });
}

#[test]
fn audioldm_decode_tail_matches_pytorch() {
    run(|gpu| async move {
        // The tail fixture uses the weights of audioldm_vae + audioldm_hifigan.
        let gv = Golden::load("audioldm_vae");
        let gh = Golden::load("audioldm_hifigan");
        let mut src = gv.state();
        src.tensors.extend(gh.state().tensors);
        let mut cfg = AudioLdmConfig::from_json(&gv.config()).map_err(e)?;
        cfg.vocoder = AudioLdmConfig::from_json(&gh.config()).map_err(e)?.vocoder;
        let plan = audioldm::plan(&src, &cfg).map_err(e)?;
        let w = Weights::from_bytes(&gpu, plan.to_bytes(&src, false).map_err(e)?, "tail").map_err(e)?;
        let dec = Decoder::load(&w).map_err(e)?;
        let g = Golden::load("audioldm_decode_tail");
        for case in ["a", "b"] {
            let latent = g.upload(&gpu, &format!("in.{case}.latent"));
            let z = Decoder::clamp_rule(&latent).await.map_err(e)?;
            assert_close(
                &format!("{case}: clamp rule"),
                &z.to_vec().await.map_err(e)?,
                &g.get(&format!("inter.{case}.latent_clamped")).data,
                Tol { abs: 0.0, rel: 0.0 },
            )?;
            let mel = dec.latent_to_mel(&z, None).map_err(e)?;
            assert_close(&format!("{case}: mel"), &mel.to_vec().await.map_err(e)?, &g.get(&format!("inter.{case}.mel")).data, ACT_TOL)?;
            let wav = dec.latent_to_waveform(&latent).await.map_err(e)?;
            assert_close(&format!("{case}: waveform"), &wav.to_vec().await.map_err(e)?, &g.get(&format!("out.{case}.waveform")).data, ACT_TOL)?;
        }
        Ok(())
    });
}
