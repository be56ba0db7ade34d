//! AudioLDM's diffusion half against the original code (fixtures made by
//! `tests/reference/make_audioldm.py`): the UNet with every intermediate, the DDIM schedule and
//! single steps, a 5-step classifier-free-guided DDIM run with PyTorch's noise decoded to a mel
//! and waveform, DPM-Solver++(2M) against diffusers, and the embedding → waveform API (durations,
//! candidates, cancellation). Full-size checks are `#[ignore]`d (see each).
//!
//! Tolerances: f32 on both sides, abs 1e-4 + rel 1e-3 on activations (tiled GPU kernels vs
//! PyTorch's CPU GEMM/conv, as tests/models.rs); schedule arrays tighter where noted.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;

use common::golden::{compare_trace, Golden};
use common::{assert_close, run, Tol};
use ssv2a::convert::plan::{CheckpointSource, MemSource};
use ssv2a::convert::Checkpoint;
use ssv2a::models::audioldm::sampler::{self, Ddim, Denoiser, DpmSolver, Guided, Method, NoiseSchedule, Progress, Sampler, Spacing, StepNoise};
use ssv2a::models::audioldm::unet::{self, timestep_embedding, UNet, UnetConfig};
use ssv2a::models::audioldm::vae::Trace;
use ssv2a::models::audioldm::{self, latent_frames, AudioLdm, AudioLdmConfig, Decoder, GenerateSettings, LatentFrames};
use ssv2a::tensor::HostTensor;
use ssv2a::weights::{serialize_pack, PackTensor};
use ssv2a::{Error, Gpu, Tensor, Weights};

const ACT_TOL: Tol = Tol { abs: 1e-4, rel: 1e-3 };

fn e(x: ssv2a::Error) -> String {
    x.to_string()
}

/// Convert a state dict as an AudioLDM pack (f32) and load it.
fn pack(gpu: &Gpu, src: &MemSource, cfg: &AudioLdmConfig, name: &str) -> Result<Weights, String> {
    let plan = audioldm::plan(src, cfg).map_err(e)?;
    Weights::from_bytes(gpu, plan.to_bytes(src, false).map_err(e)?, name).map_err(e)
}

/// The tiny UNet of `audioldm_unet` (its EMA weights), loaded strictly.
fn tiny_unet(gpu: &Gpu) -> Result<(Golden, UNet), String> {
    let g = Golden::load("audioldm_unet");
    let cfg = AudioLdmConfig::from_json(&g.config()).map_err(e)?;
    let w = pack(gpu, &g.state(), &cfg, "audioldm_unet")?;
    let unet = audioldm::load_unet(&w).map_err(e)?;
    Ok((g, unet))
}

/// The whole tiny AudioLDM, converted from the Lightning checkpoint like `ssv2a convert`.
fn tiny_checkpoint_bytes(f16: bool) -> Vec<u8> {
    let dir = format!("{}/tests/fixtures/ckpt", env!("CARGO_MANIFEST_DIR"));
    let ckpt = Checkpoint::open(format!("{dir}/audioldm_tiny.ckpt")).unwrap();
    let src = CheckpointSource::new(&ckpt, "state_dict").unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(format!("{dir}/audioldm_tiny.json")).unwrap()).unwrap();
    let cfg = AudioLdmConfig::from_json(&json).unwrap();
    audioldm::plan(&src, &cfg).unwrap().to_bytes(&src, f16).unwrap()
}

fn tiny_audioldm(gpu: &Gpu) -> Result<AudioLdm, String> {
    let w = Weights::from_bytes(gpu, tiny_checkpoint_bytes(false), "audioldm_tiny").map_err(e)?;
    AudioLdm::load(&w).map_err(e)
}

/// Print the largest absolute error and the SNR (for the record; `--nocapture`).
fn report(what: &str, got: &[f32], want: &[f32]) {
    let max_abs = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
    let (rel, snr) = common::golden::error_stats(got, want);
    eprintln!("{what}: max abs err {max_abs:.2e}, max err / max |ref| {rel:.2e}, SNR {snr:.1} dB");
}

// ------------------------------------------------------------------------------------ UNet

#[test]
fn unet_config_has_the_original_head_counts() {
    let c = UnetConfig::s_full_v2();
    let from_pack = UnetConfig::from_json(AudioLdmConfig::s_full_v2().unet.as_ref().unwrap()).unwrap();
    assert_eq!(c, from_pack);
    // heads = channels / 32 (diffusers' stock config says 8 everywhere).
    assert_eq!(c.heads(256).unwrap(), (8, 32));
    assert_eq!(c.heads(384).unwrap(), (12, 32));
    assert_eq!(c.heads(640).unwrap(), (20, 32));
    assert_eq!(c.size_multiple(), 8);
    assert_eq!(c.time_embed_dim(), 512);
    for bad in [
        serde_json::json!({"use_scale_shift_norm": true}),
        serde_json::json!({"use_spatial_transformer": false}),
        serde_json::json!({"extra_film_use_concat": false}),
        serde_json::json!({"num_head_channels": 24}),
        serde_json::json!({"model_channels": 100}),
    ] {
        let mut v = serde_json::to_value(&c).unwrap();
        v.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        let err = UnetConfig::from_json(&v).unwrap_err().to_string();
        assert!(err.starts_with("UNet config"), "{bad}: {err}");
    }
}

#[test]
fn param_shapes_match_the_original_state_dict() {
    // Tiny: exactly the keys and shapes of the PyTorch module's state dict.
    let g = Golden::load("audioldm_unet");
    let cfg = UnetConfig::from_json(AudioLdmConfig::from_json(&g.config()).unwrap().unet.as_ref().unwrap()).unwrap();
    let mut got: Vec<(String, Vec<usize>)> = unet::param_shapes(&cfg).unwrap();
    got.sort();
    let want: Vec<(String, Vec<usize>)> =
        g.tensors.iter().filter_map(|(k, v)| k.strip_prefix("state.model.diffusion_model.").map(|k| (k.to_string(), v.shape.clone()))).collect();
    assert_eq!(got, want);
    // Full size: models.md §1.2 counts 185,036,552 parameters.
    let n: usize = unet::param_shapes(&UnetConfig::s_full_v2()).unwrap().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(n, 185_036_552);
}

