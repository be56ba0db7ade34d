//! SSV2A's own modules against the PyTorch goldens made by `tests/reference/make_ssv2a.py`
//! (`ssv2a_modules`, `ssv2a_cyclemix`, `ssv2a_aggregator`) and the converters against the tiny
//! official-layout checkpoints (`ckpt/ssv2a_tiny.pth`, `ckpt/agg_tiny.pth`).
//!
//! The fixtures' state dicts go through the real converter rules (f32 packs), all noise,
//! slot permutations and dropout masks are injected, and every intermediate is compared.
//! Tolerances: f32 on both sides with different summation orders; abs 1e-4 + rel 1e-3 on
//! activations of order 1 (ACT_TOL), as in tests/models.rs.

mod common;

use std::collections::BTreeMap;

use common::golden::{compare_trace, pack_values, Golden};
use common::{assert_close, run, Tol};
use ssv2a::convert::plan::{CheckpointSource, MemSource, TensorSource};
use ssv2a::convert::Checkpoint;
use ssv2a::models::ssv2a::aggregator::{self, AggregatorMode};
use ssv2a::models::ssv2a::{
    self as m, Aggregator, AggregatorConfig, CycleMixOptions, CycleMixTrace, Draw, DrawKind, DropoutMasks, MixInput, Noise, RemixMode, Ssv2a,
};
use ssv2a::rng::Rng;
use ssv2a::tensor::HostTensor;
use ssv2a::{Gpu, Tensor, Weights};

const ACT_TOL: Tol = Tol { abs: 1e-4, rel: 1e-3 };

fn e(x: ssv2a::Error) -> String {
    x.to_string()
}

fn ckpt_path(name: &str) -> String {
    format!("{}/tests/fixtures/ckpt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn ssv2a_pack(gpu: &Gpu, g: &Golden) -> Result<Weights, String> {
    let src = g.state();
    let cfg = m::Config::from_json(&g.config()).map_err(e)?;
    let plan = m::plan(&src, &cfg).map_err(e)?;
    Weights::from_bytes(gpu, plan.to_bytes(&src, false).map_err(e)?, &g.name).map_err(e)
}

fn agg_pack(gpu: &Gpu, g: &Golden) -> Result<Weights, String> {
    let src = g.state();
    let cfg = AggregatorConfig::from_source(&src, Some(&g.config())).map_err(e)?;
    let plan = aggregator::plan(&src, &cfg).map_err(e)?;
    Weights::from_bytes(gpu, plan.to_bytes(&src, false).map_err(e)?, &g.name).map_err(e)
}

/// Replays a fixture's stored noise: each draw is the slice of a stored tensor that PyTorch
/// used for it (`<prefix>noise.<kind>` indexed by round and candidate).
struct Injected<'a> {
    g: &'a Golden,
    prefix: String,
    /// eps tensors outside Cycle Mix: kind -> fixture key.
    plain: BTreeMap<&'static str, String>,
    uses: usize,
}

impl<'a> Injected<'a> {
    fn cycle(g: &'a Golden, case: &str) -> Self {
        Injected { g, prefix: format!("in.{case}.noise."), plain: BTreeMap::new(), uses: 0 }
    }
    fn plain(g: &'a Golden, keys: &[(&'static str, &str)]) -> Self {
        Injected { g, prefix: String::new(), plain: keys.iter().map(|(k, v)| (*k, v.to_string())).collect(), uses: 0 }
    }
    /// Row `i` of the outermost dim of `key`.
    fn row(&self, key: &str, i: usize) -> Vec<f32> {
        let t = self.g.get(key);
        let per = t.numel() / t.shape[0];
        t.data[i * per..(i + 1) * per].to_vec()
    }
}

