//! Media in and out, on the CPU: images (Pillow/OpenCV-exact resampling, CLIP preprocessing),
//! a JPEG decoder that reproduces libjpeg-turbo, file decoding for every accepted image format,
//! audio sources (WAV, FLAC, MP3, Ogg Vorbis decoding, the official preprocessing, WAV
//! output), resampling (torchaudio-exact and high-quality), and video frames (through ffmpeg, native only). Nothing here touches the GPU.

pub mod audio;
pub mod image;
pub mod imageio;
pub mod jpeg;
pub mod resample;
#[cfg(not(target_arch = "wasm32"))]
pub mod video;