#[test]
fn timestep_embedding_is_cos_then_sin() {
    // t = 0: cos = 1, sin = 0; the first frequency is 1, so column 0 is cos(t) and column 2 sin(t).
    let v = timestep_embedding(&[0.0, 2.0], 4);
    assert_eq!(&v[..4], &[1.0, 1.0, 0.0, 0.0]);
    assert_eq!(v[4], 2f32.cos());
    assert_eq!(v[6], 2f32.sin());
    // freq 1 = exp(−ln(10000)·1/2) = 0.01
    assert!((v[5] - (0.02f32).cos()).abs() < 1e-7 && (v[7] - 0.02f32.sin()).abs() < 1e-7);
}

#[test]
fn audioldm_unet_matches_pytorch() {
    run(|gpu| async move {
        let (g, unet) = tiny_unet(&gpu)?;
        let x = g.upload(&gpu, "in.x");
        let film = g.upload(&gpu, "in.film");
        let mut trace = vec![];
        let eps = unet.forward(&x, &g.get("in.t").data, &film, Some(&mut trace)).map_err(e)?;
        // Every named intermediate: t_emb, time_embed, film_emb, emb (concat order), each block.
        let names: Vec<&str> = trace.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names.len(), g.intermediates().len(), "trace {names:?}");
        compare_trace(&g, &trace, "", ACT_TOL).await?;
        let got = eps.to_vec().await.map_err(e)?;
        report("tiny UNet eps", &got, &g.get("out.eps").data);
        assert_close("eps", &got, &g.get("out.eps").data, ACT_TOL)
    });
}

/// The tiny UNet with every conv and linear that can split its reduction split (split-K, as
/// GPUs run the UNet's small maps), on a device of its own so the other tests keep the
/// adapter's setting: the same golden, and more dispatches than unsplit (the split ran).
#[test]
fn audioldm_unet_with_split_k_matches_pytorch() {
    run(|shared| async move {
        drop(shared); // a device of its own, on the same adapter
        let gpu = Gpu::new().await.map_err(e)?;
        common::check_backend(&gpu)?;
        let (g, unet) = tiny_unet(&gpu)?;
        let x = g.upload(&gpu, "in.x");
        let film = g.upload(&gpu, "in.film");
        let mut dispatches = vec![];
        for target in [0, 1 << 20] {
            gpu.set_parallel_target(Some(target));
            let before = gpu.dispatch_count();
            let eps = unet.forward(&x, &g.get("in.t").data, &film, None).map_err(e)?;
            let got = eps.to_vec().await.map_err(e)?;
            dispatches.push(gpu.dispatch_count() - before);
            report(&format!("tiny UNet eps, split-K below {target} workgroups"), &got, &g.get("out.eps").data);
            assert_close("eps", &got, &g.get("out.eps").data, ACT_TOL)?;
        }
        if dispatches[1] <= dispatches[0] {
            return Err(format!("split-K did not split anything: {} dispatches unsplit, {} split", dispatches[0], dispatches[1]));
        }
        Ok(())
    });
}

#[test]
fn unet_from_the_lightning_checkpoint_runs_the_ema_weights() {
    run(|gpu| async move {
        let g = Golden::load("audioldm_unet");
        let w = Weights::from_bytes(&gpu, tiny_checkpoint_bytes(false), "audioldm_tiny").map_err(e)?;
        assert_eq!(w.meta("ema"), Some("true"));
        let unet = audioldm::load_unet(&w).map_err(e)?;
        let eps = unet.forward(&g.upload(&gpu, "in.x"), &g.get("in.t").data, &g.upload(&gpu, "in.film"), None).map_err(e)?;
        assert_close("eps (EMA weights from the ckpt)", &eps.to_vec().await.map_err(e)?, &g.get("out.eps").data, ACT_TOL)
    });
}

#[test]
fn unet_fp16_pack_stays_close() {
    run(|gpu| async move {
        let g = Golden::load("audioldm_unet");
        let w = Weights::from_bytes(&gpu, tiny_checkpoint_bytes(true), "audioldm_tiny_f16").map_err(e)?;
        let unet = audioldm::load_unet(&w).map_err(e)?;
        let eps = unet.forward(&g.upload(&gpu, "in.x"), &g.get("in.t").data, &g.upload(&gpu, "in.film"), None).map_err(e)?;
        let (rel, snr) = common::golden::error_stats(&eps.to_vec().await.map_err(e)?, &g.get("out.eps").data);
        eprintln!("tiny UNet, fp16 pack: max err / max |ref| = {rel:.2e}, SNR {snr:.1} dB");
        if snr < 40.0 {
            return Err(format!("fp16 pack SNR {snr:.1} dB < 40 dB"));
        }
        Ok(())
    });
}

#[test]
fn unet_rejects_bad_inputs_with_errors() {
    run(|gpu| async move {
        let (_, unet) = tiny_unet(&gpu)?;
        let film = Tensor::zeros(&gpu, [1, 64]).map_err(e)?;
        let cases: Vec<(Vec<usize>, Vec<f32>, Vec<usize>)> = vec![
            (vec![1, 8, 3, 8], vec![1.0], vec![1, 64]),      // T not a multiple of 2
            (vec![1, 8, 4, 5], vec![1.0], vec![1, 64]),      // F not a multiple of 2
            (vec![1, 4, 4, 8], vec![1.0], vec![1, 64]),      // wrong channels
            (vec![1, 8, 4, 8], vec![1.0, 2.0], vec![1, 64]), // t length
            (vec![1, 8, 4, 8], vec![f32::NAN], vec![1, 64]),
            (vec![1, 8, 4, 8], vec![1.0], vec![1, 32]), // film width
            (vec![1, 8, 0, 8], vec![1.0], vec![1, 64]),
        ];
        for (xs, t, fs) in cases {
            let x = Tensor::zeros(&gpu, xs.clone()).map_err(e)?;
            let f = if fs == [1, 64] { film.clone() } else { Tensor::zeros(&gpu, fs.clone()).map_err(e)? };
            match unet.forward(&x, &t, &f, None) {
                Err(Error::Shape { .. } | Error::Arg { .. }) => {}
                other => return Err(format!("x {xs:?} t {t:?} film {fs:?}: expected a shape/arg error, got {:?}", other.map(|t| t.shape().to_vec()))),
            }
        }
        Ok(())
    });
}