impl Noise for Injected<'_> {
    fn normals(&mut self, d: Draw, n: usize) -> ssv2a::Result<Vec<f32>> {
        self.uses += 1;
        let name = match d.kind {
            DrawKind::FoldClips => "fold_clips",
            DrawKind::FoldClaps => "fold_claps",
            DrawKind::Generator => "gen",
            DrawKind::Remix => "remix",
            DrawKind::Aggregator => "aggregator",
            other => panic!("unexpected normal draw {other:?}"),
        };
        let v = if let Some(k) = self.plain.get(name) {
            self.g.get(k).data.clone()
        } else {
            let key = format!("{}{name}", self.prefix);
            match d.kind {
                DrawKind::FoldClips => self.g.get(&key).data.clone(),
                DrawKind::Generator | DrawKind::FoldClaps => self.row(&key, d.round),
                DrawKind::Remix => {
                    let r = self.g.get(&key); // [R, S, N, B, C]
                    let per = r.numel() / (r.shape[0] * r.shape[1]);
                    let i = d.round * r.shape[1] + d.candidate;
                    r.data[i * per..(i + 1) * per].to_vec()
                }
                _ => unreachable!(),
            }
        };
        assert_eq!(v.len(), n, "{d:?}: stored noise has {} values, the model asked for {n}", v.len());
        Ok(v)
    }
    fn permutation(&mut self, d: Draw, n: usize) -> ssv2a::Result<Vec<usize>> {
        let p = self.g.get(&format!("{}perm", self.prefix)); // [R, S, slot]
        let i = d.round * p.shape[1] + d.candidate;
        assert_eq!(p.shape[2], n);
        Ok(p.data[i * n..(i + 1) * n].iter().map(|&x| x as usize).collect())
    }
    fn uniforms(&mut self, d: Draw, _: usize) -> ssv2a::Result<Vec<f32>> {
        panic!("unexpected uniform draw {d:?}")
    }
}

#[test]
fn ssv2a_modules_match_pytorch() {
    run(|gpu| async move {
        let g = Golden::load("ssv2a_modules");
        let w = ssv2a_pack(&gpu, &g)?;
        let model = Ssv2a::load(&w).map_err(e)?;
        for (stage, enc) in [("manifold_clip", &model.manifold.clip_encoder), ("manifold_clap", &model.manifold.clap_encoder)] {
            let mut trace = vec![];
            let (mu, lv) = enc.forward(&g.upload(&gpu, &format!("in.{stage}.x")), Some(&mut trace)).map_err(e)?;
            compare_trace(&g, &trace, &format!("{stage}."), ACT_TOL).await?;
            assert_close(&format!("{stage}.mu"), &mu.to_vec().await.map_err(e)?, &g.get(&format!("out.{stage}.mu")).data, ACT_TOL)?;
            assert_close(&format!("{stage}.logvar"), &lv.to_vec().await.map_err(e)?, &g.get(&format!("out.{stage}.logvar")).data, ACT_TOL)?;
        }
        let mut trace = vec![];
        let (mu, lv) = model.generator.forward(&g.upload(&gpu, "in.generator.x"), Some(&mut trace)).map_err(e)?;
        compare_trace(&g, &trace, "generator.", ACT_TOL).await?;
        assert_close("generator.mu", &mu.to_vec().await.map_err(e)?, &g.get("out.generator.mu").data, ACT_TOL)?;
        assert_close("generator.logvar", &lv.to_vec().await.map_err(e)?, &g.get("out.generator.logvar").data, ACT_TOL)?;
        let mut trace = vec![];
        let (src, clips) = (g.upload(&gpu, "in.remixer.src"), g.upload(&gpu, "in.remixer.clips"));
        let (mu, lv) = model.remixer.forward(&src, &clips, Some(&mut trace)).map_err(e)?;
        compare_trace(&g, &trace, "remixer.", ACT_TOL).await?;
        assert!(trace.iter().any(|(n, _)| n == "style_encoder.encoder.0.esa.context"), "the context was not traced");
        assert_close("remixer.mu", &mu.to_vec().await.map_err(e)?, &g.get("out.remixer.mu").data, ACT_TOL)?;
        assert_close("remixer.logvar", &lv.to_vec().await.map_err(e)?, &g.get("out.remixer.logvar").data, ACT_TOL)?;
        Ok(())
    });
}

