//! CLIP's vision tower against the PyTorch golden `clip_vit_tiny` (OpenAI `clip.model.CLIP`,
//! made by `tests/reference/make_clip.py`), the converter on the three layouts a CLIP checkpoint
//! comes in (OpenAI state dict, OpenAI TorchScript archive, Hugging Face; `make_clip_ckpt.py`),
//! OpenAI's preprocessing against Pillow 11.3 (`make_clip_preprocess.py`), and bad image files.

mod common;

use common::golden::{compare_trace, pack_values, Golden};
use common::{assert_close, run, Tol};
use ssv2a::convert::plan::CheckpointSource;
use ssv2a::convert::Checkpoint;
use ssv2a::media::image::{RgbImage, CLIP_MEAN, CLIP_STD};
use ssv2a::media::imageio::{decode, Decoded};
use ssv2a::models::clip::{self, ClipImage, ClipVision};
use ssv2a::{Gpu, Weights};

const ACT_TOL: Tol = Tol { abs: 1e-4, rel: 1e-3 };

fn e(x: ssv2a::Error) -> String {
    x.to_string()
}

fn fixture_path(rel: &str) -> String {
    format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn openai_pack(gpu: &Gpu, g: &Golden, f16: bool) -> Result<Weights, String> {
    let src = g.state();
    let plan = clip::plan(&src, Some(&g.config())).map_err(e)?;
    Weights::from_bytes(gpu, plan.to_bytes(&src, f16).map_err(e)?, &g.name).map_err(e)
}

#[test]
fn clip_vision_matches_pytorch() {
    run(|gpu| async move {
        let g = Golden::load("clip_vit_tiny");
        let w = openai_pack(&gpu, &g, false)?;
        assert_eq!(w.meta("components"), Some("vision,text"));
        let model = ClipVision::load(&w).map_err(e)?;
        assert_eq!(model.config.vision_heads, 4, "heads come from the config, not width/64");
        let mut trace = vec![];
        let out = model.forward(&g.upload(&gpu, "in.pixels"), Some(&mut trace)).map_err(e)?;
        compare_trace(&g, &trace, "", ACT_TOL).await?;
        assert_close("image_embeds", &out.to_vec().await.map_err(e)?, &g.get("out.image_embeds").data, ACT_TOL)?;
        // Wrong input sizes are errors.
        let bad = ssv2a::Tensor::zeros(&gpu, [1, 3, 64, 64]).map_err(e)?;
        assert!(model.forward(&bad, None).is_err());
        Ok(())
    });
}

#[test]
fn clip_converter_reads_openai_torchscript_and_hugging_face_layouts() {
    run(|gpu| async move {
        let g = Golden::load("clip_vit_tiny");
        let reference = pack_values(&openai_pack(&gpu, &g, false)?).await;
        // The text tower is kept, in HF names; projections are transposed.
        let tp = &reference["text_projection.weight"];
        let st = g.get("state.text_projection");
        assert_eq!(tp.shape, vec![st.shape[1], st.shape[0]]);
        assert_eq!(tp.data[1], st.data[st.shape[1]], "text_projection is not transposed");
        let q = &reference["vision_model.encoder.layers.1.self_attn.k_proj.bias"];
        let ipb = g.get("state.visual.transformer.resblocks.1.attn.in_proj_bias");
        assert_eq!(q.data[..], ipb.data[64..128], "in_proj rows are not split q, k, v");

        // Hugging Face layout (transformers' CLIPModel state dict + config.json).
        let ckpt = Checkpoint::open(fixture_path("ckpt/clip_tiny_hf.safetensors")).map_err(e)?;
        let src = CheckpointSource::new(&ckpt, "").map_err(e)?;
        let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture_path("ckpt/clip_tiny_hf.json")).unwrap()).unwrap();
        let plan = clip::plan(&src, Some(&cfg)).map_err(e)?;
        let w = Weights::from_bytes(&gpu, plan.to_bytes(&src, false).map_err(e)?, "hf").map_err(e)?;
        assert_eq!(w.meta("source_layout"), Some("huggingface"));
        let hf = pack_values(&w).await;
        assert!(hf == reference, "HF layout converts differently: {:?}", hf.keys().filter(|k| hf.get(*k) != reference.get(*k)).collect::<Vec<_>>());
        // Without the config the head count defaults to width/64 = 1, which the model accepts
        // but computes differently: the config is needed for non-standard checkpoints only.
        assert_eq!(clip::config_from_source(&src, None).map_err(e)?.1.vision_heads, 1);
        // A config that contradicts the shapes is refused.
        let mut bad = cfg.clone();
        bad["vision_config"]["num_hidden_layers"] = 3.into();
        assert!(clip::plan(&src, Some(&bad)).is_err());

        // OpenAI TorchScript archive (ViT-L-14.pt is a traced fp16 model; this is a tiny one).
        let ckpt = Checkpoint::open(fixture_path("ckpt/clip_tiny_jit.pt")).map_err(e)?;
        let src = CheckpointSource::new(&ckpt, "").map_err(e)?;
        let plan = clip::plan(&src, Some(&serde_json::json!({"vision_heads": 4}))).map_err(e)?;
        assert_eq!(plan.metadata.get("source_layout").map(|s| s.as_str()), Some("openai"));
        let w = Weights::from_bytes(&gpu, plan.to_bytes(&src, false).map_err(e)?, "jit").map_err(e)?;
        let jit = pack_values(&w).await;
        assert_eq!(jit.len(), reference.len());
        for (k, v) in &reference {
            let rounded: Vec<f32> = v.data.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
            assert_eq!(jit[k].data, rounded, "{k}: the TorchScript weights are not the fixture's rounded to fp16");
        }
        ClipVision::load(&w).map_err(e)?;
        Ok(())
    });
}

