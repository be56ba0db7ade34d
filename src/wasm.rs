//! The JavaScript API (wasm32 only): thin `#[wasm_bindgen]` wrappers over the library, no logic
//! beyond translation. Errors become `JsError` with the library's message; a panic would kill
//! the wasm instance, so nothing here unwraps user input.

use wasm_bindgen::prelude::*;

use crate::pipeline::{ImageSource, Request};
use crate::{Gpu, Tensor};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A GPU session: the WebGPU device and everything loaded on it.
#[wasm_bindgen]
pub struct Session {
    gpu: Gpu,
}

#[wasm_bindgen]
impl Session {
    /// Request a WebGPU adapter and device.
    pub async fn create() -> Result<Session, JsError> {
        Ok(Session { gpu: Gpu::new().await.map_err(js)? })
    }

    /// Adapter, backend, limits and features, as text.
    pub fn info(&self) -> String {
        self.gpu.info().to_string()
    }

    /// Run a matmul with fp16 weights (m×k · (n×k)ᵀ) on the GPU, check 16 outputs against the
    /// CPU, and return `[seconds, max_abs_error]` (the page's self-test and speed check).
    pub async fn matmul_check(&self, m: usize, n: usize, k: usize, now: js_sys::Function) -> Result<Vec<f64>, JsError> {
        if m * n * k == 0 || m * k > 1 << 26 || n * k > 1 << 26 {
            return Err(JsError::new("matmul_check: sizes must be positive and at most 2^26 elements per operand"));
        }
        let mut rng = crate::rng::Rng::new(1);
        let a = rng.uniforms(m * k, -1.0, 1.0);
        let w = rng.uniforms(n * k, -1.0, 1.0);
        let x = Tensor::from_slice(&self.gpu, &a, [m, k]).map_err(js)?;
        let wt = crate::Weight::from_f32(&self.gpu, &w, [n, k], crate::WeightDtype::F16).map_err(js)?;
        let clock = |f: &js_sys::Function| f.call0(&JsValue::NULL).ok().and_then(|v| v.as_f64()).unwrap_or(0.0) / 1000.0;
        self.gpu.sync().await.map_err(js)?;
        let t0 = clock(&now);
        let y = x.linear(&wt, None, crate::ops::Act::None).map_err(js)?;
        let out = y.to_vec().await.map_err(js)?;
        let dt = clock(&now) - t0;
        let mut max_err = 0f64;
        for s in 0..16 {
            let (i, j) = ((s * 7919) % m, (s * 104_729) % n);
            let want: f64 = (0..k).map(|t| a[i * k + t] as f64 * half::f16::from_f32(w[j * k + t]).to_f64()).sum();
            max_err = max_err.max((out[i * n + j] as f64 - want).abs());
        }
        Ok(vec![dt, max_err])
    }
}

/// The generation pipeline for JavaScript: packs given as bytes (or the demo's random ones),
/// images given as canvas RGBA pixels, audio returned as 16 kHz float samples.
#[wasm_bindgen]
pub struct Generator {
    pipe: crate::pipeline::Pipeline,
}

fn model_named(name: &str) -> Result<crate::pipeline::Model, JsError> {
    crate::pipeline::Model::named(name).map_err(js)
}

#[wasm_bindgen]
impl Generator {
    /// An empty pipeline on the session's device: add packs with `set_pack`.
    pub fn new(session: &Session) -> Generator {
        Generator { pipe: crate::pipeline::Pipeline::new(&session.gpu) }
    }

    /// A pipeline on the demo's seeded random weights (reduced sizes; the sound is not meaningful).
    pub fn demo(session: &Session) -> Result<Generator, JsError> {
        let (pipe, _) = crate::pipeline::demo::pipeline(&session.gpu, crate::pipeline::demo::WEIGHTS_SEED, false).map_err(js)?;
        Ok(Generator { pipe })
    }