#[test]
fn variational_sampling_matches_pytorch() {
    run(|gpu| async move {
        let g = Golden::load("ssv2a_modules");
        let model = Ssv2a::load(&ssv2a_pack(&gpu, &g)?).map_err(e)?;
        let n = g.get("in.variational.fold_clips.eps").shape[0];
        let clips = g.upload(&gpu, "in.manifold_clip.x");
        let mut noise = Injected::plain(&g, &[("fold_clips", "in.variational.fold_clips.eps")]);
        let fold = model.manifold.fold_clips(&clips, n, &mut noise, Draw::new(DrawKind::FoldClips)).await.map_err(e)?;
        assert_close("fold_clips", &fold.data, &g.get("out.variational.fold_clips").data, ACT_TOL)?;
        let mut noise = Injected::plain(&g, &[("fold_claps", "in.variational.fold_claps.eps")]);
        let f = model.manifold.fold_claps(&g.upload(&gpu, "in.manifold_clap.x"), n, &mut noise, Draw::new(DrawKind::FoldClaps)).await.map_err(e)?;
        assert_close("fold_claps", &f.data, &g.get("out.variational.fold_claps").data, ACT_TOL)?;
        // fold2claps takes PyTorch's fold (so the generator input is identical).
        let want_fold = g.upload(&gpu, "out.variational.fold_clips");
        let mut noise = Injected::plain(&g, &[("gen", "in.variational.fold2claps.eps")]);
        let c = model.generator.fold2claps(&want_fold, n, &mut noise, Draw::new(DrawKind::Generator)).await.map_err(e)?;
        assert_close("fold2claps", &c.data, &g.get("out.variational.fold2claps").data, ACT_TOL)?;
        let norms: Vec<f32> = c.data.chunks(32).map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt()).collect();
        assert!(norms.iter().all(|v| (v - 1.0).abs() < 1e-5), "fold2claps rows are not unit norm: {norms:?}");
        // remixer.sample: PyTorch permuted the slots first; the remixer does not depend on the
        // slot order, so the unpermuted input gives the same sample (up to summation order).
        let (mu, lv) = model.remixer.forward(&want_fold, &clips, None).map_err(e)?;
        let (mu, lv) = (mu.to_vec().await.map_err(e)?, lv.to_vec().await.map_err(e)?);
        let mut r = m::sampling::average_of_samples(&mu, &lv, &g.get("in.variational.remix.eps").data, n).map_err(e)?;
        m::sampling::l2_normalize_rows(&mut r, 32);
        assert_close("remixer.sample", &r, &g.get("out.variational.remix").data, ACT_TOL)?;
        // The permutation invariance itself, on the GPU: permuted slots give the same μ/logvar.
        let perm: Vec<usize> = g.get("in.variational.perm").data.iter().map(|&x| x as usize).collect();
        let permute = |t: &HostTensor| -> Vec<f32> {
            let (b, s, d) = (t.shape[0], t.shape[1], t.shape[2]);
            (0..b).flat_map(|bi| perm.iter().flat_map(move |&k| t.data[(bi * s + k) * d..(bi * s + k + 1) * d].to_vec())).collect()
        };
        let (fh, ch) = (g.get("out.variational.fold_clips"), g.get("in.manifold_clip.x"));
        let fp = Tensor::from_slice(&gpu, &permute(fh), fh.shape.clone()).map_err(e)?;
        let cp = Tensor::from_slice(&gpu, &permute(ch), ch.shape.clone()).map_err(e)?;
        let (mu_p, _) = model.remixer.forward(&fp, &cp, None).map_err(e)?;
        assert_close("remixer permutation invariance", &mu_p.to_vec().await.map_err(e)?, &mu, Tol { abs: 1e-5, rel: 1e-5 })?;
        Ok(())
    });
}

async fn cycle_case(gpu: &Gpu, model: &Ssv2a, g: &Golden, case: &str, mode: RemixMode) -> Result<(), String> {
    let cfg = g.config();
    let opts = CycleMixOptions {
        its: cfg["cycle_its"].as_u64().unwrap() as usize,
        samples: cfg["cycle_samples"].as_u64().unwrap() as usize,
        var_samples: cfg["var_samples"].as_u64().unwrap() as usize,
        collapsed_sampling: false,
        remix: mode,
    };
    let input =
        MixInput { clips: g.get(&format!("in.{case}.clips")).clone(), fixed_src: g.tensors.get(&format!("in.{case}.fixed_src")).cloned(), weights: None };
    let mut noise = Injected::cycle(g, case);
    let mut trace: CycleMixTrace = vec![];
    let out = model.cycle_mix(&input, &opts, &mut noise, Some(&mut trace)).await.map_err(e)?;
    let _ = gpu;
    let what = |s: &str| format!("{case} ({mode:?}) {s}");
    assert_eq!(trace.len(), opts.its + 1);
    for (i, r) in trace.iter().enumerate() {
        let key = |k: &str| format!("inter.{case}.round{i}.{k}");
        assert_close(&what(&format!("round {i} src")), &r.src.data, &g.get(&key("src")).data, ACT_TOL)?;
        assert_close(&what(&format!("round {i} src_claps")), &r.src_claps.data, &g.get(&key("src_claps")).data, ACT_TOL)?;
        assert_close(&what(&format!("round {i} remix")), &r.remix.data, &g.get(&key("remix")).data, ACT_TOL)?;
        assert_close(&what(&format!("round {i} score")), &r.score.data, &g.get(&key("score")).data, ACT_TOL)?;
        // The pick: the fixture's scores are checked to be no near-tie (gap between the best
        // and the runner-up ≥ 1e-3, far above the 1e-6 score error), so the argmin must agree.
        let want_best: Vec<usize> = g.get(&key("best")).data.iter().map(|&x| x as usize).collect();
        let sc = g.get(&key("score"));
        for (bi, row) in sc.data.chunks(opts.samples).enumerate() {
            let mut s = row.to_vec();
            s.sort_by(f32::total_cmp);
            assert!(s[1] - s[0] > 1e-3, "{}: the fixture has a near-tie at round {i} item {bi}", what(""));
        }
        assert_eq!(r.best, want_best, "{}", what(&format!("round {i} argmin")));
        assert_close(&what(&format!("round {i} rt_claps")), &r.rt_claps.data, &g.get(&key("rt_claps")).data, ACT_TOL)?;
    }
    assert_close(&what("claps"), &out.data, &g.get(&format!("out.{case}.claps")).data, ACT_TOL)?;
    Ok(())
}