#[test]
fn clip_fp16_pack_is_close_to_f32() {
    run(|gpu| async move {
        let g = Golden::load("clip_vit_tiny");
        let x = g.upload(&gpu, "in.pixels");
        let m32 = ClipVision::load(&openai_pack(&gpu, &g, false)?).map_err(e)?;
        let m16 = ClipVision::load(&openai_pack(&gpu, &g, true)?).map_err(e)?;
        let a = m32.forward(&x, None).map_err(e)?.to_vec().await.map_err(e)?;
        let b = m16.forward(&x, None).map_err(e)?.to_vec().await.map_err(e)?;
        for (i, (ra, rb)) in a.chunks(32).zip(b.chunks(32)).enumerate() {
            let dot: f64 = ra.iter().zip(rb).map(|(p, q)| *p as f64 * *q as f64).sum();
            let n = |r: &[f32]| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            let cos = dot / (n(ra) * n(rb));
            eprintln!("clip tiny fp16 vs f32, image {i}: cosine {cos:.7}");
            assert!(cos > 0.999, "fp16 pack diverges: cosine {cos}");
        }
        Ok(())
    });
}

/// Resize + centre crop + convert("RGB") as `ClipImage` runs it, uint8.
fn crop_of(d: &Decoded) -> RgbImage {
    ClipImage::from(d).resize_crop(224).unwrap()
}

fn u8_tensor(bytes: &[u8], meta: &safetensors::tensor::Metadata, n: usize, key: &str) -> Vec<u8> {
    let info = meta.info(key).unwrap_or_else(|| panic!("fixture lacks {key}"));
    let (a, b) = info.data_offsets;
    bytes[8 + n + a..8 + n + b].to_vec()
}

fn max_diff(a: &[u8], b: &[u8]) -> (u8, usize) {
    assert_eq!(a.len(), b.len());
    let d = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y));
    (d.clone().max().unwrap_or(0), d.filter(|&v| v > 0).count())
}