    /// Use a converted pack (the bytes of a `.safetensors` file) for `model` (detector, clip,
    /// ssv2a, audioldm, aggregator). The kind and format version are checked now.
    pub fn set_pack(&mut self, model: &str, bytes: Vec<u8>, name: &str) -> Result<(), JsError> {
        let m = model_named(model)?;
        let w = crate::Weights::from_bytes(&self.pipe.gpu().clone(), bytes, name).map_err(js)?;
        w.expect_kind(m.kind()).map_err(js)?;
        self.pipe.set_pack(m, crate::pipeline::PackSource::Weights(w));
        Ok(())
    }

    /// The unconditional embedding for guidance (the CLAP text embedding of "").
    pub fn set_uncond(&mut self, uncond: Vec<f32>) {
        self.pipe.set_uncond(uncond);
    }

    /// Free a model's GPU memory (it is loaded again when next needed).
    pub fn release(&mut self, model: &str) -> Result<(), JsError> {
        self.pipe.release(model_named(model)?);
        Ok(())
    }

    /// Image to audio. `rgba`: width × height × 4 bytes (canvas `ImageData`, not premultiplied);
    /// `options`: JSON, the settings schema of [`crate::pipeline::settings`] (`preset`, `seed`,
    /// `steps`, `sampler`, `guidance`, …; default the fast preset);
    /// `progress(stage, done, total)` is called as the run goes; `cancelled()` is polled between
    /// rounds and steps and stops the run with an error "cancelled" when it returns true.
    /// Returns the 16 kHz waveform.
    pub async fn generate_image(
        &mut self,
        rgba: Vec<u8>,
        width: usize,
        height: usize,
        options: String,
        progress: js_sys::Function,
        cancelled: js_sys::Function,
    ) -> Result<Vec<f32>, JsError> {
        use crate::pipeline::Picture;
        let pixels = width.saturating_mul(height);
        if width == 0 || height == 0 || pixels.checked_mul(4) != Some(rgba.len()) {
            return Err(JsError::new(&format!("image: {} bytes for {width}×{height} RGBA", rgba.len())));
        }
        if pixels > crate::media::image::MAX_PIXELS {
            return Err(JsError::new(&format!("image: {width}×{height} is larger than {} pixels", crate::media::image::MAX_PIXELS)));
        }
        let opaque = rgba.chunks_exact(4).all(|p| p[3] == 255);
        let img = crate::media::image::RgbaImage { width, height, data: rgba };
        let picture = if opaque { Picture::Rgb(crate::media::image::RgbImage::from_rgba_drop_alpha(&img)) } else { Picture::Rgba(img) };
        let req = Request { images: vec![ImageSource::new("image", picture)], ..Request::default() };
        Ok(self.run(&req, &options, &progress, &cancelled).await?.waveform)
    }

    /// Image to audio from an image file's bytes (PNG, JPEG or WebP), decoded here exactly as
    /// the native build decodes files, i.e. as PIL does (JPEG with libjpeg-turbo's arithmetic;
    /// RGBA, palette and CMYK kept for CLIP's resize): the official code's pixels, where a
    /// browser's own decode is colour-managed and its canvas premultiplies alpha. Same
    /// `options`, `progress` and `cancelled` as [`Generator::generate_image`]. Errors name the
    /// problem ("truncated JPEG", "not a PNG, JPEG or WebP image", ...).
    pub async fn generate_file(
        &mut self,
        bytes: Vec<u8>,
        options: String,
        progress: js_sys::Function,
        cancelled: js_sys::Function,
    ) -> Result<Vec<f32>, JsError> {
        let picture = crate::media::imageio::decode(&bytes, "image").map_err(js)?;
        let req = Request { images: vec![ImageSource::new("image", picture)], ..Request::default() };
        Ok(self.run(&req, &options, &progress, &cancelled).await?.waveform)
    }