#[test]
fn cycle_mix_matches_pytorch() {
    run(|gpu| async move {
        let gm = Golden::load("ssv2a_modules");
        let model = Ssv2a::load(&ssv2a_pack(&gpu, &gm)?).map_err(e)?;
        let g = Golden::load("ssv2a_cyclemix");
        for case in ["i2a", "mm2a"] {
            for mode in [RemixMode::Shared, RemixMode::Shuffled] {
                cycle_case(&gpu, &model, &g, case, mode).await?;
            }
        }
        Ok(())
    });
}

#[test]
fn cycle_mix_with_the_rng_is_deterministic_and_unit_norm() {
    run(|gpu| async move {
        let gm = Golden::load("ssv2a_modules");
        let model = Ssv2a::load(&ssv2a_pack(&gpu, &gm)?).map_err(e)?;
        let clips = gm.get("in.manifold_clip.x");
        let d = clips.shape[2];
        let global = &clips.data[..d];
        let sources: Vec<&[f32]> = clips.data[d..4 * d].chunks(d).collect();
        let opts = CycleMixOptions { its: 2, samples: 3, var_samples: 4, ..Default::default() };
        let a = model.image_to_clap(global, &sources, &opts, &mut Rng::new(42)).await.map_err(e)?;
        let b = model.image_to_clap(global, &sources, &opts, &mut Rng::new(42)).await.map_err(e)?;
        let c = model.image_to_clap(global, &sources, &opts, &mut Rng::new(43)).await.map_err(e)?;
        assert_eq!(a, b, "same seed, different result");
        assert_ne!(a, c, "different seeds, same result");
        let norm = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5 && a.iter().all(|x| x.is_finite()), "norm {norm}");
        // Collapsed sampling: the same kind of result from n× fewer random numbers.
        let fast = CycleMixOptions { collapsed_sampling: true, ..opts };
        let f = model.image_to_clap(global, &sources, &fast, &mut Rng::new(42)).await.map_err(e)?;
        let norm = f.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5 && f != a, "norm {norm}");
        // Bad inputs are errors, not panics.
        assert!(model.image_to_clap(&global[..5], &sources, &opts, &mut Rng::new(1)).await.is_err());
        let too_many: Vec<&[f32]> = vec![global; 8];
        assert!(model.image_to_clap(global, &too_many, &opts, &mut Rng::new(1)).await.is_err());
        let nan = vec![f32::NAN; d];
        assert!(model.image_to_clap(&nan, &sources, &opts, &mut Rng::new(1)).await.is_err());
        Ok(())
    });
}

/// A seed means the same numbers on every target and version: the normal stream (variational
/// draws, diffusion noise) is pinned here and, with the same digest, in the browser
/// (tests/web.rs).
#[test]
fn seeded_normal_stream_is_pinned() {
    assert_eq!(common::normal_stream_digest(42, 1 << 20), common::NORMAL_STREAM_42, "Rng::new(42) normal stream changed");
}