// ------------------------------------------------------------------------------------ DDIM

#[test]
fn noise_schedule_matches_ldm() {
    let g = Golden::load("audioldm_ddim");
    let s = NoiseSchedule::ldm_linear(1000, 0.0015, 0.0195).unwrap();
    // f64 linspace/cumprod rounded to f32, as register_buffer stores it: bit-exact.
    assert_close("alphas_cumprod", s.alphas_cumprod(), &g.get("out.alphas_cumprod").data, Tol { abs: 0.0, rel: 0.0 }).unwrap();
    // models.md §1.5 check values.
    let ac = s.alphas_cumprod();
    for (t, want) in [(1, 0.99699443), (501, 0.11400478), (996, 0.00015095)] {
        assert!((ac[t] as f64 - want).abs() < 2e-8, "ᾱ[{t}] = {}", ac[t]);
    }
}

#[test]
fn ddim_schedule_matches_the_original() {
    let g = Golden::load("audioldm_ddim");
    let s = NoiseSchedule::ldm_linear(1000, 0.0015, 0.0195).unwrap();
    let d = Ddim::new(&s, 200, 1.0).unwrap();
    let ts: Vec<f32> = d.timesteps.iter().map(|&t| t as f32).collect();
    assert_eq!(d.timesteps[..3], [1, 6, 11]);
    assert_eq!(*d.timesteps.last().unwrap(), 996);
    let exact = Tol { abs: 0.0, rel: 0.0 };
    assert_close("ddim200.timesteps", &ts, &g.get("out.ddim200.timesteps").data, exact).unwrap();
    assert_close("ddim200.alphas", &d.alphas, &g.get("out.ddim200.alphas").data, exact).unwrap();
    assert_close("ddim200.alphas_prev", &d.alphas_prev, &g.get("out.ddim200.alphas_prev").data, exact).unwrap();
    // f64 arithmetic on the same f32 values, rounded once: at most 1 ulp apart.
    assert_close("ddim200.sigmas", &d.sigmas, &g.get("out.ddim200.sigmas").data, Tol { abs: 0.0, rel: 1.2e-7 }).unwrap();
    assert!((d.sigmas[199] - 0.30515).abs() < 1e-5 && (d.sigmas[0] - 0.027432).abs() < 1e-6, "σ {} {}", d.sigmas[199], d.sigmas[0]);
    // Step counts that do not divide T: exactly that many timesteps (upstream runs 8 for 7 and
    // indexes ᾱ[1000] for 3, 300 and 1000); 1..=999 all work.
    assert_eq!(Ddim::new(&s, 7, 1.0).unwrap().timesteps, (0..7).map(|i| i * 142 + 1).collect::<Vec<_>>());
    for n in [1, 3, 300, 999] {
        let d = Ddim::new(&s, n, 1.0).unwrap();
        assert_eq!(d.len(), n);
        assert!(*d.timesteps.last().unwrap() < 1000 && d.timesteps.windows(2).all(|w| w[0] < w[1]), "{n}");
    }
    for n in [0, 1000, 1001] {
        let err = Ddim::new(&s, n, 1.0).unwrap_err().to_string();
        assert!(err.contains("1..=999") && !err.contains('\n'), "{n}: {err}");
    }
    assert!(Ddim::new(&s, 200, 1.5).is_err());
    assert!(Ddim::new(&s, 200, f64::NAN).is_err());
}

#[test]
fn ddim_single_steps_match_the_original() {
    run(|gpu| async move {
        let g = Golden::load("audioldm_ddim");
        let s = NoiseSchedule::ldm_linear(1000, 0.0015, 0.0195).map_err(e)?;
        let d = Ddim::new(&s, 200, 1.0).map_err(e)?;
        for k in 0..3 {
            let index = g.get(&format!("in.step{k}.index")).data[0] as usize;
            assert_eq!(d.timesteps[index] as f32, g.get(&format!("in.step{k}.t")).data[0]);
            let (x, eps, z) =
                (g.upload(&gpu, &format!("in.step{k}.x")), g.upload(&gpu, &format!("in.step{k}.eps")), g.upload(&gpu, &format!("in.step{k}.noise")));
            let (x_prev, pred_x0) = d.step(index, &x, &eps, Some(&z)).map_err(e)?;
            assert_close(&format!("step{k} pred_x0"), &pred_x0.to_vec().await.map_err(e)?, &g.get(&format!("out.step{k}.pred_x0")).data, ACT_TOL)?;
            assert_close(&format!("step{k} x_prev"), &x_prev.to_vec().await.map_err(e)?, &g.get(&format!("out.step{k}.x_prev")).data, ACT_TOL)?;
        }
        // σ ≠ 0 without noise is an error, not a silent deterministic step.
        let x = g.upload(&gpu, "in.step0.x");
        assert!(d.step(0, &x, &x, None).is_err());
        assert!(d.step(200, &x, &x, None).is_err());
        Ok(())
    });
}

/// The tiny decoder of `audioldm_vae` + `audioldm_hifigan` (what the DDIM fixture decodes with).
fn tiny_decoder(gpu: &Gpu) -> Result<Decoder, String> {
    let gv = Golden::load("audioldm_vae");
    let gh = Golden::load("audioldm_hifigan");
    let mut src = gv.state();
    src.tensors.extend(gh.state().tensors);
    let mut cfg = AudioLdmConfig::from_json(&gv.config()).map_err(e)?;
    cfg.vocoder = AudioLdmConfig::from_json(&gh.config()).map_err(e)?.vocoder;
    Decoder::load(&pack(gpu, &src, &cfg, "tail")?).map_err(e)
}