    /// AudioLDM's own text to audio (no SSV2A sound-source path, to compare): `text`'s CLAP
    /// embedding conditions AudioLDM. Needs only the AudioLDM pack, with its tokenizer (the
    /// demo's has one). A prompt longer than 512 tokens is cut there, as AudioLDM cuts it.
    /// Same `options`, `progress` (stage "CLAP text" first) and `cancelled` as
    /// [`Generator::generate_image`]. Returns `{ waveform, tokens, truncated }`: the 16 kHz
    /// samples, the prompt's text tokens used and whether it was cut.
    pub async fn generate_prompt(
        &mut self,
        text: String,
        options: String,
        progress: js_sys::Function,
        cancelled: js_sys::Function,
    ) -> Result<js_sys::Object, JsError> {
        let req = Request { prompt: Some(text), ..Request::default() };
        let out = self.run(&req, &options, &progress, &cancelled).await?;
        let (tokens, truncated) = out.prompt.as_ref().map(|p| (p.tokens, p.truncated)).unwrap_or((0, false));
        let o = js_sys::Object::new();
        let set = |k: &str, v: JsValue| {
            js_sys::Reflect::set(&o, &JsValue::from_str(k), &v).map(|_| ()).map_err(|_| JsError::new("generate_prompt: building the result"))
        };
        set("waveform", js_sys::Float32Array::from(&out.waveform[..]).into())?;
        set("tokens", JsValue::from(tokens as u32))?;
        set("truncated", JsValue::from_bool(truncated))?;
        Ok(o)
    }

    /// Sources to audio: any number of image files and audio sources, mixed (a composition; one
    /// image alone is image to audio, with detection). `images`: an array of image file bytes
    /// (`Uint8Array`: PNG, JPEG or WebP). `audios`: an array whose entries are audio file bytes
    /// (`Uint8Array`: WAV, FLAC, MP3 or Ogg Vorbis, the first 30 s) or PCM objects
    /// `{ samples: Float32Array, sampleRate }` (channel 0 of a decoded clip, e.g. from
    /// [`decode_audio`] or Web Audio). Same `options`, `progress` and `cancelled` as
    /// [`Generator::generate_image`]. Returns `{ waveform, candidates, chosen }`: the 16 kHz
    /// samples, every AudioLDM candidate's CLAP ranking score (empty with one candidate or
    /// `rank: "none"`) and the index of the one kept.
    pub async fn generate_sources(
        &mut self,
        images: js_sys::Array,
        audios: js_sys::Array,
        options: String,
        progress: js_sys::Function,
        cancelled: js_sys::Function,
    ) -> Result<js_sys::Object, JsError> {
        use wasm_bindgen::JsCast;
        let mut req = Request::default();
        for (i, v) in images.iter().enumerate() {
            let name = format!("image {}", i + 1);
            let bytes = v.dyn_into::<js_sys::Uint8Array>().map_err(|_| JsError::new(&format!("{name}: expected a Uint8Array of file bytes")))?.to_vec();
            req.images.push(ImageSource::new(name.clone(), crate::media::imageio::decode(&bytes, &name).map_err(js)?));
        }
        for (i, v) in audios.iter().enumerate() {
            let name = format!("audio {}", i + 1);
            let clip = if let Some(bytes) = v.dyn_ref::<js_sys::Uint8Array>() {
                let d = crate::media::audio::decode(&bytes.to_vec(), &name, &crate::media::audio::AudioLimits::default()).map_err(js)?;
                crate::pipeline::AudioClip { name, samples: d.samples, sample_rate: d.sample_rate }
            } else {
                let get = |k: &str| js_sys::Reflect::get(&v, &JsValue::from_str(k)).ok().filter(|x| !x.is_undefined());
                let samples = get("samples").and_then(|x| x.dyn_into::<js_sys::Float32Array>().ok());
                let rate = get("sampleRate").and_then(|x| x.as_f64());
                match (samples, rate) {
                    (Some(s), Some(r)) if r.fract() == 0.0 && r >= 1.0 && r <= u32::MAX as f64 => {
                        crate::pipeline::AudioClip { name, samples: s.to_vec(), sample_rate: r as u32 }
                    }
                    _ => return Err(JsError::new(&format!("{name}: expected file bytes (Uint8Array) or {{ samples: Float32Array, sampleRate: integer }}"))),
                }
            };
            req.audios.push(clip);
        }
        let out = self.run(&req, &options, &progress, &cancelled).await?;
        let o = js_sys::Object::new();
        let set = |k: &str, v: JsValue| {
            js_sys::Reflect::set(&o, &JsValue::from_str(k), &v).map(|_| ()).map_err(|_| JsError::new("generate_sources: building the result"))
        };
        set("waveform", js_sys::Float32Array::from(&out.waveform[..]).into())?;
        set("candidates", js_sys::Float32Array::from(&out.candidates[..]).into())?;
        set("chosen", JsValue::from(out.chosen as u32))?;
        Ok(o)
    }
}