#[test]
fn aggregator_matches_pytorch() {
    run(|gpu| async move {
        let g = Golden::load("ssv2a_aggregator");
        let w = agg_pack(&gpu, &g)?;
        let agg = Aggregator::load(&w).map_err(e)?;
        let claps = g.upload(&gpu, "in.claps");
        // eval
        let mut trace = vec![];
        let (mu, lv) = agg.forward(&claps, None, Some(&mut trace)).map_err(e)?;
        compare_trace(&g, &trace, "eval.", ACT_TOL).await?;
        assert_close("eval.mu", &mu.to_vec().await.map_err(e)?, &g.get("out.eval.mu").data, ACT_TOL)?;
        assert_close("eval.logvar", &lv.to_vec().await.map_err(e)?, &g.get("out.eval.logvar").data, ACT_TOL)?;
        let mut noise = Injected::plain(&g, &[("aggregator", "in.sample.eps")]);
        let s = agg.sample(&claps, 1, AggregatorMode::Eval, &mut noise).await.map_err(e)?;
        assert_close("sample.clap", &s.data, &g.get("out.sample.clap").data, ACT_TOL)?;
        // the official train-mode inference, with PyTorch's dropout masks
        let masks = DropoutMasks {
            context: g.get("in.train.mask.context").clone(),
            ffn: g.get("in.train.mask.ffn").clone(),
            head_mu: g.get("in.train.mask.head_mu").clone(),
            head_sigma: g.get("in.train.mask.head_sigma").clone(),
        };
        let mut trace = vec![];
        let (mu, lv) = agg.forward(&claps, Some(&masks), Some(&mut trace)).map_err(e)?;
        compare_trace(&g, &trace, "train.", ACT_TOL).await?;
        assert_close("train.mu", &mu.to_vec().await.map_err(e)?, &g.get("out.train.mu").data, ACT_TOL)?;
        assert_close("train.logvar", &lv.to_vec().await.map_err(e)?, &g.get("out.train.logvar").data, ACT_TOL)?;
        let mut noise = Injected::plain(&g, &[("aggregator", "in.sample.eps")]);
        let s = agg.sample_with(&claps, 1, Some(&masks), &mut noise).await.map_err(e)?;
        assert_close("train.sample.clap", &s.data, &g.get("out.train.sample.clap").data, ACT_TOL)?;
        // Drawn masks: 0 or 1/(1 − p), about 80 % kept; the mode changes the result.
        let mut rng = Rng::new(9);
        let d = DropoutMasks::draw(&agg.config, 2, 16, &mut rng).map_err(e)?;
        let kept = d.ffn.data.iter().filter(|&&x| x != 0.0).count() as f64 / d.ffn.numel() as f64;
        assert!(d.ffn.data.iter().all(|&x| x == 0.0 || (x - 1.25).abs() < 1e-6) && (kept - 0.8).abs() < 0.05, "kept {kept}");
        let a = agg.sample(&claps, 1, AggregatorMode::OfficialTrainDropout, &mut Rng::new(5)).await.map_err(e)?;
        let b = agg.sample(&claps, 1, AggregatorMode::Eval, &mut Rng::new(5)).await.map_err(e)?;
        assert!(a.data.iter().zip(&b.data).any(|(x, y)| (x - y).abs() > 1e-3), "dropout had no effect");
        Ok(())
    });
}

#[test]
fn converters_read_the_official_checkpoints() {
    run(|gpu| async move {
        // ssv2a.pth: {timestamp, manifold_state, generator_state, remixer_state} + ssv2a.json
        let ckpt = Checkpoint::open(ckpt_path("ssv2a_tiny.pth")).map_err(e)?;
        let src = CheckpointSource::new(&ckpt, "").map_err(e)?;
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(ckpt_path("ssv2a_tiny.json")).unwrap()).unwrap();
        let cfg = m::Config::from_json(&json).map_err(e)?;
        let plan = m::plan(&src, &cfg).map_err(e)?;
        let w = Weights::from_bytes(&gpu, plan.to_bytes(&src, false).map_err(e)?, "ssv2a_tiny").map_err(e)?;
        let g = Golden::load("ssv2a_modules");
        let from_fixture = pack_values(&ssv2a_pack(&gpu, &g)?).await;
        let from_ckpt = pack_values(&w).await;
        assert_eq!(from_ckpt.len(), 60 + 40 + 31 - 2, "tensor count (logit scales dropped)");
        assert!(from_ckpt == from_fixture, "ssv2a_tiny.pth converts differently from the fixture's state dict");
        Ssv2a::load(&w).map_err(e)?;
        // f16 pack: matrices stored f16, vectors f32
        let w16 = Weights::from_bytes(&gpu, plan.to_bytes(&src, true).map_err(e)?, "ssv2a_tiny f16").map_err(e)?;
        assert_eq!(w16.meta("dtype"), Some("f16"));
        Ssv2a::load(&w16).map_err(e)?;

        // agg.pth: a plain state dict; widths from the shapes (the official one is hard-coded 512)
        let ckpt = Checkpoint::open(ckpt_path("agg_tiny.pth")).map_err(e)?;
        let src = CheckpointSource::new(&ckpt, "").map_err(e)?;
        let ga = Golden::load("ssv2a_aggregator");
        let cfg = AggregatorConfig::from_source(&src, None).map_err(e)?;
        assert_eq!(cfg, AggregatorConfig { emb_dim: 32, ..AggregatorConfig::official() });
        let plan = aggregator::plan(&src, &cfg).map_err(e)?;
        let w = Weights::from_bytes(&gpu, plan.to_bytes(&src, false).map_err(e)?, "agg_tiny").map_err(e)?;
        assert!(pack_values(&w).await == pack_values(&agg_pack(&gpu, &ga)?).await);
        Aggregator::load(&w).map_err(e)?;
        Ok(())
    });
}

