//! Weight packs: fp16 packing round trip, strict loading errors, corrupt files.

use super::{e, R};
use crate::common::{assert_close, rand, Tol};
use ssv2a::weights::{pack_metadata, serialize_pack, PackTensor};
use ssv2a::{Error, Gpu, Weights};

fn bf16_tensor(name: &str, shape: Vec<usize>, v: &[f32]) -> PackTensor {
    let b: Vec<half::bf16> = v.iter().map(|&x| half::bf16::from_f32(x)).collect();
    PackTensor { name: name.into(), shape, dtype: safetensors::Dtype::BF16, data: bytemuck::cast_slice(&b).to_vec() }
}

pub async fn round_trip(gpu: &Gpu) -> R {
    let a = rand(1400, 5 * 7);
    let b = rand(1401, 3 * 4 * 3 * 3);
    let c = rand(1402, 9);
    let d = rand(1403, 6);
    let tensors = vec![
        PackTensor::f16("enc.lin.weight", vec![5, 7], &a),
        PackTensor::f32("enc.conv.weight", vec![3, 4, 3, 3], &b),
        PackTensor::f16("enc.lin.bias", vec![9], &c),
        bf16_tensor("dec.w", vec![2, 3], &d),
    ];
    let meta = pack_metadata("test", "{\"width\": 7}", "f16");
    let bytes = serialize_pack(&tensors, &meta).map_err(e)?;
    let w = Weights::from_bytes(gpu, bytes, "roundtrip.safetensors").map_err(e)?;
    w.expect_kind("test").map_err(e)?;
    #[derive(serde::Deserialize)]
    struct Cfg {
        width: usize,
    }
    let cfg: Cfg = w.config().map_err(e)?;
    if cfg.width != 7 {
        return Err("config not read back".into());
    }
    let enc = w.sub("enc");
    let lin = enc.weight("lin.weight", &[5, 7]).map_err(e)?;
    if lin.dtype() != ssv2a::WeightDtype::F16 || lin.row_stride() != 8 {
        return Err(format!("fp16 weight stored as {:?} stride {}", lin.dtype(), lin.row_stride()));
    }
    let f16a: Vec<f32> = a.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
    assert_close("f16 weight round trip", &lin.to_host().await.map_err(e)?.data, &f16a, Tol { abs: 0.0, rel: 0.0 })?;
    let conv = enc.weight("conv.weight", &[3, 4, 3, 3]).map_err(e)?;
    if conv.dtype() != ssv2a::WeightDtype::F32 || conv.cols() != 36 {
        return Err(format!("f32 weight stored as {:?}, cols {}", conv.dtype(), conv.cols()));
    }
    assert_close("f32 weight round trip", &conv.to_host().await.map_err(e)?.data, &b, Tol { abs: 0.0, rel: 0.0 })?;
    let bias = enc.tensor("lin.bias", &[9]).map_err(e)?;
    let f16c: Vec<f32> = c.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
    assert_close("f16 vector as f32 tensor", &bias.to_vec().await.map_err(e)?, &f16c, Tol { abs: 0.0, rel: 0.0 })?;

    // finish() lists what was never read.
    match w.finish() {
        Err(Error::UnusedWeights(v)) if v == vec!["dec.w".to_string()] => {}
        other => return Err(format!("finish() should report dec.w unused, got {other:?}")),
    }
    let dw = w.weight("dec.w", &[2, 3]).map_err(e)?;
    let bfd: Vec<f32> = d.iter().map(|&x| half::f16::from_f32(half::bf16::from_f32(x).to_f32()).to_f32()).collect();
    assert_close("bf16 weight", &dw.to_host().await.map_err(e)?.data, &bfd, Tol { abs: 0.0, rel: 0.0 })?;
    w.finish().map_err(e)?;

    // Missing key and wrong shape name the full key.
    match enc.weight("lin.wieght", &[5, 7]) {
        Err(Error::MissingWeight(k)) if k == "enc.lin.wieght" => {}
        other => return Err(format!("missing key: {other:?}")),
    }
    match enc.weight("lin.weight", &[7, 5]) {
        Err(Error::WeightShape { name, expected, got }) if name == "enc.lin.weight" && expected == vec![7, 5] && got == vec![5, 7] => {}
        other => return Err(format!("wrong shape: {other:?}")),
    }
    // Kind and version checks.
    if w.expect_kind("clip").is_ok() {
        return Err("a `test` pack passed as `clip`".into());
    }
    let mut old = meta.clone();
    old.insert("version".into(), "0".into());
    let w0 = Weights::from_bytes(gpu, serialize_pack(&tensors, &old).map_err(e)?, "old.safetensors").map_err(e)?;
    match w0.expect_kind("test") {
        Err(Error::Format(m)) if m.contains("version 0") => {}
        other => return Err(format!("old version accepted: {other:?}")),
    }
    let plain = Weights::from_bytes(gpu, serialize_pack(&tensors, &Default::default()).map_err(e)?, "plain.safetensors").map_err(e)?;
    if plain.expect_kind("test").is_ok() {
        return Err("a file without pack metadata passed".into());
    }
    Ok(())
}

pub async fn corrupt_files(gpu: &Gpu) -> R {
    let good = serialize_pack(&[PackTensor::f32("a", vec![4, 4], &rand(1500, 16))], &pack_metadata("test", "{}", "f32")).map_err(e)?;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short", vec![1, 2, 3]),
        ("truncated", good[..good.len() - 7].to_vec()),
        ("header only", good[..40].to_vec()),
        ("garbage", (0..1000u32).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect()),
    ];
    // A header claiming 10^12 bytes must not allocate them.
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&1_000_000_000_000u64.to_le_bytes());
    cases.push(("huge header length", huge));
    // Offsets pointing past the end.
    let mut bad = good.clone();
    let s = String::from_utf8_lossy(&bad[8..]).to_string();
    if let Some(pos) = s.find("[0,64]") {
        bad[8 + pos..8 + pos + 6].copy_from_slice(b"[0,99]");
        cases.push(("bad offsets", bad));
    }
    for (name, bytes) in cases {
        match Weights::from_bytes(gpu, bytes, name) {
            Err(Error::Format(m)) if m.contains(name) => {}
            Err(other) => return Err(format!("{name}: unexpected error kind {other:?}")),
            Ok(_) => return Err(format!("{name}: a corrupt file was accepted")),
        }
    }
    Ok(())
}