#[test]
fn ddim_guided_run_matches_pytorch() {
    run(|gpu| async move {
        let g = Golden::load("audioldm_ddim");
        let (_, unet) = tiny_unet(&gpu)?;
        let s = NoiseSchedule::ldm_linear(1000, 0.0015, 0.0195).map_err(e)?;
        let steps = Sampler::new(&s, Method::Ddim { eta: 1.0 }, 5).map_err(e)?;
        let ts: Vec<f32> = steps.timesteps().iter().map(|&t| t as f32).collect();
        assert_eq!(ts, g.get("in.run.timesteps").data, "timesteps 801..1");
        let (b, fd) = (2, 64);
        let cond = g.upload(&gpu, "in.run.cond").reshape([b, fd]).map_err(e)?;
        let uncond = g.upload(&gpu, "in.run.uncond").reshape([b, fd]).map_err(e)?;
        let guided = Guided::new(&unet, &cond, Some(&uncond), 2.5).map_err(e)?;
        let mut trace: Trace = vec![];
        let mut seen = vec![];
        let latent = sampler::sample(
            &guided,
            &steps,
            g.upload(&gpu, "in.run.x_T"),
            &mut StepNoise::Given(g.get("in.run.noise")),
            &mut |p: Progress| seen.push((p.step, p.steps, p.t)),
            &|| false,
            Some(&mut trace),
        )
        .await
        .map_err(e)?;
        assert_eq!(seen, vec![(1, 5, 801), (2, 5, 601), (3, 5, 401), (4, 5, 201), (5, 5, 1)]);
        // step{i}.x, step{i}.eps_batched ([uncond; cond] rows), step{i}.pred_x0.
        assert_eq!(trace.len(), 15);
        compare_trace(&g, &trace, "run.", ACT_TOL).await?;
        let got = latent.to_vec().await.map_err(e)?;
        report("5-step CFG DDIM latent", &got, &g.get("out.run.latent").data);
        assert_close("run.latent", &got, &g.get("out.run.latent").data, ACT_TOL)?;
        // The generate_sample tail on the sampled latent.
        let dec = tiny_decoder(&gpu)?;
        let z = Decoder::clamp_rule(&latent).await.map_err(e)?;
        let mel = dec.latent_to_mel(&z, None).map_err(e)?;
        assert_close("run.mel", &mel.to_vec().await.map_err(e)?, &g.get("inter.run.mel").data, ACT_TOL)?;
        let wav = dec.mel_to_waveform(&mel, None).map_err(e)?.to_vec().await.map_err(e)?;
        report("5-step CFG DDIM waveform", &wav, &g.get("out.run.waveform").data);
        assert_close("run.waveform", &wav, &g.get("out.run.waveform").data, ACT_TOL)
    });
}

#[test]
fn guidance_scale_one_runs_the_conditional_batch_only() {
    run(|gpu| async move {
        let g = Golden::load("audioldm_unet");
        let (_, unet) = tiny_unet(&gpu)?;
        let film = g.upload(&gpu, "in.film");
        let x = g.upload(&gpu, "in.x");
        let t = g.get("in.t").data[0] as usize;
        let plain = unet.forward(&x, &[t as f32; 2], &film, None).map_err(e)?.to_vec().await.map_err(e)?;
        let zeros = Tensor::zeros(&gpu, [2, 64]).map_err(e)?;
        let mut tr = vec![];
        let one = Guided::new(&unet, &film, Some(&zeros), 1.0).map_err(e)?.eps(&x, t, Some(&mut tr)).map_err(e)?;
        assert!(tr.is_empty(), "no batched call at scale 1");
        assert_close("scale 1", &one.to_vec().await.map_err(e)?, &plain, Tol { abs: 0.0, rel: 0.0 })?;
        assert!(Guided::new(&unet, &film, Some(&zeros), f32::NAN).is_err());
        assert!(Guided::new(&unet, &zeros.reshape([1, 128]).map_err(e)?, None, 2.5).is_err());
        Ok(())
    });
}

// ------------------------------------------------------------------------------ DPM-Solver

/// Returns the fixture's ε for each timestep, whatever x is.
struct GivenEps {
    timesteps: Vec<usize>,
    eps: Vec<Tensor>,
    calls: Cell<usize>,
}

impl Denoiser for GivenEps {
    fn eps(&self, _x: &Tensor, t: usize, _trace: Option<&mut Trace>) -> ssv2a::Result<Tensor> {
        let i = self.calls.get();
        self.calls.set(i + 1);
        assert_eq!(self.timesteps[i], t, "call {i}");
        Ok(self.eps[i].clone())
    }
}