#[test]
fn converters_are_strict() {
    let g = Golden::load("ssv2a_modules");
    let cfg = m::Config::from_json(&g.config()).unwrap();
    let src = g.state();
    // A config whose dropout is 0 expects other Sequential indices: the missing key is named.
    let mut j = g.config();
    j["manifold"]["dropout"] = 0.0.into();
    let err = m::plan(&src, &m::Config::from_json(&j).unwrap()).err().expect("dropout 0 must not match").to_string();
    assert!(err.contains("clip_encoder.model.1.model.0.mod.3"), "{err}");
    // An extra tensor, a wrong shape, a missing tensor.
    let mut extra = MemSource { name: "extra".into(), tensors: src.tensors.clone() };
    extra.tensors.insert("remixer_state.styler.bogus".into(), HostTensor::zeros([2]));
    let err = m::plan(&extra, &cfg).err().expect("extra key").to_string();
    assert!(err.contains("styler.bogus"), "{err}");
    let mut bad = MemSource { name: "bad".into(), tensors: src.tensors.clone() };
    bad.tensors.insert("generator_state.out_mu.bias".into(), HostTensor::zeros([31]));
    assert!(m::plan(&bad, &cfg).err().expect("bad shape").to_string().contains("out_mu.bias"));
    bad.tensors.remove("generator_state.out_mu.bias");
    assert!(m::plan(&bad, &cfg).err().expect("missing").to_string().contains("out_mu.bias"));
    // Unsupported configurations say so.
    let mut j = g.config();
    j["remixer"]["guidance"] = "generator".into();
    assert!(m::Config::from_json(&j).err().unwrap().to_string().contains("guidance"));
    // Aggregator: a PE buffer that is not the sinusoid table is refused.
    let ga = Golden::load("ssv2a_aggregator");
    let mut s = ga.state();
    let acfg = AggregatorConfig::from_source(&s, None).unwrap();
    aggregator::plan(&s, &acfg).unwrap();
    s.tensors.get_mut("pe.pe").unwrap().data[5] += 0.1;
    assert!(aggregator::plan(&s, &acfg).err().unwrap().to_string().contains("pe.pe"));
    assert!(s.names().len() == 30);
}

#[test]
fn strict_loading_rejects_incomplete_and_foreign_packs() {
    run(|gpu| async move {
        let g = Golden::load("ssv2a_modules");
        let src = g.state();
        let cfg = m::Config::from_json(&g.config()).map_err(e)?;
        // A pack with one tensor dropped fails with its name.
        let mut plan = m::plan(&src, &cfg).map_err(e)?;
        plan.tensors.retain(|t| t.name != "remixer_state.styler.pred_token");
        let w = Weights::from_bytes(&gpu, plan.to_bytes(&src, false).map_err(e)?, "partial").map_err(e)?;
        let err = Ssv2a::load(&w).err().expect("partial pack").to_string();
        assert!(err.contains("styler.pred_token"), "{err}");
        // An aggregator pack is not an ssv2a pack.
        let ga = Golden::load("ssv2a_aggregator");
        let err = Ssv2a::load(&agg_pack(&gpu, &ga)?).err().expect("wrong kind").to_string();
        assert!(err.contains("aggregator"), "{err}");
        Ok(())
    });
}
