//! What to turn into sound: [`Request`] (images with optional editable [`SourceBox`]es, texts,
//! audio clips, a video) and how it is read ([`Mode`]), with the checks that need no model.

use crate::media::image::{Picture, RgbImage};
use crate::models::detect;
use crate::{Error, Result};

use super::UsedSource;

/// One sound source of an image: a box, what it is, and how much it counts.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceBox {
    /// x0, y0, x1, y1 in image pixels.
    pub xyxy: [f32; 4],
    /// Class name for detections; anything for user boxes.
    pub label: String,
    /// Detector confidence (None for user boxes).
    pub score: Option<f32>,
    /// Weight in the remixer (1 = the official computation; 0 silences the source). See
    /// [`MixInput::weights`].
    pub weight: f32,
    /// The number `ssv2a detect` (and [`super::Pipeline::detect`]) gives this detection: 0-based,
    /// best first — the one `--drop`/`--weight` and the web page use. None for drawn boxes.
    pub detection: Option<usize>,
}

impl SourceBox {
    /// A detection as an editable source (weight 1).
    /// Detection number `index` as an editable source (weight 1).
    pub fn detected(d: &detect::Detection, index: usize) -> SourceBox {
        SourceBox { xyxy: d.xyxy, label: d.name.clone(), score: Some(d.score), weight: 1.0, detection: Some(index) }
    }

    /// A box the user drew.
    pub fn drawn(xyxy: [f32; 4], label: impl Into<String>, weight: f32) -> SourceBox {
        SourceBox { xyxy, label: label.into(), score: None, weight, detection: None }
    }

    /// How messages name it: its detection number, or its place among the given boxes.
    fn name(&self, i: usize) -> String {
        match self.detection {
            Some(k) => format!("source {k} ({})", self.label),
            None => format!("box {i} ({})", self.label),
        }
    }

    pub(super) fn used(&self) -> UsedSource {
        UsedSource { label: self.label.clone(), xyxy: Some(self.xyxy), score: self.score, weight: self.weight, detection: self.detection }
    }
}

/// An image input.
#[derive(Clone, Debug)]
pub struct ImageSource {
    /// For messages and summaries (e.g. the file name).
    pub name: String,
    pub picture: Picture,
    /// `None`: detect (the official behaviour). `Some`: exactly these sources, e.g. the
    /// detections of [`Pipeline::detect`] with some dropped, some added, weights changed.
    pub sources: Option<Vec<SourceBox>>,
    /// Weight of the whole image (composition: its slot; image to audio: slot 0).
    pub weight: f32,
}

impl ImageSource {
    pub fn new(name: impl Into<String>, picture: Picture) -> ImageSource {
        ImageSource { name: name.into(), picture, sources: None, weight: 1.0 }
    }
}

/// An audio input (mono samples).
#[derive(Clone, Debug)]
pub struct AudioClip {
    pub name: String,
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// A video input as its frames (the official 64 evenly spaced frames, 512×512; see
/// [`crate::media::video::extract_frames`] natively).
#[derive(Clone, Debug)]
pub struct VideoFrames {
    pub name: String,
    pub frames: Vec<RgbImage>,
}

/// What to turn into sound.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub images: Vec<ImageSource>,
    /// Text sound sources of a composition (CLIP text tower + DALLE-2 prior).
    pub texts: Vec<String>,
    pub audios: Vec<AudioClip>,
    pub video: Option<VideoFrames>,
    /// AudioLDM's own text-to-audio: the prompt's CLAP text embedding conditions AudioLDM
    /// directly, without SSV2A's sound-source path (no other source may be given).
    pub prompt: Option<String>,
}

/// How a request is interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    ImageToAudio,
    Composition,
    VideoToAudio,
    /// AudioLDM alone on CLAP's text embedding of [`Request::prompt`].
    TextToAudio,
}

