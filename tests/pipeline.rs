//! The generation pipeline end to end on the demo's random-weight packs (reduced sizes, real
//! geometry): image → detection → crops → CLIP → Cycle Mix → AudioLDM → waveform, and the
//! official bugs that must not come back.

mod common;

use ssv2a::media::image::RgbImage;
use ssv2a::pipeline::{demo, AudioClip, ImageSource, Mode, Picture, Request, Settings, SourceBox, Stage, VideoFrames, SAMPLE_RATE};
use ssv2a::Error;

/// Small but complete settings: every stage runs, a few steps each.
fn quick(seed: u64) -> Settings {
    let mut s = Settings::fast();
    s.seed = seed;
    s.cycle.its = 2;
    s.cycle.samples = 4;
    s.cycle.var_samples = 4;
    s.generate.steps = 3;
    s.generate.candidates = 2;
    s.generate.duration_s = 2.5;
    s
}

fn image(name: &str, w: usize, h: usize) -> ImageSource {
    ImageSource::new(name, Picture::Rgb(demo::scene(w, h)))
}

fn one(img: ImageSource) -> Request {
    Request { images: vec![img], ..Request::default() }
}

/// Samples AudioLDM's decoder gives for `duration` s: T = int(25.6·d) latent frames, mel 4T
/// frames, 160 samples per frame + 32 (HiFi-GAN's padding tail).
fn expected_len(duration: f64) -> usize {
    let t = (duration * 25.6) as usize;
    160 * 4 * t + 32
}

