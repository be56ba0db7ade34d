//! The `ssv2a` binary end to end: conversion of a real (tiny) Lightning checkpoint, stages, and
//! bad inputs (one clear line on stderr, non-zero exit, no output file).
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::golden::Golden;
use ssv2a::weights::{serialize_pack, PackTensor};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ssv2a"));
    c.env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()));
    c
}

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ssv2a-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run and return (success, stdout, stderr).
fn run(c: &mut Command) -> (bool, String, String) {
    let o = c.output().expect("run ssv2a");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn has_gpu() -> bool {
    common::test_gpu().is_some()
}

fn convert_tiny(dir: &Path, dtype: &str) -> PathBuf {
    let out = dir.join(format!("tiny-{dtype}.safetensors"));
    let (ok, _, err) = run(bin()
        .args(["convert", "--kind", "audioldm", "--input"])
        .arg(fixture("ckpt/audioldm_tiny.ckpt"))
        .arg("--config")
        .arg(fixture("ckpt/audioldm_tiny.json"))
        .arg("--output")
        .arg(&out)
        .args(["--dtype", dtype]));
    assert!(ok, "convert failed: {err}");
    out
}

fn write_inputs(path: &Path, tensors: &[(&str, &ssv2a::HostTensor)]) {
    let t: Vec<PackTensor> = tensors.iter().map(|(n, h)| PackTensor::f32(*n, h.shape.clone(), &h.data)).collect();
    std::fs::write(path, serialize_pack(&t, &Default::default()).unwrap()).unwrap();
}

fn read_output(path: &Path, name: &str) -> ssv2a::HostTensor {
    let bytes = std::fs::read(path).unwrap();
    let (start, infos, _) = ssv2a::weights::parse_header(&bytes, "out").unwrap();
    let info = &infos[name];
    let (a, b) = info.data_offsets;
    ssv2a::HostTensor::new(info.shape.clone(), ssv2a::weights::decode_f32(info.dtype, &bytes[start + a..start + b], name).unwrap()).unwrap()
}

#[test]
fn convert_reads_the_lightning_checkpoint_and_takes_ema_weights() {
    // Converting AudioLDM runs CLAP's text tower on "" on the GPU.
    if !has_gpu() {
        return;
    }
    let dir = tmpdir("convert");
    let pack = convert_tiny(&dir, "f32");
    let bytes = std::fs::read(&pack).unwrap();
    let (start, infos, meta) = ssv2a::weights::parse_header(&bytes, "pack").unwrap();
    assert_eq!(meta["kind"], "audioldm");
    assert_eq!(meta["ema"], "true");
    assert_eq!(meta["components"], "vae,vocoder,unet,clap_text");
    // CLAP's "" embedding, as the original code computes it (tests/reference/make_clap.py).
    let uncond = read_output(&pack, "uncond_embedding");
    let want = Golden::load("clap_text");
    common::assert_close("uncond_embedding", &uncond.data, &want.get("out.empty.text_embeds_normalized").data, common::Tol { abs: 1e-6, rel: 1e-4 }).unwrap();
    assert_eq!(meta["source"], "audioldm_tiny.ckpt");
    assert_eq!(meta["source_sha256"].len(), 64);
    // The UNet weights are the EMA copy, i.e. those of the golden fixture.
    let g = Golden::load("audioldm_unet");
    let key = "model.diffusion_model.input_blocks.0.0.weight";
    let info = &infos[key];
    let (a, b) = info.data_offsets;
    let got = ssv2a::weights::decode_f32(info.dtype, &bytes[start + a..start + b], key).unwrap();
    assert_eq!(got, g.get(&format!("state.{key}")).data, "pack holds the non-EMA weights");
    // No encoder, no loss, no schedule buffers.
    assert!(infos.keys().all(|k| !k.starts_with("first_stage_model.encoder") && !k.starts_with("model_ema.") && k != "betas"));
    // f16 pack: matrices f16, vectors and scalars f32.
    let pack16 = convert_tiny(&dir, "f16");
    let bytes = std::fs::read(&pack16).unwrap();
    let (_, infos, _) = ssv2a::weights::parse_header(&bytes, "pack").unwrap();
    assert_eq!(infos[key].dtype, safetensors::Dtype::F16);
    assert_eq!(infos["scale_factor"].dtype, safetensors::Dtype::F32);
    assert_eq!(infos["first_stage_model.decoder.conv_in.bias"].dtype, safetensors::Dtype::F32);
}

#[test]
fn stage_vae_and_hifigan_follow_the_contract() {
    if !has_gpu() {
        return;
    }
    let dir = tmpdir("stage");
    let pack = convert_tiny(&dir, "f32");
    let g = Golden::load("audioldm_decode_tail");
    let input = dir.join("in.safetensors");
    write_inputs(&input, &[("latent", g.get("in.b.latent"))]);
    let out = dir.join("mel.safetensors");
    let (ok, _, err) = run(bin().args(["stage", "vae", "--weights"]).arg(&pack).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(ok, "{err}");
    let mel = read_output(&out, "mel");
    assert_eq!(mel.shape, g.get("inter.b.mel").shape);
    common::assert_close("stage vae mel", &mel.data, &g.get("inter.b.mel").data, common::Tol { abs: 1e-4, rel: 1e-3 }).unwrap();
    let input2 = dir.join("mel_in.safetensors");
    write_inputs(&input2, &[("mel", &mel)]);
    let out2 = dir.join("wav.safetensors");
    let (ok, _, err) = run(bin().args(["stage", "hifigan", "--weights"]).arg(&pack).arg("--input").arg(&input2).arg("--output").arg(&out2));
    assert!(ok, "{err}");
    let wav = read_output(&out2, "waveform");
    common::assert_close("stage hifigan", &wav.data, &g.get("out.b.waveform").data, common::Tol { abs: 1e-4, rel: 1e-3 }).unwrap();
    assert!(!err.contains("warning"), "{err}");
    // A NaN input is written through, but both the input and the output are named on stderr.
    let mut bad = mel.clone();
    bad.data[3] = f32::NAN;
    write_inputs(&input2, &[("mel", &bad)]);
    let (ok, _, err) = run(bin().args(["stage", "hifigan", "--weights"]).arg(&pack).arg("--input").arg(&input2).arg("--output").arg(&out2));
    assert!(ok && err.contains("input `mel` has 1 NaN") && err.contains("output `waveform`"), "{err}");
}

/// `stage clap-text` per ../shared/spec/interfaces.md: `input_ids`, `attention_mask` [B, L] as
/// f32 → `text_embeds` [B, 512-or-joint] before normalisation; bad ids and lengths are errors.
#[test]
fn stage_clap_text_follows_the_contract() {
    if !has_gpu() {
        return;
    }
    let dir = tmpdir("clap");
    let pack = convert_tiny(&dir, "f32");
    let g = Golden::load("clap_text");
    let input = dir.join("in.safetensors");
    write_inputs(&input, &[("input_ids", g.get("in.a.input_ids")), ("attention_mask", g.get("in.a.attention_mask"))]);
    let out = dir.join("out.safetensors");
    let (ok, _, err) = run(bin().args(["stage", "clap-text", "--weights"]).arg(&pack).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(ok, "{err}");
    let emb = read_output(&out, "text_embeds");
    assert_eq!(emb.shape, g.get("out.a.text_embeds").shape);
    common::assert_close("stage clap-text", &emb.data, &g.get("out.a.text_embeds").data, common::Tol { abs: 1e-6, rel: 1e-4 }).unwrap();
    std::fs::remove_file(&out).unwrap();
    // An id outside the vocabulary, a sequence longer than the position table, a missing input.
    let mut ids = g.get("in.a.input_ids").clone();
    ids.data[4] = 100.0;
    write_inputs(&input, &[("input_ids", &ids), ("attention_mask", g.get("in.a.attention_mask"))]);
    let (ok, _, err) = run(bin().args(["stage", "clap-text", "--weights"]).arg(&pack).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(!ok && err.contains("input_ids[0, 4] = 100") && err.contains("0..100"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let long = ssv2a::HostTensor::new([1, 513], vec![1.0; 513]).unwrap();
    write_inputs(&input, &[("input_ids", &long), ("attention_mask", &long)]);
    let (ok, _, err) = run(bin().args(["stage", "clap-text", "--weights"]).arg(&pack).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(!ok && err.contains("513 tokens") && err.contains("at most 512"), "{err}");
    write_inputs(&input, &[("input_ids", g.get("in.a.input_ids"))]);
    let (ok, _, err) = run(bin().args(["stage", "clap-text", "--weights"]).arg(&pack).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(!ok && err.contains("attention_mask"), "{err}");
    assert!(!out.exists());
}

/// `stage clap-audio` per ../shared/spec/interfaces.md: `waveform` [B, 480000] at 48 kHz →
/// `audio_embeds` [B, joint] before normalisation, on a pack converted from the `clap_audio`
/// golden; a waveform that is not a fitted clip is one clear error.
#[test]
fn stage_clap_audio_follows_the_contract() {
    if !has_gpu() {
        return;
    }
    let dir = tmpdir("clap-audio");
    let g = Golden::load("clap_audio");
    let src = g.state();
    let cfg = ssv2a::models::audioldm::AudioLdmConfig::from_json(&g.config()).unwrap();
    let pack = dir.join("clap-audio.safetensors");
    std::fs::write(&pack, ssv2a::models::audioldm::plan(&src, &cfg).unwrap().to_bytes(&src, false).unwrap()).unwrap();
    // Item 0 of the golden batch: the short waveform, repeat-padded.
    let clip = ssv2a::models::clap::frontend::fit_clip(&g.get("in.short").data, 480000, 0, "short").unwrap();
    let input = dir.join("in.safetensors");
    write_inputs(&input, &[("waveform", &ssv2a::HostTensor::new([1, 480000], clip).unwrap())]);
    let out = dir.join("out.safetensors");
    let (ok, _, err) = run(bin().args(["stage", "clap-audio", "--weights"]).arg(&pack).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(ok, "{err}");
    let emb = read_output(&out, "audio_embeds");
    let want = g.get("out.audio_embeds");
    assert_eq!(emb.shape, [1, want.shape[1]]);
    common::assert_close("stage clap-audio", &emb.data, &want.data[..want.shape[1]], common::Tol { abs: 1e-6, rel: 1e-4 }).unwrap();
    std::fs::remove_file(&out).unwrap();
    write_inputs(&input, &[("waveform", &ssv2a::HostTensor::new([1, 16000], vec![0.0; 16000]).unwrap())]);
    let (ok, _, err) = run(bin().args(["stage", "clap-audio", "--weights"]).arg(&pack).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(!ok && err.contains("[1, 16000]") && err.contains("[B, 480000]"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!out.exists());
    // A pack without the audio tower says so.
    let tiny = convert_tiny(&dir, "f16");
    write_inputs(&input, &[("waveform", &ssv2a::HostTensor::new([1, 480000], vec![0.0; 480000]).unwrap())]);
    let (ok, _, err) = run(bin().args(["stage", "clap-audio", "--weights"]).arg(&tiny).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(!ok && err.contains("no CLAP audio tower") && err.contains("tiny-f16.safetensors"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_give_one_clear_line_and_no_output() {
    let dir = tmpdir("bad");
    let out = dir.join("out.safetensors");
    // Missing checkpoint.
    let (ok, _, err) = run(bin().args(["convert", "--kind", "audioldm", "--input", "/nonexistent.ckpt", "--output"]).arg(&out));
    assert!(!ok && err.contains("/nonexistent.ckpt"), "{err}");
    // Corrupt checkpoint.
    let junk = dir.join("junk.ckpt");
    std::fs::write(&junk, b"PK\x03\x04 this is not really a zip").unwrap();
    let (ok, _, err) = run(bin().args(["convert", "--kind", "audioldm", "--input"]).arg(&junk).arg("--output").arg(&out));
    assert!(!ok && err.contains("junk.ckpt"), "{err}");
    // The tiny checkpoint's CLAP text width (32) does not split into RoBERTa's 64-wide heads,
    // and head counts are in no shape: without --config it cannot convert. Clear error, no pack.
    let (ok, _, err) = run(bin().args(["convert", "--kind", "audioldm", "--input"]).arg(fixture("ckpt/audioldm_tiny.ckpt")).arg("--output").arg(&out));
    assert!(!ok && err.contains("clap_text.num_attention_heads") && err.trim().lines().count() == 1, "{err}");
    assert!(!out.exists(), "a pack was written despite the error");
    // A --config that the tensor shapes contradict: the tensor, the shape found, the config.
    let cfg = dir.join("wrong.json");
    std::fs::write(&cfg, r#"{"unet_config": {"params": {"model_channels": 128}}, "clap_text": {"num_attention_heads": 4}}"#).unwrap();
    let (ok, _, err) = run(bin()
        .args(["convert", "--kind", "audioldm", "--input"])
        .arg(fixture("ckpt/audioldm_tiny.ckpt"))
        .arg("--config")
        .arg(&cfg)
        .arg("--output")
        .arg(&out));
    assert!(
        !ok && err.contains("model.diffusion_model.input_blocks.0.0.weight") && err.contains("[32, 8, 3, 3]") && err.contains("--config says 128"),
        "{err}"
    );
    assert!(!out.exists(), "a pack was written despite the error");
    // An incomplete checkpoint (issue 16): one UNet tensor and the scale; no pack is written.
    let partial = dir.join("partial.safetensors");
    let t = [PackTensor::f32("model.diffusion_model.x", vec![2, 2], &[0.0; 4]), PackTensor::f32("scale_factor", vec![], &[1.0])];
    std::fs::write(&partial, serialize_pack(&t, &Default::default()).unwrap()).unwrap();
    let (ok, _, err) = run(bin().args(["convert", "--kind", "audioldm", "--input"]).arg(&partial).arg("--output").arg(&out));
    assert!(!ok && err.contains("not a complete AudioLDM checkpoint") && err.contains("VAE decoder"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!out.exists(), "a pack was written from an incomplete checkpoint");
    // Unknown kind / dtype.
    let (ok, _, err) = run(bin().args(["convert", "--kind", "nope", "--input"]).arg(&junk).arg("--output").arg(&out));
    assert!(!ok && err.contains("nope"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!out.exists());
    if !has_gpu() {
        return;
    }
    // A pack of the wrong kind for a stage, and a mel of the wrong shape.
    let wrong = dir.join("wrong.safetensors");
    let meta = ssv2a::weights::pack_metadata("clip", "{}", "f32");
    std::fs::write(&wrong, serialize_pack(&[PackTensor::f32("x", vec![1], &[0.0])], &meta).unwrap()).unwrap();
    let input = dir.join("in.safetensors");
    write_inputs(&input, &[("latent", &ssv2a::HostTensor::zeros([1, 8, 4, 8]))]);
    let (ok, _, err) = run(bin().args(["stage", "vae", "--weights"]).arg(&wrong).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(!ok && err.contains("kind `clip`"), "{err}");
    let pack = convert_tiny(&dir, "f32");
    write_inputs(&input, &[("mel", &ssv2a::HostTensor::zeros([1, 1, 10, 7]))]);
    let (ok, _, err) = run(bin().args(["stage", "hifigan", "--weights"]).arg(&pack).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(!ok && err.contains("hifigan") && err.contains("[1, 1, 10, 7]"), "{err}");
    assert!(!out.exists());
}

/// Small settings for `generate`/`demo` runs in tests (every stage, few steps).
const QUICK: [&str; 14] =
    ["--preset", "fast", "--steps", "2", "--cycle-its", "1", "--cycle-samples", "2", "--var-samples", "2", "--duration", "2.5", "--candidates", "1"];

fn wav_len(path: &Path) -> usize {
    let (s, sr) = ssv2a::media::audio::decode_wav(&std::fs::read(path).unwrap(), "out").unwrap();
    assert_eq!(sr, 16000);
    s.len()
}

fn png(path: &Path, w: usize, h: usize) {
    std::fs::write(path, ssv2a::media::imageio::encode_png(&ssv2a::pipeline::demo::scene(w, h)).unwrap()).unwrap();
}

/// `demo` writes demo.wav and (with --write-packs) pack files that `generate`, `detect` and
/// `models`-style loading accept; then `generate`'s bad inputs.
#[test]
fn demo_then_generate_on_its_packs_and_bad_generate_inputs() {
    if !has_gpu() {
        return;
    }
    let dir = tmpdir("generate");
    let packs = dir.join("packs");
    let demo_wav = dir.join("demo.wav");
    let (ok, _, err) = run(bin().arg("demo").args(QUICK).arg("--quiet").arg("--write-packs").arg(&packs).arg("-o").arg(&demo_wav));
    assert!(ok, "{err}");
    assert!(err.contains("RANDOM") && err.contains("ssv2a fetch"), "the demo says its weights are random: {err}");
    for stage in ["detect", "CLIP", "Cycle Mix", "diffusion", "decode"] {
        assert!(err.contains(stage), "timing of {stage} missing: {err}");
    }
    assert_eq!(wav_len(&demo_wav), 160 * 4 * 64 + 32);

    let img = dir.join("street.png");
    png(&img, 160, 120);
    let out = dir.join("out.wav");
    let gen = |extra: &[&str]| {
        let mut c = bin();
        c.arg("generate").args(QUICK).arg("--quiet").arg("--models").arg(&packs).args(extra);
        c
    };
    // Happy paths: detection; edited sources; a composition of two images.
    let (ok, _, err) = run(gen(&["--image", img.to_str().unwrap(), "-o", out.to_str().unwrap()]).arg("--seed").arg("3"));
    assert!(ok, "{err}");
    assert_eq!(wav_len(&out), 160 * 4 * 64 + 32);
    assert!(err.contains("ImageToAudio") && err.contains("sources ("), "{err}");
    // One numbering (issue 16): the summary numbers detections as `detect` and --drop do, from 0;
    // the whole image has no number.
    assert!(err.lines().any(|l| l.starts_with("   - image")) && err.lines().any(|l| l.starts_with("   0 ")), "{err}");
    // Output paths (issue 16): a symbolic link is written through and stays a link; an output
    // that cannot be written fails before any model runs, naming the user's path.
    let link = dir.join("link.wav");
    std::os::unix::fs::symlink("linked.wav", &link).unwrap();
    let (ok, _, err) = run(gen(&["--image", img.to_str().unwrap(), "-o", link.to_str().unwrap()]).arg("--seed").arg("3"));
    assert!(ok, "{err}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced by a file");
    assert_eq!(std::fs::read(dir.join("linked.wav")).unwrap(), std::fs::read(&out).unwrap(), "same seed, same WAV through the link");
    let (ok, _, err) = run(&mut gen(&["--image", img.to_str().unwrap(), "-o", "/proc/ssv2a-no/x.wav"]));
    assert!(!ok && err.contains("/proc/ssv2a-no/x.wav") && !err.contains("partial") && err.trim().lines().count() == 1, "{err}");
    assert!(!err.contains("load"), "models were loaded before the output was checked: {err}");
    let (ok, _, err) =
        run(&mut gen(&["--image", img.to_str().unwrap(), "--drop", "0", "--box", "10,10,60,50@2", "--weight", "1=0.5", "-o", out.to_str().unwrap()]));
    assert!(ok, "{err}");
    assert!(err.contains("weight 2") && err.contains("weight 0.5"), "{err}");
    let (ok, _, err) = run(&mut gen(&[
        "--image",
        img.to_str().unwrap(),
        "--no-tta",
        "--top-k",
        "2",
        "--conf",
        "0.1",
        "--imgsz",
        "128",
        "--keep-aspect",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(ok && err.contains("sources (3)"), "detection knobs (top-k 2 → image + 2 sources): {err}");
    let (ok, _, err) = run(&mut gen(&["--image", img.to_str().unwrap(), "--image", img.to_str().unwrap(), "-o", out.to_str().unwrap()]));
    assert!(ok && err.contains("Composition"), "{err}");
    let (ok, stdout, err) = run(bin().arg("detect").arg(&img).arg("--weights").arg(packs.join("yolov8x-oiv7.safetensors")));
    assert!(ok && stdout.contains("source(s)"), "{err}");
    let (ok, stdout, err) = run(bin().arg("info"));
    assert!(ok && stdout.contains("Vulkan"), "{stdout}{err}");
    let (ok, stdout, err) = run(bin().arg("models").arg("--models-dir").arg(&packs).env("HF_HUB_CACHE", dir.join("hub")));
    assert!(ok && stdout.contains("audioldm-s-full-v2"), "{stdout}{err}");

    // Bad inputs: one line on stderr, non-zero exit, and the existing output left as it was.
    std::fs::write(&out, b"previous").unwrap();
    let not_image = dir.join("notes.png");
    std::fs::write(&not_image, b"these are notes, not a picture").unwrap();
    let not_wav = dir.join("notes.wav");
    std::fs::write(&not_wav, b"RIFF but not really").unwrap();
    let not_video = dir.join("clip.mp4");
    std::fs::write(&not_video, b"not a video").unwrap();
    let still = dir.join("photo.mp4");
    std::fs::write(&still, b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00").unwrap();
    let wrong = dir.join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    for f in ["yolov8x-oiv7", "clip-vit-l14", "audioldm-s-full-v2"] {
        std::fs::copy(packs.join(format!("{f}.safetensors")), wrong.join(format!("{f}.safetensors"))).unwrap();
    }
    std::fs::copy(packs.join("clip-vit-l14.safetensors"), wrong.join("ssv2a.safetensors")).unwrap();
    let img_s = img.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--image".into(), "/nonexistent/street.jpg".into()], "/nonexistent/street.jpg"),
        (vec!["--image".into(), not_image.display().to_string()], "notes.png"),
        (vec!["--image".into(), img_s.clone(), "--audio".into(), not_wav.display().to_string()], "notes.wav"),
        (vec!["--image".into(), img_s.clone(), "--audio".into(), dir.join("missing.wav").display().to_string()], "missing.wav"),
        (vec!["--video".into(), not_video.display().to_string()], "clip.mp4"),
        (vec!["--video".into(), dir.join("none.mp4").display().to_string()], "none.mp4"),
        (vec!["--video".into(), still.display().to_string()], "still image (JPEG)"),
        (vec!["--image".into(), img_s.clone(), "--box".into(), "1,2,3".into()], "--box"),
        (vec!["--image".into(), img_s.clone(), "--drop".into(), "99".into()], "source 99"),
        (vec!["--image".into(), img_s.clone(), "--weight".into(), "1=NaN".into()], "--weight `1=NaN`"),
        (vec!["--image".into(), img_s.clone(), "--box".into(), "10,10,9999,50".into()], "box 0 (box) (10, 10, 9999, 50) must satisfy"),
        (vec!["--image".into(), img_s.clone(), "--text".into(), "rain".into()], "text tower"),
        (vec!["--image".into(), img_s.clone(), "--sampler".into(), "euler".into()], "euler"),
        (vec!["--image".into(), img_s.clone(), "--conf".into(), "2".into()], "conf 2"),
        (vec!["--image".into(), img_s.clone(), "--imgsz".into(), "big".into()], "--imgsz"),
        (vec![], "no sources"),
    ];
    for (args, expect) in cases {
        let (ok, _, err) = run(gen(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>()).arg("-o").arg(&out));
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(expect), "{args:?}: expected `{expect}` in: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"previous", "{args:?} touched the output");
    }
    let (ok, _, err) = run(bin().args(["generate", "--quiet", "--duration", "0", "--models"]).arg(&packs).arg("--image").arg(&img).arg("-o").arg(&out));
    assert!(!ok && err.contains("duration") && err.trim().lines().count() == 1, "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    // A pack of the wrong kind where SSV2A's belongs; a models folder without packs.
    let (ok, _, err) = run(bin().arg("generate").args(QUICK).arg("--quiet").arg("--models").arg(&wrong).arg("--image").arg(&img).arg("-o").arg(&out));
    assert!(!ok && err.contains("of kind `clip`, expected kind `ssv2a`"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // A truncated pack (an interrupted copy) is refused from its header, before any model runs.
    let trunc = dir.join("trunc");
    std::fs::create_dir_all(&trunc).unwrap();
    for f in ["yolov8x-oiv7", "clip-vit-l14", "ssv2a", "audioldm-s-full-v2"] {
        std::fs::copy(packs.join(format!("{f}.safetensors")), trunc.join(format!("{f}.safetensors"))).unwrap();
    }
    let ldm = trunc.join("audioldm-s-full-v2.safetensors");
    let bytes = std::fs::read(&ldm).unwrap();
    std::fs::write(&ldm, &bytes[..bytes.len() - 1000]).unwrap();
    let (ok, _, err) = run(bin().arg("generate").args(QUICK).arg("--quiet").arg("--models").arg(&trunc).arg("--image").arg(&img).arg("-o").arg(&out));
    assert!(!ok && err.contains("truncated weight pack") && err.contains("audioldm-s-full-v2.safetensors") && err.trim().lines().count() == 1, "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    let (ok, _, err) = run(bin().arg("generate").arg("--models").arg(dir.join("no-such-dir")).arg("--image").arg(&img).arg("-o").arg(&out));
    assert!(!ok && err.contains("no-such-dir: no such folder") && err.contains("--models-dir"), "{err}");
    let (ok, _, err) = run(bin().arg("models").arg("--models-dir").arg(&img));
    assert!(!ok && err.contains("not a folder"), "{err}");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, err) = run(bin().arg("generate").args(QUICK).arg("--quiet").arg("--models").arg(&empty).arg("--image").arg(&img).arg("-o").arg(&out));
    assert!(!ok && err.contains("ssv2a fetch"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
}

/// `generate --prompt` (AudioLDM's own text to audio) on the demo's written packs: a WAV of the
/// right length, the same bytes for the same seed, the text encoder's timing and the token count
/// in the summary, a 100,000-character prompt truncated with a warning; bad prompts, prompts
/// with other sources and a pack without tokenizer files fail with one line and no output.
#[test]
fn generate_from_a_prompt_on_demo_packs() {
    if !has_gpu() {
        return;
    }
    let dir = tmpdir("prompt");
    let packs = dir.join("packs");
    let (ok, _, err) = run(bin().arg("demo").args(QUICK).arg("--quiet").arg("--write-packs").arg(&packs).arg("-o").arg(dir.join("demo.wav")));
    assert!(ok, "{err}");
    let gen = |models: &Path, out: &Path, extra: &[&str]| {
        let mut c = bin();
        c.arg("generate").args(QUICK).arg("--quiet").arg("--models").arg(models).arg("-o").arg(out).args(extra);
        run(&mut c)
    };
    let (a, b, c) = (dir.join("a.wav"), dir.join("b.wav"), dir.join("c.wav"));
    let (ok, _, err) = gen(&packs, &a, &["--prompt", "rain on a tin roof", "--seed", "9"]);
    assert!(ok, "{err}");
    assert_eq!(wav_len(&a), 160 * 4 * 64 + 32);
    assert!(err.contains("TextToAudio") && err.contains("CLAP text") && err.contains("diffusion"), "{err}");
    assert!(err.contains("prompt: ") && err.contains(" tokens") && !err.contains("warning"), "{err}");
    assert!(!err.contains("CLIP") && !err.contains("Cycle Mix"), "text to audio runs AudioLDM only: {err}");
    let (ok, _, err) = gen(&packs, &b, &["--prompt", "rain on a tin roof", "--seed", "9"]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same seed, same WAV");
    let (ok, _, err) = gen(&packs, &c, &["--prompt", "rain on a tin roof", "--seed", "10"]);
    assert!(ok, "{err}");
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap(), "another seed, another WAV");
    // Only the AudioLDM pack is needed.
    let only = dir.join("only-audioldm");
    std::fs::create_dir_all(&only).unwrap();
    std::fs::copy(packs.join("audioldm-s-full-v2.safetensors"), only.join("audioldm-s-full-v2.safetensors")).unwrap();
    let long = "rain on a tin roof, ".repeat(5000);
    let (ok, _, err) = gen(&only, &c, &["--prompt", &long]);
    assert!(ok, "{err}");
    assert!(err.contains("prompt: 510 tokens") && err.contains("warning") && err.contains("truncated"), "{err}");
    assert_eq!(wav_len(&c), 160 * 4 * 64 + 32);

    // A copy of the AudioLDM pack without its tokenizer files.
    let bare = dir.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let bytes = std::fs::read(packs.join("audioldm-s-full-v2.safetensors")).unwrap();
    let (start, infos, mut meta) = ssv2a::weights::parse_header(&bytes, "pack").unwrap();
    assert!(meta.contains_key(ssv2a::models::clap::TOKENIZER_VOCAB_META) && meta.contains_key(ssv2a::models::clap::TOKENIZER_MERGES_META));
    meta.retain(|k, _| !k.starts_with("tokenizer."));
    let tensors: Vec<PackTensor> = infos
        .into_iter()
        .map(|(k, i)| PackTensor { name: k, shape: i.shape.clone(), dtype: i.dtype, data: bytes[start + i.data_offsets.0..start + i.data_offsets.1].to_vec() })
        .collect();
    std::fs::write(bare.join("audioldm-s-full-v2.safetensors"), serialize_pack(&tensors, &meta).unwrap()).unwrap();

    let out = dir.join("out.wav");
    std::fs::write(&out, b"previous").unwrap();
    let img = dir.join("street.png");
    png(&img, 64, 48);
    let img = img.to_str().unwrap();
    let none = dir.join("none");
    let cases: Vec<(&Path, Vec<&str>, &str)> = vec![
        (&packs, vec!["--prompt", ""], "--prompt is empty"),
        (&packs, vec!["--prompt", "  \t "], "--prompt is empty"),
        (&packs, vec!["--prompt", "rain", "--image", img], "cannot be combined"),
        (&packs, vec!["--prompt", "rain", "--text", "dog"], "cannot be combined"),
        (&packs, vec!["--prompt", "rain", "--drop", "0"], "--drop"),
        (&bare, vec!["--prompt", "rain"], "ssv2a fetch audioldm-s-full-v2"),
        (&none, vec!["--prompt", "rain"], "ssv2a fetch"),
    ];
    for (models, args, expect) in cases {
        let (ok, _, err) = gen(models, &out, &args);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(expect), "{args:?}: expected `{expect}` in: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"previous", "{args:?} touched the output");
    }
    let (_, _, err) = gen(&bare, &out, &["--prompt", "rain"]);
    assert!(err.contains("--tokenizer-dir") && err.contains("no text tokenizer"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `convert --kind audioldm --tokenizer-dir DIR` stores the tokenizer files' text in the pack; a
/// folder without the files is one clear line and no pack.
#[test]
fn convert_with_tokenizer_dir_stores_the_tokenizer() {
    if !has_gpu() {
        return;
    }
    let dir = tmpdir("tokdir");
    let tok = dir.join("tok");
    std::fs::create_dir_all(&tok).unwrap();
    // A vocabulary within the tiny tower's 100 rows (specials, letters, `Ġ`, merges to `Ġrain`).
    let mut vocab: Vec<String> = ["<s>", "<pad>", "</s>", "<unk>"].iter().map(|s| s.to_string()).collect();
    vocab.extend(('a'..='z').map(String::from));
    vocab.extend(["Ġ", "Ġr", "ai", "ain", "Ġrain", "<mask>"].iter().map(|s| s.to_string()));
    let json: serde_json::Map<String, serde_json::Value> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::json!(i))).collect();
    std::fs::write(tok.join("vocab.json"), serde_json::to_vec(&json).unwrap()).unwrap();
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let pack = models.join("audioldm-s-full-v2.safetensors");
    let convert = |tok: &Path| {
        let mut c = bin();
        c.args(["convert", "--kind", "audioldm", "--input"])
            .arg(fixture("ckpt/audioldm_tiny.ckpt"))
            .arg("--config")
            .arg(fixture("ckpt/audioldm_tiny.json"))
            .arg("--output")
            .arg(&pack)
            .arg("--tokenizer-dir")
            .arg(tok);
        run(&mut c)
    };
    let (ok, _, err) = convert(&tok);
    assert!(!ok && err.contains("merges.txt") && err.trim().lines().count() == 1, "{err}");
    assert!(!pack.exists());
    std::fs::write(tok.join("merges.txt"), "#version: 0.2\nĠ r\na i\nai n\nĠr ain\n").unwrap();
    let (ok, _, err) = convert(&tok);
    assert!(ok, "{err}");
    // (The tiny checkpoint's CLAP space, 16-d, is not its UNet's 64-d film condition, so it
    // cannot generate; the demo packs cover `generate --prompt` end to end.)
    let (_, _, meta) = ssv2a::weights::parse_header(&std::fs::read(&pack).unwrap(), "pack").unwrap();
    assert_eq!(meta[ssv2a::models::clap::TOKENIZER_VOCAB_META].as_bytes(), &std::fs::read(tok.join("vocab.json")).unwrap()[..]);
    assert_eq!(meta[ssv2a::models::clap::TOKENIZER_MERGES_META], "#version: 0.2\nĠ r\na i\nai n\nĠr ain\n");
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 16 item 2: a 100-megapixel PNG (a few hundred KB) generates within 1.5 GB of host
/// memory. Before the fix, 9984² reached 4.4 GB and failed, 10000² failed on "10016×10016",
/// and `--imgsz 640` took 10.5 GB. Ignored in CI (a minute on lavapipe in a release build):
/// `cargo test --release --test cli -- --ignored large_image`.
#[test]
#[ignore = "a 100-megapixel image: about a minute in a release build"]
fn large_image_generates_in_bounded_memory() {
    if !has_gpu() {
        return;
    }
    let dir = tmpdir("large");
    let packs = dir.join("packs");
    let (ok, _, err) = run(bin().arg("demo").args(QUICK).arg("--quiet").arg("--write-packs").arg(&packs).arg("-o").arg(dir.join("d.wav")));
    assert!(ok, "{err}");
    let img = dir.join("big.png");
    let mut data = vec![0u8; 10_000 * 10_000 * 3];
    for (i, px) in data.chunks_exact_mut(3).enumerate() {
        let (x, y) = (i % 10_000, i / 10_000);
        px.copy_from_slice(&[(x / 40) as u8, (y / 40) as u8, if (4000..4400).contains(&x) && (4000..4400).contains(&y) { 255 } else { 90 }]);
    }
    let rgb = ssv2a::media::image::RgbImage::new(10_000, 10_000, data).unwrap();
    std::fs::write(&img, ssv2a::media::imageio::encode_png(&rgb).unwrap()).unwrap();
    drop(rgb);
    for extra in [&[][..], &["--imgsz", "640"][..]] {
        let out = dir.join("big.wav");
        let (ok, _, err) =
            run(bin().args(["generate", "--preset", "fast", "--steps", "2", "--models"]).arg(&packs).arg("--image").arg(&img).arg("-o").arg(&out).args(extra));
        assert!(ok, "{extra:?}: {err}");
        let mb: f64 =
            err.lines().find_map(|l| l.strip_prefix("peak memory (RSS): ")).and_then(|v| v.trim_end_matches(" MB").parse().ok()).expect("peak memory line");
        eprintln!("10000×10000 PNG {extra:?}: peak RSS {mb:.0} MB");
        assert!(mb < 1500.0, "{extra:?}: peak RSS {mb} MB");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint of a size no release has (tests/fixtures/ckpt/audioldm_m_like.ckpt: other widths,
/// depths, latent channels and vocoder) converts with no --config and generates from a prompt
/// as the `m` release, with no other pack and no other file; a release that is not installed is
/// one clear line.
#[test]
fn convert_without_config_then_generate_with_audioldm_m() {
    if !has_gpu() {
        return;
    }
    let dir = tmpdir("m-like");
    let tok = dir.join("tok");
    std::fs::create_dir_all(&tok).unwrap();
    let mut vocab: Vec<String> = ["<s>", "<pad>", "</s>", "<unk>"].iter().map(|s| s.to_string()).collect();
    vocab.extend(('a'..='z').map(String::from));
    vocab.extend(["Ġ", "Ġr", "ai", "ain", "Ġrain", "<mask>"].iter().map(|s| s.to_string()));
    let json: serde_json::Map<String, serde_json::Value> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::json!(i))).collect();
    std::fs::write(tok.join("vocab.json"), serde_json::to_vec(&json).unwrap()).unwrap();
    std::fs::write(tok.join("merges.txt"), "#version: 0.2\nĠ r\na i\nai n\nĠr ain\n").unwrap();
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let pack = models.join("audioldm-m-full.safetensors");
    let (ok, _, err) = run(bin()
        .args(["convert", "--kind", "audioldm", "--input"])
        .arg(fixture("ckpt/audioldm_m_like.ckpt"))
        .arg("--output")
        .arg(&pack)
        .arg("--tokenizer-dir")
        .arg(&tok));
    assert!(ok, "convert failed: {err}");
    let (_, _, meta) = ssv2a::weights::parse_header(&std::fs::read(&pack).unwrap(), "pack").unwrap();
    assert!(!meta.contains_key("config_source"));
    assert!(meta[ssv2a::models::audioldm::CONFIG_DEFAULTS_META].contains("upsample_rates"), "{meta:?}");
    let gen = |extra: &[&str], out: &Path| run(bin().arg("generate").args(QUICK).arg("--quiet").arg("--models").arg(&models).arg("-o").arg(out).args(extra));
    let out = dir.join("m.wav");
    let (ok, _, err) = gen(&["--audioldm", "m", "--prompt", "rain", "--seed", "3"], &out);
    assert!(ok, "{err}");
    // 2.5 s: int(64.0) = 64 latent frames (a multiple of 4 at 3 levels) → 256 mel frames.
    assert_eq!(wav_len(&out), 160 * 4 * 64 + 32);
    let again = dir.join("again.wav");
    let (ok, _, err) = gen(&["--audioldm", "m", "--prompt", "rain", "--seed", "3"], &again);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap(), "same seed, same WAV");
    // The default release (s) is not installed here; nor is l; xl is no release.
    let missing = dir.join("missing.wav");
    for (args, expect) in [
        (vec!["--prompt", "rain"], "ssv2a fetch audioldm-s-full-v2"),
        (vec!["--audioldm", "l", "--prompt", "rain"], "ssv2a fetch --audioldm l"),
        (vec!["--audioldm", "xl", "--prompt", "rain"], "`xl` is not an AudioLDM release"),
    ] {
        let (ok, _, err) = gen(&args, &missing);
        assert!(!ok && err.contains(expect) && err.trim().lines().count() == 1, "{args:?}: {err}");
        assert!(!missing.exists());
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 15: demo packs → `generate --image … --audio …` (MP3 and WAV) → WAV, with every
/// candidate's ranking score printed; bad audio is one clear line and no output.
#[test]
fn generate_with_audio_sources_ranks_candidates() {
    if !has_gpu() {
        return;
    }
    let dir = tmpdir("audio");
    let packs = dir.join("packs");
    let (ok, _, err) = run(bin().arg("demo").args(QUICK).arg("--quiet").arg("--write-packs").arg(&packs).arg("-o").arg(dir.join("d.wav")));
    assert!(ok, "{err}");
    let img = dir.join("scene.png");
    png(&img, 96, 64);
    let out = dir.join("mix.wav");
    let (ok, _, err) = run(bin()
        .args(["generate", "--preset", "fast", "--steps", "2", "--candidates", "2", "--duration", "2.5", "--models"])
        .arg(&packs)
        .arg("--image")
        .arg(&img)
        .arg("--audio")
        .arg(fixture("audio/stereo.mp3"))
        .arg("--audio")
        .arg(fixture("audio/pcm24.wav"))
        .arg("-o")
        .arg(&out));
    assert!(ok, "{err}");
    assert!(err.contains("audio ") && err.contains("stereo.mp3") && err.contains("pcm24.wav"), "{err}");
    let line = err.lines().find(|l| l.starts_with("candidates (CLAP")).unwrap_or_else(|| panic!("no scores: {err}"));
    let scores = line.split("kept): ").nth(1).unwrap_or_default();
    assert_eq!(scores.split("  ").count(), 2, "{line}");
    assert_eq!(scores.matches('*').count(), 1, "{line}");
    assert_eq!(wav_len(&out), 160 * 4 * 64 + 32);
    // --rank none: no scoring; a bad --rank or a broken audio file: one line, no output.
    let (ok, _, err) = run(bin()
        .args(["generate", "--preset", "fast", "--steps", "1", "--candidates", "2", "--rank", "none", "--duration", "2.5", "--models"])
        .arg(&packs)
        .arg("--audio")
        .arg(fixture("audio/pcm24.wav"))
        .arg("-o")
        .arg(dir.join("n.wav")));
    assert!(ok && !err.contains("candidates (CLAP"), "{err}");
    let bad = dir.join("bad.wav");
    std::fs::write(&bad, b"RIFF\x10\x00\x00\x00WAVEjunkjunk").unwrap();
    for (args, want) in [(vec!["--rank", "best"], "--rank best"), (vec!["--audio", bad.to_str().unwrap()], "bad.wav")] {
        let missing = dir.join("missing.wav");
        let (ok, _, err) = run(bin()
            .args(["generate", "--preset", "fast", "--steps", "1", "--models"])
            .arg(&packs)
            .arg("--image")
            .arg(&img)
            .args(&args)
            .arg("-o")
            .arg(&missing));
        assert!(!ok && err.contains(want), "{args:?}: {err}");
        assert!(!missing.exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
