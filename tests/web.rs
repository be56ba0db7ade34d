//! The kernel suite in a browser: headless Chromium's WebGPU (SwiftShader) through the wasm32
//! build. Run with
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test --target wasm32-unknown-unknown --no-default-features --test web`.
#![cfg(target_arch = "wasm32")]

mod common;

use common::{cases, check_backend};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn gpu() -> ssv2a::Gpu {
    let g = ssv2a::Gpu::new().await.expect("a WebGPU adapter (is --enable-unsafe-webgpu set?)");
    check_backend(&g).unwrap();
    g
}

macro_rules! web_case {
    ($name:ident, $f:path) => {
        #[wasm_bindgen_test]
        async fn $name() {
            let g = gpu().await;
            if let Err(e) = $f(&g).await {
                panic!("{e}");
            }
        }
    };
}

web_case!(unary_in_browser, cases::unary::unary_all);
web_case!(binary_in_browser, cases::binary::binary_all);
web_case!(reduce_in_browser, cases::reduce::reduce_all);
web_case!(layer_norm_in_browser, cases::norm::layer_norm);
web_case!(group_norm_in_browser, cases::norm::group_norm);
web_case!(copy_in_browser, cases::copy::copy_all);
web_case!(max_pool_in_browser, cases::pool::max_pool);
web_case!(gather_in_browser, cases::embed::gather);
web_case!(tensor_gather_in_browser, cases::embed::gather_tensor);
web_case!(weights_in_browser, cases::weights::round_trip);
web_case!(matmul_linear_shapes_in_browser, cases::matmul::linear_shapes);
web_case!(matmul_linear_acts_in_browser, cases::matmul::linear_acts);
web_case!(matmul_linear_split_k_in_browser, cases::matmul::linear_split_k);
web_case!(matmul_linear_layouts_in_browser, cases::matmul::linear_layouts);
web_case!(matmul_bmm_shapes_in_browser, cases::matmul::bmm_shapes);
web_case!(matmul_bmm_strided_heads_in_browser, cases::matmul::bmm_strided_heads);
web_case!(matmul_shape_errors_in_browser, cases::matmul::shape_errors);
web_case!(conv2d_in_browser, cases::conv::conv2d_all);
web_case!(conv1d_in_browser, cases::conv::conv1d_all);
web_case!(conv_transpose1d_in_browser, cases::conv::conv_transpose1d_all);
web_case!(conv_errors_in_browser, cases::conv::conv_errors);
web_case!(sdpa_shapes_in_browser, cases::attention::sdpa_shapes);
web_case!(sdpa_large_logits_in_browser, cases::attention::sdpa_large_logits);
web_case!(sdpa_masks_in_browser, cases::attention::sdpa_masks);
web_case!(sdpa_head_major_in_browser, cases::attention::sdpa_head_major);
web_case!(feature_softmax_in_browser, cases::attention::feature_softmax);
web_case!(efficient_attention_in_browser, cases::attention::efficient_attention);

/// The whole pipeline in the browser on the demo's random weights (few steps): detection,
/// crops, CLIP, Cycle Mix, AudioLDM, VAE, HiFi-GAN; deterministic for a seed.
#[wasm_bindgen_test]
async fn pipeline_in_browser() {
    use ssv2a::pipeline::{demo, ImageSource, Overrides, Picture, Preset, Request};
    let g = gpu().await;
    let (mut p, _) = demo::pipeline(&g, demo::WEIGHTS_SEED, false).unwrap();
    let opts = r#"{"preset": "fast", "steps": 1, "cycle_its": 1, "cycle_samples": 2, "var_samples": 2, "duration": 2.5, "seed": 3}"#;
    let s = Overrides::from_json(opts).unwrap().settings(Preset::Official).unwrap();
    let req = Request { images: vec![ImageSource::new("scene", Picture::Rgb(demo::scene(96, 64)))], ..Request::default() };
    let mut events = 0;
    let a = p.generate(&req, &s, &mut |_| events += 1, &|| false).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.waveform.len(), 160 * 4 * 64 + 32);
    assert!(a.waveform.iter().all(|v| v.is_finite()));
    assert!(events > 5);
    let b = p.generate(&req, &s, &mut |_| {}, &|| false).await.unwrap();
    assert_eq!(a.waveform, b.waveform);
    assert!(Overrides::from_json(r#"{"stepz": 1}"#).is_err());
}

/// AudioLDM's own text to audio in the browser on the demo pack (its tokenizer is the fixture
/// vocabulary): the tokenizer and the CLAP text tower in wasm, deterministic for a seed, a
/// 100,000-character prompt cut at 512 tokens and reported, other sources refused.
#[wasm_bindgen_test]
async fn prompt_in_browser() {
    use ssv2a::pipeline::{demo, ImageSource, Mode, Overrides, Picture, Preset, PromptTokens, Request};
    let g = gpu().await;
    let (mut p, _) = demo::pipeline(&g, demo::WEIGHTS_SEED, false).unwrap();
    let opts = r#"{"preset": "fast", "steps": 1, "duration": 1, "seed": 3}"#;
    let s = Overrides::from_json(opts).unwrap().settings(Preset::Official).unwrap();
    let req = Request { prompt: Some("rain on a tin roof".into()), ..Request::default() };
    let a = p.generate(&req, &s, &mut |_| {}, &|| false).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.mode, Mode::TextToAudio);
    assert_eq!(a.waveform.len(), 160 * 4 * 25 + 32);
    assert_eq!(a.prompt, Some(PromptTokens { tokens: 6, max_length: 512, truncated: false }));
    let b = p.generate(&req, &s, &mut |_| {}, &|| false).await.unwrap();
    assert_eq!(a.waveform, b.waveform);
    let long = Request { prompt: Some("rain on a tin roof, ".repeat(5000)), ..Request::default() };
    let c = p.generate(&long, &s, &mut |_| {}, &|| false).await.unwrap();
    assert_eq!(c.prompt, Some(PromptTokens { tokens: 510, max_length: 512, truncated: true }));
    let mixed = Request { images: vec![ImageSource::new("scene", Picture::Rgb(demo::scene(32, 32)))], ..long };
    assert!(p.generate(&mixed, &s, &mut |_| {}, &|| false).await.is_err());
}

/// The seeded normal stream in wasm is the native one (tests/models_ssv2a.rs pins the same
/// digest): a seed gives the same Cycle Mix draws and diffusion noise in the browser.
#[wasm_bindgen_test]
fn seeded_normal_stream_is_the_native_one() {
    assert_eq!(common::normal_stream_digest(42, 1 << 20), common::NORMAL_STREAM_42);
}

/// Image decoding in wasm gives PIL's pixels exactly, as natively (tests/decode.rs and
/// tests/models_clip.rs have every fixture): JPEG (baseline 4:2:0, progressive, h1v2, restarts,
/// CMYK) and WebP decodes, and CLIP's resize + crop of PNG (RGBA, grey, palette, 16-bit), JPEG
/// and CMYK files against Pillow 11.3.
#[wasm_bindgen_test]
fn image_decoding_in_browser() {
    use ssv2a::media::imageio::decode;
    use ssv2a::models::clip::ClipImage;
    let golden = safetensors::SafeTensors::deserialize(include_bytes!("fixtures/decode_pil.safetensors")).unwrap();
    let files: [(&str, &[u8]); 5] = [
        ("pil_420_opt_q85_123x45", include_bytes!("fixtures/images/jpeg/pil_420_opt_q85_123x45.jpg")),
        ("pil_420_q50_prog_101x67", include_bytes!("fixtures/images/jpeg/pil_420_q50_prog_101x67.jpg")),
        ("cjpeg_440_57x43", include_bytes!("fixtures/images/jpeg/cjpeg_440_57x43.jpg")),
        ("cjpeg_420_prog_restart_70x50", include_bytes!("fixtures/images/jpeg/cjpeg_420_prog_restart_70x50.jpg")),
        ("pil_cmyk_29x23", include_bytes!("fixtures/images/jpeg/pil_cmyk_29x23.jpg")),
    ];
    for (name, bytes) in files {
        let j = ssv2a::media::jpeg::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(j.data, golden.tensor(name).unwrap().data(), "{name}: differs from PIL");
    }
    let webp = decode(include_bytes!("fixtures/images/webp/photo_q80_121x91.webp"), "webp").unwrap().to_rgb();
    assert_eq!(webp.data, golden.tensor("webp.photo_q80_121x91").unwrap().data(), "lossy WebP");
    let crops = safetensors::SafeTensors::deserialize(include_bytes!("fixtures/clip_preprocess.safetensors")).unwrap();
    let images: [(&str, &[u8]); 6] = [
        ("photo_203x200", include_bytes!("fixtures/images/photo_203x200.jpg")),
        ("rgba_97x61", include_bytes!("fixtures/images/rgba_97x61.png")),
        ("gray_61x97", include_bytes!("fixtures/images/gray_61x97.png")),
        ("palette_150x100", include_bytes!("fixtures/images/palette_150x100.png")),
        ("rgb16_40x30", include_bytes!("fixtures/images/rgb16_40x30.png")),
        ("cmyk_48x40", include_bytes!("fixtures/images/cmyk_48x40.jpg")),
    ];
    for (stem, bytes) in images {
        let p = decode(bytes, stem).unwrap();
        let crop = ClipImage::from(&p).resize_crop(224).unwrap();
        assert_eq!(crop.data, crops.tensor(&format!("out.{stem}.crop")).unwrap().data(), "{stem}: CLIP crop differs from PIL");
    }
    let cut = &include_bytes!("fixtures/images/jpeg/pil_420_q50_prog_101x67.jpg")[..600];
    assert!(decode(cut, "cut.jpg").unwrap_err().to_string().contains("truncated"));
    assert!(decode(b"GIF89a....", "a.gif").unwrap_err().to_string().contains("a.gif"));
}

/// Issue 15 through the web API in the browser: an audio source given as file bytes (WAV) and
/// one as PCM, mixed into one sound on the demo weights, two AudioLDM candidates ranked by
/// CLAP's audio tower (scores returned, the kept index among them).
#[wasm_bindgen_test]
async fn generate_sources_with_audio_and_ranking_in_browser() {
    use wasm_bindgen::JsValue;
    let session = ssv2a::wasm::Session::create().await.unwrap_or_else(|_| panic!("no WebGPU session"));
    let mut g = ssv2a::wasm::Generator::demo(&session).unwrap_or_else(|_| panic!("demo generator"));
    let tone: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.07).sin() * 0.4).collect();
    let wav = ssv2a::media::audio::encode_wav(&tone, 16000, ssv2a::media::audio::WavFormat::Pcm16).unwrap();
    let pcm = js_sys::Object::new();
    let noise: Vec<f32> = (0..22050).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.3).collect();
    js_sys::Reflect::set(&pcm, &"samples".into(), &js_sys::Float32Array::from(&noise[..])).unwrap();
    js_sys::Reflect::set(&pcm, &"sampleRate".into(), &JsValue::from(22050)).unwrap();
    let audios = js_sys::Array::of2(&js_sys::Uint8Array::from(&wav[..]), &pcm);
    let options = r#"{"preset":"fast","steps":1,"candidates":2,"duration":2.5,"cycle_its":0,"cycle_samples":2,"var_samples":2}"#;
    let progress = js_sys::Function::new_no_args("");
    let cancelled = js_sys::Function::new_no_args("return false;");
    let out = g
        .generate_sources(js_sys::Array::new(), audios, options.into(), progress.clone(), cancelled.clone())
        .await
        .unwrap_or_else(|e| panic!("generate_sources: {:?}", JsValue::from(e)));
    let get = |k: &str| js_sys::Reflect::get(&out, &k.into()).unwrap();
    let wave = js_sys::Float32Array::from(get("waveform")).to_vec();
    assert_eq!(wave.len(), 160 * 4 * 64 + 32);
    assert!(wave.iter().all(|v| v.is_finite()) && wave.iter().any(|&v| v != 0.0));
    let scores = js_sys::Float32Array::from(get("candidates")).to_vec();
    assert_eq!(scores.len(), 2);
    let chosen = get("chosen").as_f64().unwrap() as usize;
    assert!(chosen < 2 && scores[chosen] >= scores[1 - chosen], "{scores:?} chose {chosen}");
    // A bad PCM object is one clear error.
    let bad = js_sys::Array::of1(&js_sys::Object::new());
    let e = g.generate_sources(js_sys::Array::new(), bad, options.into(), progress, cancelled).await.err().map(JsValue::from);
    let msg = e.and_then(|v| js_sys::Reflect::get(&v, &"message".into()).ok()).and_then(|m| m.as_string()).unwrap_or_default();
    assert!(msg.contains("audio 1") && msg.contains("sampleRate"), "{msg}");
}