#[test]
fn image_to_audio_is_deterministic_per_seed_and_the_seed_reaches_audioldm() {
    let Some(gpu) = common::test_gpu() else { return };
    let (mut p, _) = demo::pipeline(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let req = one(image("street", 160, 120));
    let mut events = vec![];
    let a = pollster::block_on(p.generate(&req, &quick(1), &mut |e| events.push(e), &|| false)).unwrap();
    assert_eq!(a.mode, Mode::ImageToAudio);
    assert_eq!(a.sample_rate, SAMPLE_RATE);
    assert_eq!(a.waveform.len(), expected_len(2.5));
    assert!(a.waveform.iter().all(|v| v.is_finite()));
    assert!(a.waveform.iter().any(|&v| v != 0.0));
    assert!((a.clap.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4, "the Cycle Mix CLAP is unit norm");
    // Slot 0 is the image, then the detections (the random detector finds some in this scene).
    assert!(a.sources[0][0].label.starts_with("image"));
    assert!(a.sources[0].len() > 1, "no detections: {:?}", a.sources);
    // Every stage reported, in order, with its timing.
    let stages: Vec<Stage> = a.timings.iter().map(|(s, _)| *s).collect();
    for s in [Stage::Detect, Stage::Clip, Stage::CycleMix, Stage::Diffusion, Stage::Decode] {
        assert!(stages.contains(&s), "{s} missing from {stages:?}");
        assert!(events.iter().any(|e| e.stage == s));
    }
    let steps: Vec<usize> = events.iter().filter(|e| e.stage == Stage::Diffusion).map(|e| e.done).collect();
    assert_eq!(steps, vec![0, 1, 2, 3]);
    assert!(a.peak_gpu_bytes > 0);

    // Same seed, same pipeline: the same samples.
    let b = pollster::block_on(p.generate(&req, &quick(1), &mut |_| {}, &|| false)).unwrap();
    assert_eq!(a.waveform, b.waveform);
    assert_eq!(a.clap, b.clap);
    // Another seed, another run.
    let c = pollster::block_on(p.generate(&req, &quick(2), &mut |_| {}, &|| false)).unwrap();
    assert_ne!(a.waveform, c.waveform);
}

#[test]
fn audioldm_seed_alone_changes_the_sound() {
    // The official `--seed` never reached AudioLDM (always 42): with one CLAP embedding, two
    // seeds must give two waveforms, and one seed the same one twice.
    let Some(gpu) = common::test_gpu() else { return };
    let (mut p, _) = demo::pipeline(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let mut clap = vec![0f32; demo::DEMO_DIM];
    clap[3] = 1.0;
    let mut s = quick(5);
    s.generate.steps = 2;
    let a = pollster::block_on(p.clap_to_audio(&clap, &s, &mut |_| {}, &|| false)).unwrap();
    let a2 = pollster::block_on(p.clap_to_audio(&clap, &s, &mut |_| {}, &|| false)).unwrap();
    s.seed = 6;
    let b = pollster::block_on(p.clap_to_audio(&clap, &s, &mut |_| {}, &|| false)).unwrap();
    assert_eq!(a, a2);
    assert_ne!(a, b);
    // A CLAP of the wrong width names both packs' sizes.
    let e = pollster::block_on(p.clap_to_audio(&[1.0; 3], &s, &mut |_| {}, &|| false)).unwrap_err().to_string();
    assert!(e.contains("3-d") && e.contains("64-d"), "{e}");
}

#[test]
fn user_sources_replace_detection_and_weights_change_the_mix() {
    let Some(gpu) = common::test_gpu() else { return };
    let (mut p, _) = demo::pipeline(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let base = image("street", 160, 120);
    // The detections, edited: drop all but the first, add a box of our own.
    let found = pollster::block_on(p.detect(&base.picture.to_rgb(), &Settings::official().detect)).unwrap();
    assert!(!found.is_empty());
    let mine = SourceBox::drawn([48.0, 79.0, 80.0, 92.0], "my car", 1.0);
    let mut img = base.clone();
    img.sources = Some(vec![found[0].clone(), mine.clone()]);
    let mut s = quick(3);
    s.generate.steps = 1;
    let a = pollster::block_on(p.generate(&one(img.clone()), &s, &mut |_| {}, &|| false)).unwrap();
    let labels: Vec<&str> = a.sources[0].iter().map(|u| u.label.as_str()).collect();
    assert_eq!(labels, vec!["image street", found[0].label.as_str(), "my car"]);
    assert!(!a.timings.iter().any(|(st, _)| *st == Stage::Detect), "given sources skip detection");
    // Weight 0 on our box changes the CLAP; weight 1 everywhere is the unweighted computation.
    let mut w0 = img.clone();
    w0.sources.as_mut().unwrap()[1].weight = 0.0;
    let b = pollster::block_on(p.generate(&one(w0), &s, &mut |_| {}, &|| false)).unwrap();
    assert_ne!(a.clap, b.clap);
    // No sources at all (as when nothing is detected): slot 0 alone, the image.
    let mut none = img.clone();
    none.sources = Some(vec![]);
    let c = pollster::block_on(p.generate(&one(none), &s, &mut |_| {}, &|| false)).unwrap();
    assert_eq!(c.sources[0].len(), 1);
    assert!(c.waveform.iter().all(|v| v.is_finite()));
    // A box outside the image, or a negative weight, is a clear error.
    let mut bad = img.clone();
    bad.sources = Some(vec![SourceBox { xyxy: [10.0, 10.0, 500.0, 20.0], ..mine.clone() }]);
    let e = pollster::block_on(p.generate(&one(bad), &s, &mut |_| {}, &|| false)).unwrap_err().to_string();
    assert!(e.contains("box 0") && e.contains("160"), "{e}");
    let mut bad = img;
    bad.sources = Some(vec![SourceBox { weight: -1.0, ..mine }]);
    let e = pollster::block_on(p.generate(&one(bad), &s, &mut |_| {}, &|| false)).unwrap_err().to_string();
    assert!(e.contains("weight"), "{e}");
}

#[test]
fn every_detected_source_of_a_jpeg_is_used() {
    // Upstream, crops of a .jpg input were saved under one file name and overwrote each other,
    // so only the last reached CLIP. Here each detection is its own source.
    let Some(gpu) = common::test_gpu() else { return };
    let (mut p, _) = demo::pipeline(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let jpg = {
        let img = demo::scene(160, 120);
        let mut bytes = vec![];
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
        enc.encode(&img.data, 160, 120, image::ExtendedColorType::Rgb8).unwrap();
        ssv2a::media::imageio::decode(&bytes, "street.jpg").unwrap()
    };
    let img = ImageSource::new("street.jpg", jpg);
    let found = pollster::block_on(p.detect(&img.picture.to_rgb(), &Settings::official().detect)).unwrap();
    let mut s = quick(4);
    s.generate.steps = 1;
    let out = pollster::block_on(p.generate(&one(img), &s, &mut |_| {}, &|| false)).unwrap();
    assert!(found.len() > 1, "need several detections for this test: {found:?}");
    assert_eq!(out.sources[0].len(), found.len() + 1);
    let boxes: Vec<[f32; 4]> = out.sources[0][1..].iter().map(|u| u.xyxy.unwrap()).collect();
    assert_eq!(boxes, found.iter().map(|f| f.xyxy).collect::<Vec<_>>());
}

#[test]
fn a_list_of_images_is_a_composition_and_text_sources_say_what_is_missing() {
    let Some(gpu) = common::test_gpu() else { return };
    let (mut p, _) = demo::pipeline(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let mut s = quick(8);
    s.generate.steps = 1;
    // Upstream, `infer_mm2a.py` passed lists where dicts were expected and crashed.
    let req = Request { images: vec![image("a", 64, 48), image("b", 80, 40)], ..Request::default() };
    let out = pollster::block_on(p.generate(&req, &s, &mut |_| {}, &|| false)).unwrap();
    assert_eq!(out.mode, Mode::Composition);
    assert_eq!(out.sources[0].len(), 2);
    assert!(!out.timings.iter().any(|(st, _)| *st == Stage::Detect), "compositions embed whole images");
    assert_eq!(out.waveform.len(), expected_len(2.5));

    let with_text = Request { images: vec![image("a", 64, 48)], texts: vec!["rain on a roof".into()], ..Request::default() };
    let e = pollster::block_on(p.generate(&with_text, &s, &mut |_| {}, &|| false)).unwrap_err().to_string();
    assert!(e.contains("text tower") && e.contains("prior"), "{e}");
    // Each audio source gets its own slot (upstream they all overwrote one).
    let codes = [vec![1.0f32; 4], vec![2.0f32; 4]];
    let rows: Vec<&[f32]> = codes.iter().map(|c| c.as_slice()).collect();
    let mix = ssv2a::models::ssv2a::MixInput::multimodal(&[], &rows, 8, 3, 4).unwrap();
    let f = mix.fixed_src.unwrap();
    assert_eq!(&f.data[4..8], &[1.0; 4]);
    assert_eq!(&f.data[8..12], &[2.0; 4]);
    // Nothing to do, or a video with other sources, is refused before any work.
    assert!(Request::default().mode().is_err());
}

#[test]
fn video_frames_go_through_cycle_mix_and_the_aggregator() {
    let Some(gpu) = common::test_gpu() else { return };
    let (mut p, _) = demo::pipeline(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let frames: Vec<RgbImage> = (0..3).map(|i| demo::scene(96 + 32 * i, 64)).map(|f| f.resize_bicubic(64, 64).unwrap()).collect();
    let req = Request { video: Some(VideoFrames { name: "clip.mp4".into(), frames }), ..Request::default() };
    let mut s = quick(9);
    s.generate.steps = 1;
    let out = pollster::block_on(p.generate(&req, &s, &mut |_| {}, &|| false)).unwrap();
    assert_eq!(out.mode, Mode::VideoToAudio);
    assert_eq!(out.sources.len(), 3, "one scene per frame");
    assert!(out.timings.iter().any(|(st, _)| *st == Stage::Aggregate));
    assert!((out.clap.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4);
    let bad = Request { video: Some(VideoFrames { name: "v".into(), frames: vec![] }), images: vec![image("a", 32, 32)], ..Request::default() };
    assert!(bad.mode().is_err());
}

#[test]
fn cancel_stops_the_run_and_release_frees_models() {
    let Some(gpu) = common::test_gpu() else { return };
    let (mut p, _) = demo::pipeline(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let req = one(image("street", 96, 64));
    let rounds = std::cell::Cell::new(0);
    let r = pollster::block_on(p.generate(
        &req,
        &quick(1),
        &mut |e| {
            if e.stage == Stage::CycleMix && e.done > 0 {
                rounds.set(e.done)
            }
        },
        &|| rounds.get() >= 1,
    ));
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert_eq!(rounds.get(), 1, "cancelled after the first round");
    assert!(p.is_loaded(ssv2a::pipeline::Model::Ssv2a));
    p.release(ssv2a::pipeline::Model::Ssv2a);
    assert!(!p.is_loaded(ssv2a::pipeline::Model::Ssv2a));
    // Bad settings fail before any work.
    let mut s = quick(1);
    s.generate.duration_s = 0.0;
    assert!(pollster::block_on(p.generate(&req, &s, &mut |_| {}, &|| false)).is_err());
    // release_after_use leaves nothing loaded.
    let mut s = quick(1);
    s.generate.steps = 1;
    s.release_after_use = true;
    pollster::block_on(p.generate(&req, &s, &mut |_| {}, &|| false)).unwrap();
    for m in ssv2a::pipeline::Model::ALL {
        assert!(!p.is_loaded(m), "{m} still loaded");
    }
}

/// The demo's unconditional embedding comes from its random CLAP text tower through the
/// converter's function: the in-memory pack computes it when AudioLDM first runs, the written
/// pack (`demo --write-packs`) stores the same vector, and the two pipelines sound the same.
#[test]
fn demo_uncond_comes_from_its_text_tower_and_written_packs_store_it() {
    use ssv2a::models::{audioldm, clap};
    let Some(gpu) = common::test_gpu() else { return };
    let dir = std::env::temp_dir().join(format!("ssv2a-demo-uncond-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    demo::write_packs(&gpu, demo::WEIGHTS_SEED, &dir).unwrap();
    let file = ssv2a::Weights::from_file(&gpu, dir.join(ssv2a::pipeline::Model::AudioLdm.pack_file())).unwrap();
    let stored = file.host(clap::UNCOND_TENSOR, &[demo::DEMO_DIM]).unwrap().data;
    assert!((stored.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5, "unit norm");
    // In memory, in the pipeline's order (UNet + decoder, then the text tower).
    let packs = demo::packs(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let w = &packs[&ssv2a::pipeline::Model::AudioLdm];
    assert!(!w.contains(clap::UNCOND_TENSOR), "the demo pack must not carry a placeholder");
    audioldm::AudioLdm::load(w).unwrap();
    let computed = pollster::block_on(clap::uncond_from_pack(w)).unwrap().unwrap();
    assert_eq!(computed, stored);
    // The same sound from the in-memory demo and from the written packs (AudioLDM alone: the
    // other written packs are not this test's subject).
    let mut clap_emb = vec![0f32; demo::DEMO_DIM];
    clap_emb[5] = 1.0;
    let mut s = quick(4);
    s.generate.steps = 2;
    let (mut mem, _) = demo::pipeline(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let a = pollster::block_on(mem.clap_to_audio(&clap_emb, &s, &mut |_| {}, &|| false)).unwrap();
    let mut files = ssv2a::pipeline::Pipeline::new(&gpu);
    files.use_models_dir(&dir);
    let b = pollster::block_on(files.clap_to_audio(&clap_emb, &s, &mut |_| {}, &|| false)).unwrap();
    assert!(a == b, "the in-memory demo and its written AudioLDM pack sound different");
    // --uncond still overrides the pack's.
    let mut other = stored.clone();
    other.reverse();
    files.set_uncond(other);
    let c = pollster::block_on(files.clap_to_audio(&clap_emb, &s, &mut |_| {}, &|| false)).unwrap();
    assert!(a != c, "set_uncond did not change the sound");
    std::fs::remove_dir_all(&dir).ok();
}

/// AudioLDM's own text to audio on the demo packs (in memory): only AudioLDM and its CLAP text
/// tower run; the conditioning is the tower's L2-normalised embedding of the tokenizer's ids; the
/// rest is exactly `clap_to_audio` (same sampler, seed, guidance); a long prompt is truncated at
/// 512 tokens and says so; empty prompts and prompts with other sources are refused.
#[test]
fn text_to_audio_conditions_audioldm_on_the_prompt_embedding() {
    use ssv2a::models::clap::{self, TextTokens};
    use ssv2a::pipeline::{Model, Pipeline, PromptTokens};
    use ssv2a::tokenize::RobertaTokenizer;
    let Some(gpu) = common::test_gpu() else { return };
    let (mut p, packs) = demo::pipeline(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let mut s = quick(5);
    s.generate.steps = 2;
    let prompt = |t: &str| Request { prompt: Some(t.into()), ..Request::default() };
    let req = prompt("rain on a tin roof");
    assert_eq!(Pipeline::needs(&req).unwrap(), vec![Model::AudioLdm]);
    let mut stages = vec![];
    let out = pollster::block_on(p.generate(&req, &s, &mut |e| stages.push(e.stage), &|| false)).unwrap();
    assert_eq!(out.mode, Mode::TextToAudio);
    assert_eq!(out.waveform.len(), expected_len(2.5));
    assert!(stages.contains(&Stage::TextEncoder) && stages.contains(&Stage::Diffusion), "{stages:?}");
    assert!(!stages.iter().any(|st| matches!(st, Stage::Detect | Stage::Clip | Stage::CycleMix)), "{stages:?}");
    assert!(out.timings.iter().any(|(st, _)| *st == Stage::TextEncoder));
    assert!(!p.is_loaded(Model::Clip) && !p.is_loaded(Model::Ssv2a) && !p.is_loaded(Model::Detector));

    // The conditioning, by hand: the demo tokenizer (the fixture vocabulary, as large as the
    // demo tower's table) → the tower → L2 normalisation.
    let tok = RobertaTokenizer::from_files_bytes(demo::DEMO_TOKENIZER_VOCAB_JSON.as_bytes(), demo::DEMO_TOKENIZER_MERGES_TXT.as_bytes()).unwrap();
    assert_eq!(tok.vocab_size(), demo::DEMO_TOKENIZER_VOCAB);
    assert_eq!(demo::demo_text_config().vocab_size, demo::DEMO_TOKENIZER_VOCAB);
    let enc = tok.encode_padded("rain on a tin roof", 512).unwrap();
    let used = enc.attention_mask.iter().filter(|&&m| m == 1).count();
    assert!(used > 3, "the prompt has text tokens");
    assert_eq!(out.prompt, Some(PromptTokens { tokens: used - 2, max_length: 512, truncated: false }));
    // A fresh random pack, loaded in the pipeline's order (the demo's random tensors are drawn
    // on first request): AudioLDM, then the text tower.
    let fresh = demo::packs(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    ssv2a::models::audioldm::AudioLdm::load(&fresh[&Model::AudioLdm]).unwrap();
    let tower = clap::load_text(&fresh[&Model::AudioLdm]).unwrap();
    let tokens = TextTokens { batch: 1, len: 512, ids: enc.ids.clone(), mask: enc.attention_mask.iter().map(|&m| m as f32).collect() };
    let want = pollster::block_on(tower.embed(&tokens).unwrap().to_vec()).unwrap();
    assert_eq!(out.clap, want);
    assert!((want.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5, "unit norm");
    let uncond = pollster::block_on(clap::uncond_embedding(&tower)).unwrap();
    assert!(out.clap != uncond, "the prompt's embedding is not the empty text's");
    // AudioLDM on that embedding with the same settings: the same samples.
    let direct = pollster::block_on(p.clap_to_audio(&out.clap, &s, &mut |_| {}, &|| false)).unwrap();
    assert!(direct == out.waveform, "text to audio is not AudioLDM on the prompt's embedding");

    // Same seed: the same sound; another seed or another prompt: another sound.
    let again = pollster::block_on(p.generate(&req, &s, &mut |_| {}, &|| false)).unwrap();
    assert!(again.waveform == out.waveform);
    let other_seed = pollster::block_on(p.generate(&req, &quick(6), &mut |_| {}, &|| false)).unwrap();
    assert!(other_seed.waveform != out.waveform);
    let other = pollster::block_on(p.generate(&prompt("a dog barks twice"), &s, &mut |_| {}, &|| false)).unwrap();
    assert!(other.clap != out.clap && other.waveform != out.waveform);

    // 100,000 characters: cut at 512 tokens (510 text tokens), reported.
    let long: String = "rain on a tin roof, ".repeat(5000);
    assert_eq!(long.len(), 100_000);
    s.generate.duration_s = 1.0;
    let out = pollster::block_on(p.generate(&prompt(&long), &s, &mut |_| {}, &|| false)).unwrap();
    assert_eq!(out.prompt, Some(PromptTokens { tokens: 510, max_length: 512, truncated: true }));
    assert_eq!(out.waveform.len(), expected_len(1.0));

    // Refused before any work: empty, whitespace only, with other sources.
    for bad in ["", " \t\n "] {
        let e = pollster::block_on(p.generate(&prompt(bad), &s, &mut |_| {}, &|| false)).unwrap_err().to_string();
        assert!(e.contains("prompt is empty"), "{e}");
    }
    let mixed = Request { images: vec![image("a", 64, 48)], prompt: Some("rain".into()), ..Request::default() };
    let e = pollster::block_on(p.generate(&mixed, &s, &mut |_| {}, &|| false)).unwrap_err().to_string();
    assert!(e.contains("cannot be combined"), "{e}");
    // A pack without tokenizer files names the fix (and image modes do not need them).
    let mut bare = ssv2a::pipeline::Pipeline::new(&gpu);
    let w = &packs[&Model::AudioLdm];
    let mut meta = w.metadata().clone();
    meta.remove(clap::TOKENIZER_VOCAB_META);
    let kind = meta.get("kind").cloned().unwrap();
    let config = meta.get("config").cloned().unwrap();
    let extra: std::collections::BTreeMap<String, String> =
        meta.into_iter().filter(|(k, _)| !["kind", "config", "format", "version", "dtype"].contains(&k.as_str())).collect();
    let stripped = ssv2a::Weights::random_with(&gpu, &kind, &config, demo::WEIGHTS_SEED + 4, true, Default::default(), extra, false);
    bare.set_pack(Model::AudioLdm, ssv2a::pipeline::PackSource::Weights(stripped));
    let e = pollster::block_on(bare.generate(&req, &s, &mut |_| {}, &|| false)).unwrap_err().to_string();
    assert!(e.contains("no text tokenizer") && e.contains("ssv2a fetch audioldm-s-full-v2") && e.contains("--tokenizer-dir"), "{e}");
}

/// A test tone with a little noise: `secs` seconds at `rate`.
fn tone(name: &str, hz: f32, secs: f32, rate: u32) -> AudioClip {
    let n = (secs * rate as f32) as usize;
    let mut r = 12345u32;
    let samples = (0..n)
        .map(|i| {
            r = r.wrapping_mul(1664525).wrapping_add(1013904223);
            (std::f32::consts::TAU * hz * i as f32 / rate as f32).sin() * 0.3 + (r >> 8) as f32 / (1u32 << 24) as f32 * 0.05 + 0.02
        })
        .collect();
    AudioClip { name: name.into(), samples, sample_rate: rate }
}

/// Audio sources (issue 15 item 5): CLAP's audio tower embeds each clip into its own slot, mixed
/// with images; every audio counts (upstream only the last one did), bad clips are refused.
#[test]
fn audio_sources_each_count_and_mix_with_images() {
    let Some(gpu) = common::test_gpu() else { return };
    let (mut p, _) = demo::pipeline(&gpu, demo::WEIGHTS_SEED, false).unwrap();
    let mut s = quick(5);
    s.generate.steps = 1;
    s.generate.candidates = 1;
    let (a, b, c) = (tone("a.wav", 440.0, 1.5, 44100), tone("b.flac", 97.0, 3.0, 22050), tone("c.mp3", 2500.0, 0.7, 8000));
    let req = Request { images: vec![image("a", 64, 48)], audios: vec![a.clone(), b.clone()], ..Request::default() };
    let mut events = vec![];
    let one = pollster::block_on(p.generate(&req, &s, &mut |e| events.push(e), &|| false)).unwrap();
    assert_eq!(one.mode, Mode::Composition);
    let labels: Vec<&str> = one.sources[0].iter().map(|u| u.label.as_str()).collect();
    assert_eq!(labels, ["image a", "audio a.wav", "audio b.flac"]);
    assert!(one.timings.iter().any(|(st, _)| *st == Stage::AudioEncoder) && events.iter().any(|e| e.stage == Stage::AudioEncoder));
    assert_eq!(one.waveform.len(), expected_len(2.5));
    // Changing the *first* audio changes the mix: upstream every audio wrote the same slot, so
    // only the last one counted.
    let req2 = Request { audios: vec![c.clone(), b.clone()], ..req.clone() };
    let two = pollster::block_on(p.generate(&req2, &s, &mut |_| {}, &|| false)).unwrap();
    let d: f32 = one.clap.iter().zip(&two.clap).map(|(x, y)| (x - y).abs()).sum();
    assert!(d > 1e-3, "the first audio source had no effect (difference {d})");
    // Same request, same result.
    let again = pollster::block_on(p.generate(&req, &s, &mut |_| {}, &|| false)).unwrap();
    assert_eq!(one.clap, again.clap);
    // Audio alone needs no CLIP.
    let alone = Request { audios: vec![a.clone()], ..Request::default() };
    assert!(!ssv2a::pipeline::Pipeline::needs(&alone).unwrap().contains(&ssv2a::pipeline::Model::Clip));
    let out = pollster::block_on(p.generate(&alone, &s, &mut |_| {}, &|| false)).unwrap();
    assert_eq!(out.sources[0].len(), 1);
    // Bad clips: one clear error naming the clip.
    for (bad, want) in [
        (AudioClip { name: "empty.wav".into(), samples: vec![], sample_rate: 16000 }, "0 samples"),
        (AudioClip { name: "slow.wav".into(), samples: vec![0.1; 10], sample_rate: 1 }, "sample rate 1 Hz"),
        (AudioClip { name: "fast.wav".into(), samples: vec![0.1; 10], sample_rate: 1_000_000_000 }, "sample rate"),
        (AudioClip { name: "nan.wav".into(), samples: vec![f32::NAN; 10], sample_rate: 16000 }, "NaN"),
    ] {
        let name = bad.name.clone();
        let e = pollster::block_on(p.generate(&Request { audios: vec![bad], ..Request::default() }, &s, &mut |_| {}, &|| false)).unwrap_err().to_string();
        assert!(e.contains(&name) && e.contains(want), "{e}");
    }
}

/// Candidate ranking (issue 15 item 6): every candidate scored by CLAP's audio tower against
/// the target, the best kept; the kept waveform's own CLAP embedding reproduces its score.
#[test]
fn candidates_are_ranked_by_clap_and_every_score_is_reported() {
    use ssv2a::pipeline::Rank;
    let Some(gpu) = common::test_gpu() else { return };
    // Pack files (in-memory random packs draw each load anew; files give the test's own tower
    // below the pipeline's weights).
    let dir = std::env::temp_dir().join(format!("ssv2a-rank-{}", std::process::id()));
    demo::write_packs(&gpu, demo::WEIGHTS_SEED, &dir).unwrap();
    let mut p = ssv2a::pipeline::Pipeline::new(&gpu);
    p.use_models_dir(&dir);
    let mut s = quick(9);
    s.generate.steps = 2;
    s.generate.candidates = 3;
    let req = one(image("street", 160, 120));
    let out = pollster::block_on(p.generate(&req, &s, &mut |_| {}, &|| false)).unwrap();
    assert_eq!(out.candidates.len(), 3);
    let best = out.candidates.iter().enumerate().fold(0, |b, (i, &v)| if v > out.candidates[b] { i } else { b });
    assert_eq!(out.chosen, best, "{:?}", out.candidates);
    assert!(out.candidates.iter().all(|v| v.is_finite() && v.abs() <= 1.0 + 1e-5));
    assert!(out.timings.iter().any(|(st, _)| *st == Stage::Rank));
    // Recompute the kept candidate's score independently: 16 kHz → the tower's rate (torchaudio), CLAP audio
    // tower, cosine with the conditioning CLAP.
    let pack = ssv2a::Weights::from_file(&gpu, dir.join(ssv2a::pipeline::Model::AudioLdm.pack_file())).unwrap();
    let tower = ssv2a::models::clap::load_audio(&pack).unwrap();
    let w48 = ssv2a::media::resample::torchaudio_resample(&out.waveform, SAMPLE_RATE, tower.config.sample_rate as u32).unwrap();
    let e = pollster::block_on(tower.embed_waves(&[&w48], &[0]).unwrap().to_vec()).unwrap();
    let cos = e.iter().zip(&out.clap).map(|(a, b)| a * b).sum::<f32>();
    assert!((cos - out.candidates[out.chosen]).abs() < 1e-4, "{cos} vs {:?}", out.candidates);
    // `none` keeps candidate 0 and scores nothing; `official` ranks against "".
    s.rank = Rank::None;
    let none = pollster::block_on(p.generate(&req, &s, &mut |_| {}, &|| false)).unwrap();
    assert!(none.candidates.is_empty() && none.chosen == 0);
    if out.chosen == 0 {
        assert_eq!(none.waveform, out.waveform);
    } else {
        assert_ne!(none.waveform, out.waveform);
    }
    s.rank = Rank::Official;
    let off = pollster::block_on(p.generate(&req, &s, &mut |_| {}, &|| false)).unwrap();
    assert_eq!(off.candidates.len(), 3);
    assert_ne!(off.candidates, out.candidates, "another target, other scores");
    let _ = std::fs::remove_dir_all(&dir);
}