impl Request {
    pub fn mode(&self) -> Result<Mode> {
        const OP: &str = "request";
        if self.prompt.is_some() {
            if !self.images.is_empty() || !self.texts.is_empty() || !self.audios.is_empty() || self.video.is_some() {
                return Err(Error::arg(
                    OP,
                    "a prompt (AudioLDM's own text-to-audio) cannot be combined with images, text sources, audio or video; run them separately to compare",
                ));
            }
            return Ok(Mode::TextToAudio);
        }
        if self.video.is_some() {
            if !self.images.is_empty() || !self.texts.is_empty() || !self.audios.is_empty() {
                return Err(Error::arg(OP, "a video cannot be combined with other sources"));
            }
            return Ok(Mode::VideoToAudio);
        }
        match (self.images.len(), self.texts.len() + self.audios.len()) {
            (0, 0) => Err(Error::arg(OP, "no sources: give an image, a text, an audio clip, a video, or a prompt (text to audio)")),
            (1, 0) => Ok(Mode::ImageToAudio),
            _ => {
                if self.images.iter().any(|i| i.sources.is_some()) {
                    return Err(Error::arg(OP, "boxes apply to image-to-audio (one image, no other sources); a composition embeds each image whole"));
                }
                Ok(Mode::Composition)
            }
        }
    }
}

/// Check every box of an image of `width` × `height` (inside it, non-empty, weight finite and ≥ 0)
/// — callers do it before detection; [`super::Pipeline::generate`] again.
pub fn check_boxes(boxes: &[SourceBox], width: usize, height: usize) -> Result<()> {
    boxes.iter().enumerate().try_for_each(|(i, b)| check_box(b, width, height, i))
}

pub(super) fn check_box(b: &SourceBox, width: usize, height: usize, i: usize) -> Result<()> {
    let [x0, y0, x1, y1] = b.xyxy;
    let ok = b.xyxy.iter().all(|v| v.is_finite()) && x0 < x1 && y0 < y1 && x0 >= 0.0 && y0 >= 0.0 && x1 <= width as f32 && y1 <= height as f32;
    if !ok {
        return Err(Error::arg(
            "sources",
            format!("{} ({x0}, {y0}, {x1}, {y1}) must satisfy 0 ≤ x0 < x1 ≤ {} and 0 ≤ y0 < y1 ≤ {} (the image size)", b.name(i), width, height),
        ));
    }
    if !b.weight.is_finite() || b.weight < 0.0 {
        return Err(Error::arg("sources", format!("{}: weight {} must be a finite number ≥ 0", b.name(i), b.weight)));
    }
    Ok(())
}

pub(super) fn check_inputs(r: &Request) -> Result<()> {
    for i in &r.images {
        if !i.weight.is_finite() || i.weight < 0.0 {
            return Err(Error::arg("sources", format!("{}: weight {} must be a finite number ≥ 0", i.name, i.weight)));
        }
    }
    if let Some(p) = &r.prompt {
        if p.trim().is_empty() {
            return Err(Error::arg("prompt", "the prompt is empty: describe the sound, e.g. \"rain on a tin roof\""));
        }
    }
    for t in &r.texts {
        if t.trim().is_empty() {
            return Err(Error::arg("sources", "empty text source"));
        }
    }
    for a in &r.audios {
        if a.samples.is_empty() {
            return Err(Error::arg("sources", format!("{}: empty audio (0 samples)", a.name)));
        }
        let (lo, hi) = (crate::media::audio::MIN_RATE, crate::media::audio::MAX_RATE);
        if !(lo..=hi).contains(&a.sample_rate) {
            return Err(Error::arg("sources", format!("{}: sample rate {} Hz is outside {lo}..={hi} Hz", a.name, a.sample_rate)));
        }
        if a.samples.iter().any(|v| !v.is_finite()) {
            return Err(Error::arg("sources", format!("{}: audio has NaN or infinite samples", a.name)));
        }
    }
    Ok(())
}