#[test]
fn dpm_solver_matches_diffusers() {
    run(|gpu| async move {
        let g = Golden::load("audioldm_dpmsolver");
        let s = NoiseSchedule::ldm_linear(1000, 0.0015, 0.0195).map_err(e)?;
        for (case, n, spacing) in [("a", 20, Spacing::Linspace), ("b", 10, Spacing::Leading { steps_offset: 1 })] {
            let d = DpmSolver::new(&s, n, spacing).map_err(e)?;
            let ts: Vec<f32> = d.timesteps.iter().map(|&t| t as f32).collect();
            assert_close(&format!("{case}: timesteps"), &ts, &g.get(&format!("out.{case}.timesteps")).data, Tol { abs: 0.0, rel: 0.0 })?;
            // diffusers accumulates ᾱ in f32 (ours: f64 rounded once), ≤ 3.5e-6 apart in σ.
            assert_close(&format!("{case}: sigmas"), &d.sigmas, &g.get(&format!("out.{case}.sigmas")).data, Tol { abs: 0.0, rel: 1e-5 })?;
            let eps_all = g.get(&format!("in.{case}.eps"));
            let m = eps_all.numel() / n;
            let shape = eps_all.shape[1..].to_vec();
            let eps = (0..n).map(|i| Tensor::from_slice(&gpu, &eps_all.data[i * m..(i + 1) * m], shape.clone()).unwrap()).collect();
            let den = GivenEps { timesteps: d.timesteps.clone(), eps, calls: Cell::new(0) };
            let mut trace = vec![];
            let out = sampler::sample(
                &den,
                &Sampler::DpmSolver(d),
                g.upload(&gpu, &format!("in.{case}.x_T")),
                &mut StepNoise::Given(&HostTensor::zeros([0])),
                &mut |_| {},
                &|| false,
                Some(&mut trace),
            )
            .await
            .map_err(e)?;
            let want = g.get(&format!("out.{case}.samples"));
            // trace step{i}.x is the sample after step i−1.
            for i in 1..n {
                let (_, x) = trace.iter().find(|(k, _)| *k == format!("step{i}.x")).unwrap();
                assert_close(&format!("{case}: sample after step {}", i - 1), &x.to_vec().await.map_err(e)?, &want.data[(i - 1) * m..i * m], ACT_TOL)?;
            }
            let got = out.to_vec().await.map_err(e)?;
            report(&format!("DPM-Solver++ case {case} final sample"), &got, &want.data[(n - 1) * m..]);
            assert_close(&format!("{case}: final sample"), &got, &want.data[(n - 1) * m..], ACT_TOL)?;
        }
        // Spacings that leave the schedule are errors.
        assert!(DpmSolver::new(&s, 0, Spacing::Linspace).is_err());
        assert!(DpmSolver::new(&s, 1000, Spacing::Linspace).is_err());
        assert_eq!(DpmSolver::new(&s, 10, Spacing::Trailing).map_err(e)?.timesteps, vec![999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
        Ok(())
    });
}

// --------------------------------------------------------------------------- generate API

#[test]
fn durations_round_up_or_fail_clearly() {
    // Full size (multiple 8): 10 s is native, 7 s = int(179.2) = 179 frames → 184, trimmed.
    assert_eq!(latent_frames(10.0, 8, 60.0).unwrap(), LatentFrames { requested: 256, padded: 256 });
    assert_eq!(latent_frames(5.0, 8, 60.0).unwrap(), LatentFrames { requested: 128, padded: 128 });
    assert_eq!(latent_frames(7.0, 8, 60.0).unwrap(), LatentFrames { requested: 179, padded: 184 });
    assert_eq!(latent_frames(0.04, 8, 60.0).unwrap(), LatentFrames { requested: 1, padded: 8 });
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.01, 61.0] {
        let err = latent_frames(bad, 8, 60.0).unwrap_err();
        assert!(matches!(err, Error::Arg { .. }), "{bad}: {err}");
        assert!(err.to_string().starts_with("duration:"), "{bad}: {err}");
    }
}

fn settings(duration_s: f64, candidates: usize, method: Method, steps: usize) -> GenerateSettings {
    GenerateSettings { method, steps, guidance: 2.5, candidates, duration_s }
}

fn embeddings(gpu: &Gpu, b: usize) -> Result<(Tensor, Vec<f32>), String> {
    let g = Golden::load("audioldm_ddim");
    let cond = g.get("in.run.cond");
    let emb = Tensor::from_slice(gpu, &cond.data[..b * 64], [b, 64]).map_err(e)?;
    Ok((emb, g.get("in.run.uncond").data[..64].to_vec()))
}

#[test]
fn generate_makes_deterministic_waveforms() {
    run(|gpu| async move {
        let ldm = tiny_audioldm(&gpu)?;
        let (emb, uncond) = embeddings(&gpu, 2)?;
        let s = settings(0.16, 2, Method::Ddim { eta: 1.0 }, 5); // T = int(4.096) = 4
        let mut steps = 0;
        let a = ldm.generate(&emb, &uncond, &s, 7, &mut |_| steps += 1, &|| false).await.map_err(e)?;
        assert_eq!(steps, 5);
        // B items (candidate 0 each); 4 latent frames → 8 mel frames → 160·8 + 32 samples.
        assert_eq!(a.shape(), &[2, 1312]);
        let a = a.to_vec().await.map_err(e)?;
        assert!(a.iter().all(|v| v.is_finite()));
        let b = ldm.generate(&emb, &uncond, &s, 7, &mut |_| {}, &|| false).await.map_err(e)?.to_vec().await.map_err(e)?;
        assert_eq!(a, b, "same seed, same waveform");
        let c = ldm.generate(&emb, &uncond, &s, 8, &mut |_| {}, &|| false).await.map_err(e)?;
        assert_ne!(a, c.to_vec().await.map_err(e)?, "another seed, another waveform");
        // DPM-Solver++ through the same API.
        let d = ldm
            .generate(&emb, &uncond, &settings(0.16, 1, Method::DpmSolverPp { spacing: Spacing::Leading { steps_offset: 1 } }, 4), 7, &mut |_| {}, &|| false)
            .await
            .map_err(e)?;
        assert_eq!(d.shape(), &[2, 1312]);
        Ok(())
    });
}

#[test]
fn generate_rounds_unsupported_durations_up_and_trims() {
    run(|gpu| async move {
        let ldm = tiny_audioldm(&gpu)?;
        let (emb, uncond) = embeddings(&gpu, 1)?;
        // 0.12 s: int(3.072) = 3 latent frames, not a multiple of 2 → 4 run, trimmed to what 3
        // frames decode to (6 mel frames → 160·6 + 32).
        let wav = ldm.generate(&emb, &uncond, &settings(0.12, 1, Method::Ddim { eta: 1.0 }, 2), 7, &mut |_| {}, &|| false).await.map_err(e)?;
        assert_eq!(wav.shape(), &[1, 992]);
        for bad in [0.0, -3.0, f64::NAN, 0.01, 1e9] {
            match ldm.generate(&emb, &uncond, &settings(bad, 1, Method::Ddim { eta: 1.0 }, 2), 7, &mut |_| {}, &|| false).await {
                Err(Error::Arg { op, .. }) if op == "duration" => {}
                other => return Err(format!("duration {bad}: expected a duration error, got {:?}", other.map(|t| t.shape().to_vec()))),
            }
        }
        // Other bad settings.
        for s in [settings(0.16, 0, Method::Ddim { eta: 1.0 }, 2), settings(0.16, 1, Method::Ddim { eta: 1.0 }, 0)] {
            assert!(ldm.generate(&emb, &uncond, &s, 7, &mut |_| {}, &|| false).await.is_err());
        }
        assert!(ldm.generate(&emb, &uncond[..10], &settings(0.16, 1, Method::Ddim { eta: 1.0 }, 2), 7, &mut |_| {}, &|| false).await.is_err());
        Ok(())
    });
}

#[test]
fn generate_can_be_cancelled_between_steps() {
    run(|gpu| async move {
        let ldm = tiny_audioldm(&gpu)?;
        let (emb, uncond) = embeddings(&gpu, 1)?;
        let s = settings(0.16, 1, Method::Ddim { eta: 1.0 }, 5);
        let done = Cell::new(0);
        let r = ldm.generate(&emb, &uncond, &s, 7, &mut |p| done.set(p.step), &|| done.get() >= 2).await;
        assert!(matches!(r, Err(Error::Cancelled)), "{:?}", r.map(|t| t.shape().to_vec()));
        assert_eq!(done.get(), 2, "two steps ran, then the cancel flag stopped the third");
        let r = ldm.generate(&emb, &uncond, &s, 7, &mut |_| panic!("no step may run"), &|| true).await;
        assert!(matches!(r, Err(Error::Cancelled)));
        Ok(())
    });
}

// ------------------------------------------------------------------------------------- CLI

/// `ssv2a stage unet` reads `x`, `t`, `film` and writes `eps` (../shared/spec/interfaces.md).
/// Needs the binary (default features); skipped in `--no-default-features` runs.
#[test]
fn cli_stage_unet_reads_x_t_film_and_writes_eps() {
    // Cargo names the binary even when `--no-default-features` leaves it unbuilt (or stale).
    let Some(bin) = option_env!("CARGO_BIN_EXE_ssv2a").filter(|b| cfg!(feature = "cli") && std::path::Path::new(b).exists()) else {
        eprintln!("SKIP: the ssv2a binary is not built (run with default features)");
        return;
    };
    if common::test_gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ssv2a-stage-unet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (wp, ip, op) = (dir.join("pack.safetensors"), dir.join("in.safetensors"), dir.join("out.safetensors"));
    std::fs::write(&wp, tiny_checkpoint_bytes(false)).unwrap();
    let g = Golden::load("audioldm_unet");
    let inputs: Vec<PackTensor> =
        [("x", "in.x"), ("t", "in.t"), ("film", "in.film")].iter().map(|(n, k)| PackTensor::f32(*n, g.get(k).shape.clone(), &g.get(k).data)).collect();
    std::fs::write(&ip, serialize_pack(&inputs, &BTreeMap::new()).unwrap()).unwrap();
    let out = std::process::Command::new(bin).args(["stage", "unet", "--weights"]).arg(&wp).arg("--input").arg(&ip).arg("--output").arg(&op).output().unwrap();
    assert!(out.status.success(), "ssv2a stage unet failed: {}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&op).unwrap();
    let (start, infos, _) = ssv2a::weights::parse_header(&bytes, "out").unwrap();
    let info = &infos["eps"];
    assert_eq!(info.shape, g.get("out.eps").shape);
    let (a, b) = info.data_offsets;
    let eps = ssv2a::weights::decode_f32(info.dtype, &bytes[start + a..start + b], "eps").unwrap();
    assert_close("stage unet eps", &eps, &g.get("out.eps").data, ACT_TOL).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------------------ full size

/// One full-size UNet step (10 s latent) on random weights, batch 2 and 6: peak GPU memory and
/// time, and the fp16 pack against the f32 pack (same random values). Slow on lavapipe (tens of
/// seconds per step and ≈2.5 GB of host memory): `cargo test --release --no-default-features
/// --test models_audioldm full_size -- --ignored --nocapture`.
#[test]
#[ignore = "full size: a 185M-parameter UNet, several minutes on lavapipe"]
fn full_size_unet_step_memory_and_fp16() {
    run(|gpu| async move {
        let cfg = UnetConfig::s_full_v2();
        for batch in [2, 6] {
            let r = ssv2a::bench::unet::unet_step(&gpu, &cfg, batch, 256, true, 1, false, ssv2a::bench::native_now).await.map_err(e)?;
            eprintln!("{r}");
        }
        // fp16 vs f32 storage of the same weights, batch 2.
        let mut outs = vec![];
        for f16 in [false, true] {
            let w = Weights::from_bytes(&gpu, ssv2a::bench::unet::random_unet_pack(&cfg, f16, 0x5eed).map_err(e)?, "random").map_err(e)?;
            let unet = audioldm::load_unet(&w).map_err(e)?;
            let mut rng = ssv2a::rng::Rng::new(3);
            let x = Tensor::from_slice(&gpu, &rng.normals(2 * 8 * 256 * 16), [2, 8, 256, 16]).map_err(e)?;
            let film = Tensor::from_slice(&gpu, &rng.normals(2 * 512), [2, 512]).map_err(e)?.l2_normalize().map_err(e)?;
            outs.push(unet.forward(&x, &[996.0, 501.0], &film, None).map_err(e)?.to_vec().await.map_err(e)?);
        }
        let (rel, snr) = common::golden::error_stats(&outs[1], &outs[0]);
        eprintln!("full-size UNet step, fp16 pack vs f32 pack: max err / max |f32| = {rel:.2e}, SNR {snr:.1} dB");
        if !outs[0].iter().all(|v| v.is_finite()) || snr < 30.0 {
            return Err(format!("fp16 SNR {snr:.1} dB"));
        }
        Ok(())
    });
}

// ------------------------------------------------------------------ a size no release has

/// `tests/fixtures/ckpt/audioldm_m_like.ckpt`: widths, depths, latent channels, vocoder kernels
/// and noise schedule of no release, with `hyper_parameters` (make_audioldm.py `make_m_like`).
fn m_like_ckpt() -> Checkpoint {
    Checkpoint::open(format!("{}/tests/fixtures/ckpt/audioldm_m_like.ckpt", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// What `ssv2a convert --kind audioldm` runs on a checkpoint (the registry's converter; the GPU
/// step that adds CLAP's "" embedding is left out here).
fn convert_ckpt<'a>(ckpt: &'a Checkpoint, config: Option<&serde_json::Value>) -> ssv2a::Result<(ssv2a::convert::plan::Plan, CheckpointSource<'a>)> {
    let convert = ssv2a::registry::kind("audioldm").and_then(|k| k.convert).expect("audioldm converts");
    convert(ckpt, config)
}

/// Every tensor of the m-like checkpoint's state dict in memory (to break it).
fn m_like_source() -> MemSource {
    let ckpt = m_like_ckpt();
    let src = CheckpointSource::new(&ckpt, "state_dict").unwrap();
    use ssv2a::convert::plan::TensorSource;
    let tensors = src.names().into_iter().map(|n| (n.clone(), HostTensor::new(src.shape(&n).unwrap(), src.read_f32(&n).unwrap()).unwrap())).collect();
    MemSource { name: "m_like.ckpt".into(), tensors }
}

/// Convert a state dict like the registry's converter does for a checkpoint without
/// `hyper_parameters` (shapes, `--config`, defaults).
fn convert_source(src: &MemSource, config: Option<&serde_json::Value>) -> ssv2a::Result<ssv2a::convert::plan::Plan> {
    use audioldm::resolve::{resolve, Stated};
    let stated: Vec<Stated> = config.iter().map(|v| Stated { origin: "--config".into(), json: v }).collect();
    let r = resolve(src, &stated)?;
    let mut plan = audioldm::plan(src, &r.config)?;
    plan.metadata.insert(audioldm::CONFIG_DEFAULTS_META.into(), r.notes.join("; "));
    audioldm::check_complete(&plan, src)?;
    Ok(plan)
}

#[test]
fn m_like_config_is_read_from_shapes_and_hyper_parameters() {
    let ckpt = m_like_ckpt();
    let (plan, _) = convert_ckpt(&ckpt, None).unwrap();
    let cfg: AudioLdmConfig = serde_json::from_str(&plan.config_json).unwrap();
    let g = Golden::load("audioldm_m_like");
    let hp = &g.config()["hyper_parameters"];
    let want_unet: UnetConfig = serde_json::from_value(hp["unet_config"]["params"].clone()).unwrap();
    let u = UnetConfig::from_json(cfg.unet.as_ref().unwrap()).unwrap();
    assert_eq!(u, want_unet, "UNet");
    assert_eq!(u.num_head_channels, 16, "from hyper_parameters, not the default 32");
    let want_vae: ssv2a::models::audioldm::vae::VaeConfig = serde_json::from_value(hp["first_stage_config"]["params"].clone()).unwrap();
    assert_eq!(cfg.vae, want_vae, "VAE");
    let want_voc: ssv2a::models::hifigan::Config = serde_json::from_value(g.config()["h"].clone()).unwrap();
    assert_eq!(cfg.vocoder, want_voc, "vocoder");
    let d = &cfg.diffusion;
    assert_eq!((d.timesteps, d.linear_start, d.linear_end, d.channels, d.latent_f_size), (1000, 0.00085, 0.012, 4, 4));
    assert_eq!(plan.metadata["ema"], "false");
    let notes = &plan.metadata[audioldm::CONFIG_DEFAULTS_META];
    assert!(notes.contains("upsample_rates") && notes.contains("resblock_dilation_sizes") && !notes.contains("num_head_channels"), "{notes}");
    // The VAE decoder's and vocoder's tensor lists at this size are exactly the original modules'.
    {
        use ssv2a::convert::plan::TensorSource;
        let src = CheckpointSource::new(&ckpt, "state_dict").unwrap();
        let lists =
            [("first_stage_model.", audioldm::vae::param_shapes(&cfg.vae)), ("first_stage_model.vocoder.", ssv2a::models::hifigan::param_shapes(&cfg.vocoder))];
        for (prefix, want) in lists {
            let mut want: Vec<(String, Vec<usize>)> = want.into_iter().map(|(k, s)| (format!("{prefix}{k}"), s)).collect();
            want.sort();
            let in_part = |n: &str| {
                n.starts_with(prefix)
                    && (prefix.ends_with("vocoder.")
                        || !n.starts_with("first_stage_model.vocoder.")
                            && !n.starts_with("first_stage_model.encoder.")
                            && !n.starts_with("first_stage_model.quant_conv."))
            };
            let mut got: Vec<(String, Vec<usize>)> = src.names().into_iter().filter(|n| in_part(n)).map(|n| (n.clone(), src.shape(&n).unwrap())).collect();
            got.sort();
            assert_eq!(got, want, "{prefix}");
        }
    }
    // CLAP's text tower from its shapes too (width 64: one head).
    assert_eq!(cfg.clap_text.as_ref().map(|c| (c.hidden_size, c.num_attention_heads, c.joint_embed_shape)), Some((64, 1, 16)));

    // The same tensors without hyper_parameters: the released default for the head width (and
    // the schedule from `betas`), each listed in the pack.
    let src = m_like_source();
    let plan = convert_source(&src, None).unwrap();
    let cfg: AudioLdmConfig = serde_json::from_str(&plan.config_json).unwrap();
    assert_eq!(UnetConfig::from_json(cfg.unet.as_ref().unwrap()).unwrap().num_head_channels, 32);
    assert_eq!((cfg.diffusion.linear_start, cfg.diffusion.linear_end), (0.00085, 0.012), "from betas");
    let notes = &plan.metadata[audioldm::CONFIG_DEFAULTS_META];
    assert!(notes.contains("num_head_channels = 32") && notes.contains("`betas`"), "{notes}");
    // ... which --config overrides.
    let given = serde_json::json!({"unet_config": {"params": {"num_head_channels": 16}}});
    let cfg: AudioLdmConfig = serde_json::from_str(&convert_source(&src, Some(&given)).unwrap().config_json).unwrap();
    assert_eq!(UnetConfig::from_json(cfg.unet.as_ref().unwrap()).unwrap().num_head_channels, 16);
}

#[test]
fn m_like_checkpoint_converts_without_config_and_matches_pytorch() {
    run(|gpu| async move {
        let g = Golden::load("audioldm_m_like");
        let ckpt = m_like_ckpt();
        let (plan, src) = convert_ckpt(&ckpt, None).map_err(e)?;
        let w = Weights::from_bytes(&gpu, plan.to_bytes(&src, false).map_err(e)?, "audioldm_m_like").map_err(e)?;
        let ldm = AudioLdm::load(&w).map_err(e)?;
        let rel = |what: &str, got: &[f32], want: &[f32]| -> Result<(), String> {
            report(what, got, want);
            let (rel, _) = common::golden::error_stats(got, want);
            if rel > 1e-4 {
                return Err(format!("{what}: max err / max |ref| {rel:.2e} > 1e-4"));
            }
            assert_close(what, got, want, ACT_TOL)
        };
        // UNet ε with every block's output.
        let mut trace = vec![];
        let eps = ldm.unet.forward(&g.upload(&gpu, "in.unet.x"), &g.get("in.unet.t").data, &g.upload(&gpu, "in.unet.film"), Some(&mut trace)).map_err(e)?;
        compare_trace(&g, &trace, "unet.", ACT_TOL).await?;
        rel("m-like UNet eps", &eps.to_vec().await.map_err(e)?, &g.get("out.unet.eps").data)?;
        // VAE mel (latent / scale_factor, as decode_first_stage), then the vocoder on it.
        let mut trace = vec![];
        let mel = ldm.decoder.latent_to_mel(&g.upload(&gpu, "in.vae.latent"), Some(&mut trace)).map_err(e)?;
        compare_trace(&g, &trace, "vae.", ACT_TOL).await?;
        rel("m-like VAE mel", &mel.to_vec().await.map_err(e)?, &g.get("out.vae.mel").data)?;
        let tail = ldm.decoder.mel_to_waveform(&mel, None).map_err(e)?;
        rel("m-like VAE mel -> HiFi-GAN waveform", &tail.to_vec().await.map_err(e)?, &g.get("out.tail.waveform").data)?;
        // HiFi-GAN on its own input.
        let mut trace = vec![];
        let wav = ldm.decoder.mel_to_waveform(&g.upload(&gpu, "in.voc.mel"), Some(&mut trace)).map_err(e)?;
        compare_trace(&g, &trace, "voc.", ACT_TOL).await?;
        rel("m-like HiFi-GAN waveform", &wav.to_vec().await.map_err(e)?, &g.get("out.voc.waveform").data)?;
        // And it generates: 0.32 s = 8 latent frames (a multiple of 4 at 3 levels) → 32 mel frames.
        let emb = Tensor::from_slice(&gpu, &g.get("in.unet.film").data[..16], [1, 16]).map_err(e)?;
        let uncond = g.get("in.unet.film").data[16..].to_vec();
        let out = ldm.generate(&emb, &uncond, &settings(0.32, 2, Method::Ddim { eta: 1.0 }, 3), 5, &mut |_| {}, &|| false).await.map_err(e)?;
        assert_eq!(out.shape(), &[1, 160 * 32 + 32]);
        assert!(out.to_vec().await.map_err(e)?.iter().all(|v| v.is_finite()));
        Ok(())
    });
}

/// A broken checkpoint: each error names the tensor (and the shape found); nothing converts.
#[test]
fn broken_m_like_checkpoints_name_the_tensor() {
    let full = m_like_source();
    let without = |name: &str| {
        let mut s = MemSource { name: full.name.clone(), tensors: full.tensors.clone() };
        assert!(s.tensors.remove(name).is_some(), "{name}");
        s
    };
    let reshaped = |name: &str, shape: Vec<usize>| {
        let mut s = MemSource { name: full.name.clone(), tensors: full.tensors.clone() };
        let n = shape.iter().product();
        s.tensors.insert(name.into(), HostTensor::new(shape, vec![0.0; n]).unwrap());
        s
    };
    let cases: Vec<(MemSource, Option<serde_json::Value>, Vec<&str>)> = vec![
        (without("model.diffusion_model.middle_block.1.proj_in.weight"), None, vec!["model.diffusion_model.middle_block.1.proj_in.weight", "missing"]),
        (without("model.diffusion_model.output_blocks.4.0.skip_connection.weight"), None, vec!["output_blocks.4.0.skip_connection.weight"]),
        (without("first_stage_model.vocoder.conv_post.weight"), None, vec!["first_stage_model.vocoder.conv_post.weight"]),
        (without("scale_factor"), None, vec!["scale_factor"]),
        (reshaped("first_stage_model.decoder.conv_in.weight", vec![48, 4, 3, 3]), None, vec!["first_stage_model.decoder.conv_in.weight", "[48, 4, 3, 3]"]),
        (reshaped("first_stage_model.vocoder.ups.2.weight", vec![8, 3, 8]), None, vec!["first_stage_model.vocoder.ups.2.weight", "[8, 3, 8]"]),
        (
            reshaped("model.diffusion_model.input_blocks.3.0.in_layers.2.weight", vec![96, 64, 3, 3]),
            None,
            vec!["input_blocks.3.0.in_layers.2.weight", "[96, 64, 3, 3]"],
        ),
        (
            reshaped("model.diffusion_model.input_blocks.1.0.extra.weight", vec![3]),
            None,
            vec!["model.diffusion_model.input_blocks.1.0.extra.weight", "not part of the UNet"],
        ),
        (
            reshaped("model.diffusion_model.output_blocks.0.0.in_layers.2.weight", vec![64, 64, 3, 3]),
            None,
            vec!["output_blocks.0.0.in_layers.2.weight", "[64, 64, 3, 3]"],
        ),
        (reshaped("betas", vec![1000]), None, vec!["`betas`"]),
        (without("cond_stage_model.model.text_projection.0.bias"), None, vec!["text_projection.0.bias"]),
        // Stated values that the shapes contradict.
        (
            m_like_source(),
            Some(serde_json::json!({"unet_config": {"params": {"model_channels": 128}}})),
            vec!["input_blocks.0.0.weight", "[64, 4, 3, 3]", "--config", "128"],
        ),
        (
            m_like_source(),
            Some(serde_json::json!({"first_stage_config": {"params": {"ddconfig": {"ch": 128}}}})),
            vec!["decoder.up.0.block.0.conv2.weight", "ch 128", "--config"],
        ),
        (m_like_source(), Some(serde_json::json!({"linear_start": 0.0015})), vec!["`betas`", "linear_start from --config"]),
        (m_like_source(), Some(serde_json::json!({"h": {"upsample_rates": [4, 4, 2, 2]}})), vec!["ups.4.weight", "upsample_rates"]),
    ];
    for (src, config, want) in cases {
        let err = match convert_source(&src, config.as_ref()) {
            Ok(_) => panic!("converted despite {want:?}"),
            Err(err) => err.to_string(),
        };
        eprintln!("{err}");
        assert!(want.iter().all(|w| err.contains(w)) && err.contains("m_like.ckpt") && !err.contains('\n'), "expected {want:?} in: {err}");
    }
}