#[test]
fn preprocessing_matches_pillow() {
    let bytes = std::fs::read(fixture_path("clip_preprocess.safetensors")).unwrap();
    let (n, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let images = ["rgb_640x427.png", "photo_203x200.jpg", "rgba_97x61.png", "gray_61x97.png", "palette_150x100.png", "cmyk_48x40.jpg", "rgb16_40x30.png"];
    let mut report = vec![];
    for name in images {
        let stem = name.rsplit_once('.').unwrap().0;
        let d = ssv2a::media::imageio::open(fixture_path(&format!("images/{name}"))).unwrap();
        let got = crop_of(&d);
        let want = u8_tensor(&bytes, &meta, n, &format!("out.{stem}.crop"));
        let (md, count) = max_diff(&got.data, &want);
        report.push(format!("{name}: max |Δ| {md}/255 on {count} of {} values", want.len()));
        if stem == "photo_203x200" {
            // The JPEG decoder alone, against PIL's decode of the same file.
            let dec = u8_tensor(&bytes, &meta, n, &format!("in.{stem}.decoded"));
            let (dd, dc) = max_diff(&d.to_rgb().data, &dec);
            report.push(format!("  {name} decode vs PIL: max |Δ| {dd} on {dc} of {} values", dec.len()));
            assert_eq!(dd, 0, "{name}: JPEG decode differs from PIL's");
        }
        // Every image, JPEG and CMYK included, bit-exact (JPEGs through src/media/jpeg/; CMYK
        // resized in CMYK and converted after, as PIL).
        assert_eq!(md, 0, "{name}: not bit-exact vs Pillow 11.3");
        // The normalised tensor is the same crop scaled.
        let x = ClipImage::from(&d).preprocess(224).unwrap();
        for (k, &v) in got.data.iter().enumerate().step_by(97) {
            let (p, c) = (k / 3, k % 3);
            let want = (v as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
            assert_eq!(x[c * 224 * 224 + p], want, "{name}: normalisation at {k}");
        }
        if stem == "rgb_640x427" {
            let info = meta.info("out.rgb_640x427.pixels").unwrap();
            let (a, b) = info.data_offsets;
            let want = ssv2a::weights::decode_f32(info.dtype, &bytes[8 + n + a..8 + n + b], "pixels").unwrap();
            assert_close("normalised pixels", &x, &want, Tol { abs: 0.0, rel: 0.0 }).unwrap();
        }
    }
    eprintln!("preprocessing vs Pillow 11.3:\n{}", report.join("\n"));
}

/// A PNG (signature, IHDR, an empty IDAT) claiming `w`×`h` RGB pixels, without their data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(13u32.to_be_bytes());
    out.extend(&ihdr);
    out.extend(crc32(&ihdr).to_be_bytes());
    out.extend(0u32.to_be_bytes());
    out.extend(b"IDAT");
    out.extend(crc32(b"IDAT").to_be_bytes());
    out
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn bad_images_give_clear_results_or_errors() {
    let read = |n: &str| std::fs::read(fixture_path(&format!("images/{n}"))).unwrap();
    let err = |name: &str, bytes: &[u8]| -> String {
        let m = decode(bytes, name).err().unwrap_or_else(|| panic!("{name}: decoded without an error")).to_string();
        assert!(m.contains(name), "{name}: the error does not name the file: {m}");
        m
    };
    // empty, not an image, truncated (PNG and JPEG), too large
    eprintln!("empty: {}", err("empty.png", &[]));
    eprintln!("text: {}", err("notes.txt", b"this is not an image at all\n"));
    let png = read("rgb_640x427.png");
    eprintln!("truncated png: {}", err("cut.png", &png[..png.len() / 2]));
    let jpg = read("photo_203x200.jpg");
    eprintln!("truncated jpeg: {}", err("cut.jpg", &jpg[..jpg.len() / 2]));
    let m = err("huge.png", &png_header(20_000, 20_000));
    assert!(m.contains("limit"), "{m}");
    eprintln!("20000x20000: {m}");
    assert!(err("zero.png", &png_header(0, 5)).contains("zero.png"));
    // 1×1: a clear result, the pixel's colour everywhere.
    let one = ssv2a::media::imageio::encode_png(&RgbImage::new(1, 1, vec![200, 100, 50]).unwrap()).unwrap();
    let d = decode(&one, "one.png").unwrap();
    let x = crop_of(&d);
    assert!(x.data.chunks(3).all(|p| p == [200, 100, 50]));
    // CMYK JPEG stays CMYK until after the resize, 16-bit PNG decodes to RGB (their parity
    // with PIL is checked above).
    assert!(matches!(decode(&read("cmyk_48x40.jpg"), "cmyk").unwrap(), Decoded::Cmyk(_)));
    assert!(matches!(decode(&read("rgb16_40x30.png"), "rgb16").unwrap(), Decoded::Rgb(_)));
    assert!(matches!(decode(&read("palette_150x100.png"), "p").unwrap(), Decoded::Palette(_)));
}

#[test]
fn embed_images_runs_preprocessing_the_tower_and_normalisation() {
    run(|gpu| async move {
        let g = Golden::load("clip_vit_tiny");
        let model = ClipVision::load(&openai_pack(&gpu, &g, false)?).map_err(e)?;
        let a = ssv2a::media::imageio::open(fixture_path("images/rgb_640x427.png")).map_err(e)?;
        let b = ssv2a::media::imageio::open(fixture_path("images/rgba_97x61.png")).map_err(e)?;
        let imgs = [ClipImage::from(&a), ClipImage::from(&b)];
        let emb = model.embed_images(&imgs).await.map_err(e)?;
        assert_eq!(emb.shape, vec![2, 32]);
        // Same as the tower on the fixture's pixels (`_transform(70)` under Pillow 13, which
        // for these sizes resamples in the classic order), L2-normalised.
        let want = g.get("out.image_embeds");
        let mut unit = want.data.clone();
        ssv2a::models::ssv2a::sampling::l2_normalize_rows(&mut unit, 32);
        assert_close("embed_images", &emb.data, &unit, ACT_TOL)?;
        assert!(model.embed_images(&[]).await.is_err());
        Ok(())
    });
}
