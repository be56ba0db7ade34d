//! CLAP's text tower against the PyTorch golden `clap_text` (audioldm 0.1.1's `CLAP` with a
//! reduced `RobertaModel`, made by `tests/reference/make_clap.py`): the fixture's state dict
//! converted in memory by the real AudioLDM plan, a padded batch and `""` at length 512 with
//! every intermediate; the unconditional embedding the converter stores, from the in-memory plan
//! and from the tiny AudioLDM checkpoint file; input validation and converter errors.
//!
//! Tolerance: f32 on both sides, max |error| ≤ 1e-4 · max |reference| per compared tensor
//! (different summation orders; the figures are printed).

mod common;

use std::collections::BTreeMap;

use common::golden::{error_stats, Golden};
use common::{assert_close, run, Tol};
use ssv2a::convert::plan::MemSource;
use ssv2a::models::audioldm::{self, AudioLdmConfig};
use ssv2a::models::clap::{self, ClapText, TextTokens};
use ssv2a::registry::{convert_checkpoint, ConvertJob};
use ssv2a::tensor::HostTensor;
use ssv2a::{Gpu, Weights};

const REL: f64 = 1e-4;

fn e(x: ssv2a::Error) -> String {
    x.to_string()
}

fn fixture_path(rel: &str) -> String {
    format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn config(g: &Golden) -> AudioLdmConfig {
    AudioLdmConfig::from_json(&g.config()).unwrap()
}

fn pack(gpu: &Gpu, g: &Golden, src: &MemSource, f16: bool) -> Result<Weights, String> {
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
    eprintln!("clap parity {what}: max abs {abs:.3e}, rel {rel:.3e}, SNR {snr:.1} dB");
    if rel > REL || rel.is_nan() {
        return Err(format!("{what}: max error {abs:.3e} is {rel:.3e} of the largest reference value (limit {REL:e})"));
    }
    Ok(())
}

fn tokens(g: &Golden, case: &str, c: &clap::TextConfig) -> Result<TextTokens, String> {
    TextTokens::from_host(g.get(&format!("in.{case}.input_ids")), g.get(&format!("in.{case}.attention_mask")), c).map_err(e)
}

#[test]
fn clap_text_matches_pytorch() {
    run(|gpu| async move {
        let g = Golden::load("clap_text");
        let src = g.state();
        let w = pack(&gpu, &g, &src, false)?;
        assert_eq!(w.meta("components"), Some("clap_text"));
        let model = clap::load_text(&w).map_err(e)?;
        assert_eq!(model.config.num_attention_heads, 4, "heads come from the config, not hidden/64");
        assert_eq!(model.config.max_len(), 512);
        for case in ["a", "empty"] {
            let t = tokens(&g, case, &model.config)?;
            let mut trace = vec![];
            let out = model.forward(&t, Some(&mut trace)).map_err(e)?;
            let mut compared = 0;
            for (name, x) in &trace {
                let want = g.get(&format!("inter.{case}.{name}"));
                assert_eq!(x.shape(), want.shape.as_slice(), "{case}: {name}");
                check(&format!("{case}.{name}"), &x.to_vec().await.map_err(e)?, &want.data)?;
                compared += 1;
            }
            assert_eq!(compared, g.intermediates().iter().filter(|n| n.starts_with(&format!("{case}."))).count());
            check(&format!("{case}.text_embeds"), &out.to_vec().await.map_err(e)?, &g.get(&format!("out.{case}.text_embeds")).data)?;
            let normed = model.embed(&t).map_err(e)?.to_vec().await.map_err(e)?;
            check(&format!("{case}.text_embeds_normalized"), &normed, &g.get(&format!("out.{case}.text_embeds_normalized")).data)?;
        }
        // The function the converter and the pipeline use gives the same "" embedding.
        let u = clap::uncond_embedding(&model).await.map_err(e)?;
        check("uncond_embedding", &u, &g.get("out.empty.text_embeds_normalized").data)?;
        Ok(())
    });
}

#[test]
fn clap_text_fp16_pack_is_close_to_f32() {
    run(|gpu| async move {
        let g = Golden::load("clap_text");
        let src = g.state();
        let m32 = clap::load_text(&pack(&gpu, &g, &src, false)?).map_err(e)?;
        let m16 = clap::load_text(&pack(&gpu, &g, &src, true)?).map_err(e)?;
        let t = tokens(&g, "a", &m32.config)?;
        let a = m32.forward(&t, None).map_err(e)?.to_vec().await.map_err(e)?;
        let b = m16.forward(&t, None).map_err(e)?.to_vec().await.map_err(e)?;
        let (_, snr) = error_stats(&b, &a);
        eprintln!("clap text tiny fp16 vs f32: SNR {snr:.1} dB");
        assert!(snr > 40.0, "fp16 pack diverges: SNR {snr:.1} dB");
        Ok(())
    });
}

/// The converter's `uncond_embedding`: from the in-memory plan, and from the tiny AudioLDM
/// checkpoint through `convert_checkpoint` (what `ssv2a convert` and `ssv2a fetch` run).
#[test]
fn converter_stores_the_original_empty_text_embedding() {
    run(|gpu| async move {
        let g = Golden::load("clap_text");
        let want = &g.get("out.empty.text_embeds_normalized").data;
        let src = g.state();
        let mut plan = audioldm::plan(&src, &config(&g)).map_err(e)?;
        assert!(clap::add_uncond_embedding(&gpu, &mut plan, &src).await.map_err(e)?);
        let w = Weights::from_bytes(&gpu, plan.to_bytes(&src, true).map_err(e)?, "plan").map_err(e)?;
        let u = w.host(clap::UNCOND_TENSOR, &[want.len()]).map_err(e)?;
        check("plan uncond_embedding (f16 pack, computed from the f32 source)", &u.data, want)?;
        // Twice is refused rather than silently duplicated.
        assert!(clap::add_uncond_embedding(&gpu, &mut plan, &src).await.is_err());

        let dir = std::env::temp_dir().join(format!("ssv2a-clap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("audioldm.safetensors");
        let (input, cfg) = (fixture_path("ckpt/audioldm_tiny.ckpt"), fixture_path("ckpt/audioldm_tiny.json"));
        let mut job = ConvertJob::new("audioldm", std::path::Path::new(&input), &out);
        job.config = Some(std::path::Path::new(&cfg));
        convert_checkpoint(&job).map_err(e)?;
        let w = Weights::from_file(&gpu, &out).map_err(e)?;
        assert_eq!(w.meta("components"), Some("vae,vocoder,unet,clap_text"));
        let u = w.host(clap::UNCOND_TENSOR, &[want.len()]).map_err(e)?;
        check("audioldm_tiny.ckpt uncond_embedding", &u.data, want)?;
        // The packed tower is the golden's (f16), and the pack still loads as AudioLDM.
        assert_eq!(clap::load_text(&w).map_err(e)?.config, clap::load_text(&pack(&gpu, &g, &src, false)?).map_err(e)?.config);
        audioldm::AudioLdm::load(&w).map_err(e)?;
        // Without the head count the tiny tower (width 32) has no valid default: a clear error
        // naming the setting, and nothing written.
        let mut tiny_cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
        tiny_cfg.as_object_mut().unwrap().remove("clap_text");
        let cfg2 = dir.join("noheads.json");
        std::fs::write(&cfg2, serde_json::to_vec(&tiny_cfg).unwrap()).unwrap();
        let out2 = dir.join("noheads.safetensors");
        let mut job = ConvertJob::new("audioldm", std::path::Path::new(&input), &out2);
        job.config = Some(&cfg2);
        let err = convert_checkpoint(&job).unwrap_err().to_string();
        assert!(err.contains("clap_text.num_attention_heads") && err.contains("audioldm_tiny.ckpt"), "{err}");
        assert!(!out2.exists());
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    });
}

fn host(shape: &[usize], data: Vec<f32>) -> HostTensor {
    HostTensor::new(shape.to_vec(), data).unwrap()
}

#[test]
fn bad_tokens_and_bad_checkpoints_are_clear_errors() {
    let g = Golden::load("clap_text");
    let c = config(&g).clap_text.unwrap_or_default();
    let src = g.state();
    let c = ssv2a::models::clap::text::config_from_source(&src, clap::PREFIX, Some(&c)).unwrap().unwrap();
    let ok_ids = host(&[1, 3], vec![0.0, 5.0, 2.0]);
    let ones = host(&[1, 3], vec![1.0; 3]);
    assert!(TextTokens::from_host(&ok_ids, &ones, &c).is_ok());
    let cases: Vec<(HostTensor, HostTensor, &str)> = vec![
        (host(&[1, 3], vec![0.0, 100.0, 2.0]), ones.clone(), "input_ids[0, 1] = 100"),
        (host(&[1, 3], vec![0.0, 1.5, 2.0]), ones.clone(), "whole numbers"),
        (host(&[1, 3], vec![0.0, -1.0, 2.0]), ones.clone(), "input_ids[0, 1]"),
        (host(&[1, 3], vec![0.0, f32::NAN, 2.0]), ones.clone(), "input_ids[0, 1]"),
        (ok_ids.clone(), host(&[1, 3], vec![1.0, 0.5, 1.0]), "attention_mask[0, 1]"),
        (ok_ids.clone(), host(&[3, 1], vec![1.0; 3]), "attention_mask"),
        (host(&[3], vec![0.0, 5.0, 2.0]), host(&[3], vec![1.0; 3]), "input_ids [B, L]"),
        (host(&[1, 0], vec![]), host(&[1, 0], vec![]), "at least one"),
        (host(&[1, 513], vec![1.0; 513]), host(&[1, 513], vec![1.0; 513]), "at most 512"),
    ];
    for (ids, mask, want) in cases {
        let err = TextTokens::from_host(&ids, &mask, &c).unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
    // The longest allowed sequence is accepted.
    assert!(TextTokens::from_host(&host(&[1, 512], vec![1.0; 512]), &host(&[1, 512], vec![1.0; 512]), &c).is_ok());
    assert_eq!(TextTokens::empty_text(4).unwrap().position_ids(1), vec![2, 3, 1, 1]);
    assert!(TextTokens::empty_text(1).is_err());

    // Converter: a config that contradicts the shapes, a stray text_branch tensor, a missing one.
    let mut cfg = config(&g);
    cfg.clap_text.as_mut().unwrap().hidden_size = 48;
    let err = audioldm::plan(&src, &cfg).err().unwrap().to_string();
    assert!(err.contains("hidden_size = 48") && err.contains("32"), "{err}");
    let with = |extra: &str, drop: &str| {
        let mut t: BTreeMap<String, HostTensor> = src.tensors.clone();
        if !extra.is_empty() {
            t.insert(extra.into(), host(&[2], vec![0.0; 2]));
        }
        t.remove(drop);
        MemSource { name: "edited.ckpt".into(), tensors: t }
    };
    let p = format!("{}.text_branch", clap::PREFIX);
    let err = audioldm::plan(&with(&format!("{p}.encoder.layer.0.attention.self.extra"), ""), &config(&g)).err().unwrap().to_string();
    assert!(err.contains("attention.self.extra") && err.contains("edited.ckpt"), "{err}");
    // Old transformers saved the id buffers: skipped.
    assert!(audioldm::plan(&with(&format!("{p}.embeddings.position_ids"), ""), &config(&g)).is_ok());
    let err = audioldm::plan(&with("", &format!("{p}.pooler.dense.bias")), &config(&g)).err().unwrap().to_string();
    assert!(err.contains("pooler.dense.bias"), "{err}");
    let err = audioldm::plan(&with("", &format!("{p}.encoder.layer.1.output.LayerNorm.weight")), &config(&g)).err().unwrap().to_string();
    assert!(err.contains("layer.1.output.LayerNorm"), "{err}");
}

#[test]
fn clap_text_loading_is_strict_and_forward_checks_its_tokens() {
    run(|gpu| async move {
        let g = Golden::load("clap_text");
        let src = g.state();
        let w = pack(&gpu, &g, &src, false)?;
        let c = config(&g);
        let full = ssv2a::models::clap::text::config_from_source(&src, clap::PREFIX, c.clap_text.as_ref()).map_err(e)?.unwrap();
        // A config with more layers than the pack holds names the missing tensor.
        let more = clap::TextConfig { num_hidden_layers: 3, ..full.clone() };
        let err = ClapText::load(&w.sub(clap::PREFIX), &more).err().unwrap().to_string();
        assert!(err.contains("encoder.layer.2"), "{err}");
        // forward re-checks hand-made tokens.
        let model = ClapText::load(&w.sub(clap::PREFIX), &full).map_err(e)?;
        let bad = TextTokens { batch: 1, len: 2, ids: vec![0, 100], mask: vec![1.0, 1.0] };
        assert!(model.forward(&bad, None).is_err());
        let short = TextTokens { batch: 2, len: 2, ids: vec![0, 2], mask: vec![1.0, 1.0] };
        assert!(model.forward(&short, None).is_err());
        // Batching is per row: row 1 of the padded batch alone gives row 1's embedding.
        let t = tokens(&g, "a", &full)?;
        let all = model.forward(&t, None).map_err(e)?.to_vec().await.map_err(e)?;
        let one = TextTokens { batch: 1, len: t.len, ids: t.ids[t.len..2 * t.len].to_vec(), mask: t.mask[t.len..2 * t.len].to_vec() };
        let row = model.forward(&one, None).map_err(e)?.to_vec().await.map_err(e)?;
        let j = full.joint_embed_shape;
        assert_close("row 1 alone", &row, &all[j..2 * j], Tol { abs: 1e-6, rel: 1e-5 })?;
        // An AudioLDM pack without the tower (converted before it existed) says what to do.
        let old = Weights::random_with(
            &gpu,
            audioldm::KIND,
            &serde_json::to_string(&AudioLdmConfig::s_full_v2()).unwrap(),
            1,
            false,
            BTreeMap::new(),
            BTreeMap::from([("components".to_string(), "unet,vae,vocoder".to_string())]),
            false,
        );
        let err = clap::load_text(&old).err().unwrap().to_string();
        assert!(err.contains("no CLAP text tower") && err.contains("convert the checkpoint again"), "{err}");
        assert!(clap::uncond_from_pack(&old).await.map_err(e)?.is_none());
        // A word table over the binding limit is gathered on the host: the same numbers.
        let host = ClapText::load_with_table_limit(&w.sub(clap::PREFIX), &full, 0).map_err(e)?;
        let mut trace = vec![];
        let via_host = host.forward(&t, Some(&mut trace)).map_err(e)?.to_vec().await.map_err(e)?;
        assert_eq!(via_host, all, "host-gathered word embeddings give other results");
        check("a.text_branch.embeddings (host table)", &trace[0].1.to_vec().await.map_err(e)?, &g.get("inter.a.text_branch.embeddings").data)?;
        Ok(())
    });
}

/// A tokenizer small enough for the tiny tower (vocabulary 100): the specials, the letters, the
/// space symbol `Ġ` and four merges spelling `Ġrain`.
fn tiny_tokenizer(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut vocab: Vec<String> = ["<s>", "<pad>", "</s>", "<unk>"].iter().map(|s| s.to_string()).collect();
    vocab.extend(('a'..='z').map(String::from));
    vocab.extend(["Ġ", "Ġr", "ai", "ain", "Ġrain", "<mask>"].iter().map(|s| s.to_string()));
    let json: serde_json::Map<String, serde_json::Value> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::json!(i))).collect();
    let (v, m) = (dir.join("vocab.json"), dir.join("merges.txt"));
    std::fs::write(&v, serde_json::to_vec(&json).unwrap()).unwrap();
    std::fs::write(&m, "#version: 0.2\nĠ r\na i\nai n\nĠr ain\n").unwrap();
    (v, m)
}

/// `convert_checkpoint` with tokenizer files (what `convert --tokenizer-dir` and `fetch` run):
/// the files' text lands in the pack's metadata and loads back as the same tokenizer; files that
/// do not parse, or whose vocabulary is larger than the tower's table, fail the conversion with
/// an error naming them, and nothing is written.
#[test]
fn converter_stores_the_tokenizer_and_refuses_bad_files() {
    run(|gpu| async move {
        let dir = std::env::temp_dir().join(format!("ssv2a-clap-tok-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (input, cfg) = (fixture_path("ckpt/audioldm_tiny.ckpt"), fixture_path("ckpt/audioldm_tiny.json"));
        let (input, cfg) = (std::path::Path::new(&input), std::path::Path::new(&cfg));
        let (v, m) = tiny_tokenizer(&dir);
        let convert = |out: &std::path::Path, v: &std::path::Path, m: &std::path::Path, kind: &'static str| {
            let mut job = ConvertJob::new(kind, input, out);
            job.config = Some(cfg);
            job.tokenizer = Some((v, m));
            convert_checkpoint(&job).map_err(e)
        };
        let out = dir.join("with-tok.safetensors");
        convert(&out, &v, &m, "audioldm")?;
        let w = Weights::from_file(&gpu, &out).map_err(e)?;
        assert_eq!(w.meta(clap::TOKENIZER_VOCAB_META).map(str::as_bytes), Some(&std::fs::read(&v).unwrap()[..]));
        assert_eq!(w.meta(clap::TOKENIZER_MERGES_META).map(str::as_bytes), Some(&std::fs::read(&m).unwrap()[..]));
        assert_eq!(w.meta("tokenizer.vocab_sha256").map(str::len), Some(64));
        let tok = clap::load_tokenizer(&w).map_err(e)?;
        let want = ssv2a::tokenize::RobertaTokenizer::from_files(&v, &m).map_err(e)?;
        assert_eq!(tok.encode("rain rain"), want.encode("rain rain"));
        assert_eq!(tok.encode(" rain"), vec![0, 34, 2], "Ġrain is one token after the merges");
        // The prompt embedding runs through the packed tower, unit norm.
        let tower = clap::load_text(&w).map_err(e)?;
        let (emb, enc) = clap::prompt_embedding(&tower, &tok, "rain on a tin roof").await.map_err(e)?;
        assert!(!enc.truncated && (emb.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        audioldm::AudioLdm::load(&w).map_err(e)?;
        // A pack without the files: the same pack, and an error naming the fix.
        let plain = dir.join("plain.safetensors");
        let mut job = ConvertJob::new("audioldm", input, &plain);
        job.config = Some(cfg);
        convert_checkpoint(&job).map_err(e)?;
        let w = Weights::from_file(&gpu, &plain).map_err(e)?;
        let err = clap::load_tokenizer(&w).unwrap_err().to_string();
        assert!(err.contains("no text tokenizer") && err.contains("--tokenizer-dir") && err.contains("ssv2a fetch"), "{err}");

        // Bad files: nothing written, the file named.
        let bad = dir.join("bad.safetensors");
        let not_json = dir.join("not-json.json");
        std::fs::write(&not_json, b"{\"<s>\": 0, \"a\": ").unwrap();
        let err = convert(&bad, &not_json, &m, "audioldm").unwrap_err();
        assert!(err.contains("not-json.json"), "{err}");
        let bad_merges = dir.join("bad-merges.txt");
        std::fs::write(&bad_merges, "#version: 0.2\nq z\n").unwrap();
        let err = convert(&bad, &v, &bad_merges, "audioldm").unwrap_err();
        assert!(err.contains("bad-merges.txt") && err.contains("line 2"), "{err}");
        let no_special = dir.join("no-special.json");
        std::fs::write(&no_special, b"{\"a\": 0}").unwrap();
        let err = convert(&bad, &no_special, &m, "audioldm").unwrap_err();
        assert!(err.contains("no-special.json") && err.contains("<s>"), "{err}");
        // roberta-like but too large for this tower: the tests' 1761-token vocabulary.
        let (fv, fm) = (fixture_path("tokenizer/roberta/vocab.json"), fixture_path("tokenizer/roberta/merges.txt"));
        let err = convert(&bad, std::path::Path::new(&fv), std::path::Path::new(&fm), "audioldm").unwrap_err();
        assert!(err.contains("1761 tokens") && err.contains("100 rows"), "{err}");
        let err = convert(&bad, std::path::Path::new(&dir.join("missing.json")), &m, "audioldm").unwrap_err();
        assert!(err.contains("missing.json"), "{err}");
        assert!(!bad.exists(), "a failed conversion wrote a pack");
        // Only AudioLDM packs take a tokenizer.
        let err = convert(&bad, &v, &m, "ssv2a").unwrap_err();
        assert!(err.contains("tokenizer files apply to --kind audioldm"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    });
}

/// Text to audio's conditioning against the original code (golden `clap_prompt`): three prompts
/// (one cut at 512 tokens) through the Rust tokenizer on the fixture vocabulary give AudioLDM's
/// ids and mask exactly, and `prompt_embedding` gives `CLAP.get_text_embedding` of them.
#[test]
fn prompt_embedding_matches_audioldm_tokenizer_and_tower() {
    run(|gpu| async move {
        let g = Golden::load("clap_prompt");
        let src = g.state();
        let tower = clap::load_text(&pack(&gpu, &g, &src, false)?).map_err(e)?;
        let dir = fixture_path("tokenizer/roberta");
        let tok = ssv2a::tokenize::RobertaTokenizer::from_files(format!("{dir}/vocab.json").as_ref(), format!("{dir}/merges.txt").as_ref()).map_err(e)?;
        let prompts: Vec<String> = serde_json::from_value(g.config()["prompts"].clone()).unwrap();
        let (ids, mask, want) = (g.get("in.input_ids"), g.get("in.attention_mask"), g.get("out.text_embeds_normalized"));
        assert_eq!((ids.shape.clone(), prompts.len()), (vec![3, 512], 3));
        let d = want.shape[1];
        for (i, p) in prompts.iter().enumerate() {
            let (emb, enc) = clap::prompt_embedding(&tower, &tok, p).await.map_err(e)?;
            let row = |t: &HostTensor| t.data[i * 512..(i + 1) * 512].iter().map(|&v| v as u32).collect::<Vec<u32>>();
            assert_eq!(enc.ids, row(ids), "prompt {i}: ids differ from AudioLDM's tokenizer");
            assert_eq!(enc.attention_mask, row(mask), "prompt {i}: mask");
            assert_eq!(enc.truncated, i == 2, "prompt {i}");
            check(&format!("prompt {i} embedding"), &emb, &want.data[i * d..(i + 1) * d])?;
        }
        Ok(())
    });
}