impl Generator {
    async fn run(
        &mut self,
        req: &Request,
        options: &str,
        progress: &js_sys::Function,
        cancelled: &js_sys::Function,
    ) -> Result<crate::pipeline::Output, JsError> {
        use crate::pipeline::{Overrides, Preset};
        let settings = Overrides::from_json(options).and_then(|o| o.settings(Preset::Fast)).map_err(js)?;
        let mut on = |e: crate::pipeline::Event| {
            let _ = progress.call3(&JsValue::NULL, &JsValue::from_str(&e.stage.to_string()), &JsValue::from(e.done as u32), &JsValue::from(e.total as u32));
        };
        let stop = || cancelled.call0(&JsValue::NULL).ok().and_then(|v| v.as_bool()).unwrap_or(false);
        self.pipe.generate(req, &settings, &mut on, &stop).await.map_err(js)
    }
}

/// Decode an image file (PNG, JPEG or WebP) as [`Generator::generate_file`] does, into RGB
/// bytes (`convert("RGB")`: alpha dropped, CMYK converted): `{ width, height, rgb }`. For
/// checking or previewing what the pipeline sees.
#[wasm_bindgen]
pub fn decode_image(bytes: Vec<u8>) -> Result<js_sys::Object, JsError> {
    let rgb = crate::media::imageio::decode(&bytes, "image").map_err(js)?.to_rgb();
    let o = js_sys::Object::new();
    let set =
        |k: &str, v: JsValue| js_sys::Reflect::set(&o, &JsValue::from_str(k), &v).map(|_| ()).map_err(|_| JsError::new("decode_image: building the result"));
    set("width", JsValue::from(rgb.width as u32))?;
    set("height", JsValue::from(rgb.height as u32))?;
    set("rgb", js_sys::Uint8Array::from(&rgb.data[..]).into())?;
    Ok(o)
}

/// Decode an audio source file (WAV, FLAC, MP3 or Ogg Vorbis, sniffed from the bytes; channel 0;
/// the first 30 s) as the native CLI does: `{ samples: Float32Array, sampleRate, channels,
/// container, codec, capped, warnings: string[] }`. `name` appears in errors and warnings.
#[wasm_bindgen]
pub fn decode_audio(bytes: Vec<u8>, name: &str) -> Result<js_sys::Object, JsError> {
    let d = crate::media::audio::decode(&bytes, name, &crate::media::audio::AudioLimits::default()).map_err(js)?;
    let o = js_sys::Object::new();
    let set =
        |k: &str, v: JsValue| js_sys::Reflect::set(&o, &JsValue::from_str(k), &v).map(|_| ()).map_err(|_| JsError::new("decode_audio: building the result"));
    set("samples", js_sys::Float32Array::from(&d.samples[..]).into())?;
    set("sampleRate", JsValue::from(d.sample_rate))?;
    set("channels", JsValue::from(d.channels))?;
    set("container", JsValue::from_str(d.container))?;
    set("codec", JsValue::from_str(d.codec))?;
    set("capped", JsValue::from(d.capped))?;
    let w = js_sys::Array::new();
    for m in &d.warnings {
        w.push(&JsValue::from_str(m));
    }
    set("warnings", w.into())?;
    Ok(o)
}

/// 16-bit PCM WAV bytes of float samples (for an `<audio>` element or a download).
#[wasm_bindgen]
pub fn encode_wav(samples: Vec<f32>, sample_rate: u32) -> Result<Vec<u8>, JsError> {
    crate::media::audio::encode_wav(&samples, sample_rate, crate::media::audio::WavFormat::Pcm16).map_err(js)
}
