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
    let dir = tmpdir("convert");
    let pack = convert_tiny(&dir, "f32");
    let bytes = std::fs::read(&pack).unwrap();
    let (start, infos, meta) = ssv2a::weights::parse_header(&bytes, "pack").unwrap();
    assert_eq!(meta["kind"], "audioldm");
    assert_eq!(meta["ema"], "true");
    assert_eq!(meta["components"], "vae,vocoder,unet");
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
    // The default (full-size) config does not fit the tiny checkpoint: clear error, no pack.
    let (ok, _, err) = run(bin().args(["convert", "--kind", "audioldm", "--input"]).arg(fixture("ckpt/audioldm_tiny.ckpt")).arg("--output").arg(&out));
    assert!(!ok && err.contains("shape"), "{err}");
    assert!(!out.exists(), "a pack was written despite the error");
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
    assert!(!ok && err.contains("`clip` pack"), "{err}");
    let pack = convert_tiny(&dir, "f32");
    write_inputs(&input, &[("mel", &ssv2a::HostTensor::zeros([1, 1, 10, 7]))]);
    let (ok, _, err) = run(bin().args(["stage", "hifigan", "--weights"]).arg(&pack).arg("--input").arg(&input).arg("--output").arg(&out));
    assert!(!ok && err.contains("hifigan") && err.contains("[1, 1, 10, 7]"), "{err}");
    assert!(!out.exists());
}
