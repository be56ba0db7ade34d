//! Audio source decoding: WAV (PCM 8/16/24/32-bit, 32/64-bit float), FLAC, MP3 and Ogg Vorbis
//! through symphonia (pure Rust, natively and in wasm), channel 0 only, and only the first
//! [`AudioLimits::max_seconds`] of it.
//!
//! The container is sniffed from the bytes, never from the name. Everything an input can get
//! wrong is an [`Error::Format`] that names the input: no audio, an unsupported container or
//! codec (named), a sample rate outside [`MIN_RATE`]..=[`MAX_RATE`], zero channels, NaN or
//! infinite samples, bytes that are not audio.
//!
//! **Damaged files.** One rule for every format: the valid head is used. Decoding stops at the
//! first corrupt packet or at an early end of data; what was decoded before it is returned with
//! a warning in [`DecodedAudio::warnings`] (including when a header promised more frames than the
//! file holds). A file whose first packet is already unreadable is refused.
//!
//! **The cap.** The official code (`ssv2a/model/clap.py`) loads the whole file; CLAP then fits
//! it to 10 s at 48 kHz (a random 10 s window when longer), so at most 10 s of any source
//! reaches the model. Decoding stops after [`DEFAULT_MAX_SECONDS`] (30 s) by default, so a
//! 3-hour file costs the same as a 30-second one (memory: at most 30 s × rate of channel 0).
//! The deviation: for a source longer than the cap, the mean and peak that
//! [`super::remove_mean_and_peak_normalize`] uses are those of the first 30 s, not of the file.

use std::io::{Read, Seek, SeekFrom};

use symphonia::core::codecs::audio::well_known::*;
use symphonia::core::codecs::audio::{AudioCodecId, AudioDecoderOptions};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, MediaSourceStreamOptions};
use symphonia::default::formats::{FlacReader, MpaReader, OggReader, WavReader};

use crate::{Error, Result};

/// Seconds of audio decoded by default (see the module docs for why 30 s).
pub const DEFAULT_MAX_SECONDS: f64 = 30.0;
/// The lowest sample rate accepted (Hz): below it a header is broken rather than audio.
pub const MIN_RATE: u32 = 1_000;
/// The highest sample rate accepted (Hz), the highest common studio rate.
pub const MAX_RATE: u32 = 384_000;

/// How much of a source to decode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AudioLimits {
    /// Decode at most this many seconds from the start (> 0; `f64::INFINITY`: the whole file).
    pub max_seconds: f64,
}

impl Default for AudioLimits {
    fn default() -> Self {
        AudioLimits { max_seconds: DEFAULT_MAX_SECONDS }
    }
}

impl AudioLimits {
    /// No cap: the whole file (for files known to be short, e.g. our own output).
    pub fn whole() -> Self {
        AudioLimits { max_seconds: f64::INFINITY }
    }
}

/// A decoded source: channel 0 as f32 in [−1, 1] (integer PCM divided by 2^(bits−1), as
/// torchaudio and soundfile read it), with what the file said about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedAudio {
    /// Channel 0, at most `max_seconds · sample_rate` samples (rounded up).
    pub samples: Vec<f32>,
    /// Hz, in [`MIN_RATE`]..=[`MAX_RATE`].
    pub sample_rate: u32,
    /// Channels in the file (only channel 0 is kept, as the official code keeps it).
    pub channels: u16,
    /// The container, e.g. "WAV", "FLAC", "MP3", "Ogg".
    pub container: &'static str,
    /// The codec, e.g. "PCM s16le", "FLAC", "MP3", "Vorbis".
    pub codec: &'static str,
    /// Frames per channel the header announces for the whole file, when it says.
    pub total_frames: Option<u64>,
    /// Decoding stopped at the cap: the file holds more audio than `samples`.
    pub capped: bool,
    /// Things worth telling the user that did not stop decoding (a truncated or damaged tail).
    pub warnings: Vec<String>,
}

impl DecodedAudio {
    /// Duration of `samples` in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }

    /// Duration of the whole file in seconds, when the header says.
    pub fn total_seconds(&self) -> Option<f64> {
        self.total_frames.map(|n| n as f64 / self.sample_rate as f64)
    }
}

/// The container of audio file bytes, from its first bytes (at least 4 KiB where the file has
/// them; the MPEG check looks for a second frame). `Err` names what it is when recognisably not
/// decodable here (e.g. "MP4/M4A"), `Ok(None)` when not audio we know of.
pub fn sniff(head: &[u8]) -> std::result::Result<Option<&'static str>, &'static str> {
    let at = |o: usize, m: &[u8]| head.len() >= o + m.len() && &head[o..o + m.len()] == m;
    if at(0, b"RIFF") && at(8, b"WAVE") {
        Ok(Some("WAV"))
    } else if at(0, b"fLaC") {
        Ok(Some("FLAC"))
    } else if at(0, b"OggS") {
        Ok(Some("Ogg"))
    } else if at(0, b"ID3") || mpeg_frames(head) {
        Ok(Some("MP3"))
    } else if at(4, b"ftyp") {
        Err("MP4/M4A")
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        Err("Matroska/WebM")
    } else if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        Err("AIFF")
    } else if at(0, b"caff") {
        Err("CAF")
    } else if at(0, b"RF64") || at(0, b"BW64") {
        Err("RF64/BW64 (64-bit WAV)")
    } else if at(0, b"RIFX") {
        Err("big-endian WAV (RIFX)")
    } else if at(0, b".snd") {
        Err("Sun AU")
    } else if at(0, b"wvpk") {
        Err("WavPack")
    } else if at(0, b"MAC ") {
        Err("Monkey's Audio (APE)")
    } else if at(0, b"#!AMR") {
        Err("AMR")
    } else if at(0, &[0x30, 0x26, 0xB2, 0x75]) {
        Err("ASF/WMA")
    } else if head.len() >= 2 && head[0] == 0xFF && head[1] & 0xF6 == 0xF0 {
        Err("AAC (ADTS)")
    } else {
        Ok(None)
    }
}

/// MPEG audio frame length in bytes from a 4-byte header, or `None` if it is not one.
fn mpeg_frame_len(h: &[u8]) -> Option<usize> {
    if h.len() < 4 || h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return None;
    }
    let version = (h[1] >> 3) & 3; // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    let layer = (h[1] >> 1) & 3; // 1: III, 2: II, 3: I, 0: reserved
    let bitrate_idx = (h[2] >> 4) as usize;
    let rate_idx = ((h[2] >> 2) & 3) as usize;
    if version == 1 || layer == 0 || bitrate_idx == 0 || bitrate_idx == 15 || rate_idx == 3 {
        return None;
    }
    let padding = ((h[2] >> 1) & 1) as usize;
    let rate = [44100, 48000, 32000][rate_idx]
        >> if version == 3 {
            0
        } else if version == 2 {
            1
        } else {
            2
        };
    const V1: [[usize; 15]; 3] = [
        [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
        [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
        [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    ];
    const V2: [[usize; 15]; 2] =
        [[0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256], [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160]];
    let kbps = match (version, layer) {
        (3, 3) => V1[0][bitrate_idx],
        (3, 2) => V1[1][bitrate_idx],
        (3, _) => V1[2][bitrate_idx],
        (_, 3) => V2[0][bitrate_idx],
        _ => V2[1][bitrate_idx],
    };
    Some(match layer {
        3 => (12 * kbps * 1000 / rate + padding) * 4,
        1 if version != 3 => 72 * kbps * 1000 / rate + padding,
        _ => 144 * kbps * 1000 / rate + padding,
    })
}

/// Bytes that start with an MPEG audio frame followed by another (one sync word alone is too
/// weak: 0xFFFx starts plenty of non-audio data); a file of a single frame is accepted too.
fn mpeg_frames(head: &[u8]) -> bool {
    match mpeg_frame_len(head) {
        Some(n) if n >= 4 => head.len() == n || head.get(n..).is_some_and(|h| mpeg_frame_len(h).is_some()),
        _ => false,
    }
}

/// The sample-entry fourcc of an MP4's first `stsd` box within `head`, as a codec name.
fn mp4_codec(head: &[u8]) -> Option<String> {
    let i = head.windows(4).position(|w| w == b"stsd")?;
    let fourcc = head.get(i + 16..i + 20)?;
    Some(match fourcc {
        b"mp4a" => "AAC (mp4a)".into(),
        b"alac" => "ALAC".into(),
        b"Opus" => "Opus".into(),
        b"fLaC" => "FLAC in MP4".into(),
        b"ac-3" => "AC-3".into(),
        b"ec-3" => "E-AC-3".into(),
        b".mp3" => "MP3 in MP4".into(),
        f => format!("`{}`", String::from_utf8_lossy(f)),
    })
}

fn codec_name(id: AudioCodecId) -> Option<&'static str> {
    Some(match id {
        CODEC_ID_PCM_S8 | CODEC_ID_PCM_S8_PLANAR => "PCM s8",
        CODEC_ID_PCM_U8 | CODEC_ID_PCM_U8_PLANAR => "PCM u8",
        CODEC_ID_PCM_S16LE | CODEC_ID_PCM_S16LE_PLANAR => "PCM s16le",
        CODEC_ID_PCM_S16BE | CODEC_ID_PCM_S16BE_PLANAR => "PCM s16be",
        CODEC_ID_PCM_S24LE | CODEC_ID_PCM_S24LE_PLANAR => "PCM s24le",
        CODEC_ID_PCM_S24BE | CODEC_ID_PCM_S24BE_PLANAR => "PCM s24be",
        CODEC_ID_PCM_S32LE | CODEC_ID_PCM_S32LE_PLANAR => "PCM s32le",
        CODEC_ID_PCM_S32BE | CODEC_ID_PCM_S32BE_PLANAR => "PCM s32be",
        CODEC_ID_PCM_U16LE | CODEC_ID_PCM_U16LE_PLANAR | CODEC_ID_PCM_U16BE | CODEC_ID_PCM_U16BE_PLANAR => "PCM u16",
        CODEC_ID_PCM_U24LE | CODEC_ID_PCM_U24LE_PLANAR | CODEC_ID_PCM_U24BE | CODEC_ID_PCM_U24BE_PLANAR => "PCM u24",
        CODEC_ID_PCM_U32LE | CODEC_ID_PCM_U32LE_PLANAR | CODEC_ID_PCM_U32BE | CODEC_ID_PCM_U32BE_PLANAR => "PCM u32",
        CODEC_ID_PCM_F32LE | CODEC_ID_PCM_F32LE_PLANAR | CODEC_ID_PCM_F32BE | CODEC_ID_PCM_F32BE_PLANAR => "PCM f32",
        CODEC_ID_PCM_F64LE | CODEC_ID_PCM_F64LE_PLANAR | CODEC_ID_PCM_F64BE | CODEC_ID_PCM_F64BE_PLANAR => "PCM f64",
        CODEC_ID_PCM_ALAW => "A-law",
        CODEC_ID_PCM_MULAW => "µ-law",
        CODEC_ID_ADPCM_G722 | CODEC_ID_ADPCM_G726 | CODEC_ID_ADPCM_G726LE => "ADPCM (G.72x)",
        CODEC_ID_ADPCM_MS => "MS ADPCM",
        CODEC_ID_ADPCM_IMA_WAV | CODEC_ID_ADPCM_IMA_QT => "IMA ADPCM",
        CODEC_ID_FLAC => "FLAC",
        CODEC_ID_VORBIS => "Vorbis",
        CODEC_ID_OPUS => "Opus",
        CODEC_ID_SPEEX => "Speex",
        CODEC_ID_MP1 => "MPEG-1 Layer I",
        CODEC_ID_MP2 => "MPEG-1 Layer II",
        CODEC_ID_MP3 => "MP3",
        CODEC_ID_AAC => "AAC",
        CODEC_ID_ALAC => "ALAC",
        CODEC_ID_AC3 => "AC-3",
        CODEC_ID_EAC3 => "E-AC-3",
        CODEC_ID_WMA => "WMA",
        _ => return None,
    })
}

const SUPPORTED: &str = "WAV (PCM or float), FLAC, MP3 or Ogg Vorbis";

/// A borrowed or owned `Read + Seek` as symphonia's media source (length unknown).
struct Source<R>(R);

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Seek> Seek for Source<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.seek(pos)
    }
}

impl<R: Read + Seek + Send + Sync> MediaSource for Source<R> {
    fn is_seekable(&self) -> bool {
        true
    }
    fn byte_len(&self) -> Option<u64> {
        None
    }
}

/// Decode audio file bytes (see the module docs); `name` is used in errors.
pub fn decode(bytes: &[u8], name: &str, limits: &AudioLimits) -> Result<DecodedAudio> {
    decode_reader(std::io::Cursor::new(bytes), name, limits)
}

/// Decode from a reader, streaming: only the head needed for the first
/// [`AudioLimits::max_seconds`] is read (plus what the container needs to find its tracks).
pub fn decode_reader<R: Read + Seek + Send + Sync>(mut reader: R, name: &str, limits: &AudioLimits) -> Result<DecodedAudio> {
    if limits.max_seconds.is_nan() || limits.max_seconds <= 0.0 {
        return Err(Error::arg("audio::decode", format!("{name}: max_seconds must be > 0, got {}", limits.max_seconds)));
    }
    let io = |e: std::io::Error| Error::Format(format!("{name}: cannot read the audio file ({e})"));
    let start = reader.stream_position().map_err(io)?;
    let mut head = Vec::with_capacity(4096);
    (&mut reader).take(4096).read_to_end(&mut head).map_err(io)?;
    if head.is_empty() {
        return Err(Error::Format(format!("{name}: empty file, not audio")));
    }
    let container = match sniff(&head) {
        Ok(Some(c)) => c,
        Ok(None) => return Err(Error::Format(format!("{name}: not a recognised audio file (expected {SUPPORTED})"))),
        Err("MP4/M4A") => {
            reader.seek(SeekFrom::Start(start)).map_err(io)?;
            let mut more = Vec::new();
            (&mut reader).take(1 << 20).read_to_end(&mut more).map_err(io)?;
            let codec = mp4_codec(&more).map(|c| format!("codec {c} in ")).unwrap_or_default();
            return Err(Error::Format(format!(
                "{name}: {codec}an MP4/M4A container is not supported (expected {SUPPORTED}); convert it, e.g. `ffmpeg -i in.m4a out.flac`"
            )));
        }
        Err(other) => {
            return Err(Error::Format(format!("{name}: the {other} format is not supported (expected {SUPPORTED}); convert it, e.g. to FLAC or WAV")))
        }
    };
    if container == "WAV" {
        check_wav_fmt(&head, name)?;
    }
    let mut at = start;
    if head.starts_with(b"ID3") {
        // An ID3v2 tag (any size: cover art) before MPEG audio: skip it, then look for frames.
        let Some(h) = head.get(..10) else { return Err(Error::Format(format!("{name}: a truncated ID3 tag and no audio"))) };
        let size = h[6..10].iter().fold(0u64, |a, &b| (a << 7) | (b & 0x7F) as u64);
        at = start + 10 + size + if h[5] & 0x10 != 0 { 10 } else { 0 };
        reader.seek(SeekFrom::Start(at)).map_err(io)?;
        let mut after = Vec::with_capacity(4096);
        (&mut reader).take(4096).read_to_end(&mut after).map_err(io)?;
        if !mpeg_frames(&after) {
            return Err(Error::Format(format!("{name}: an ID3 tag without MPEG audio after it (expected {SUPPORTED})")));
        }
    }
    reader.seek(SeekFrom::Start(at)).map_err(io)?;
    decode_guarded(Box::new(Source(reader)), container, name, limits)
}

/// Channel counts beyond this are refused before symphonia sees them (its WAV reader multiplies
/// the count by the sample size in 16 bits; fuzzing found the overflow).
pub const MAX_CHANNELS: u16 = 64;

/// The WAV `fmt ` chunk's channel count and sample size, when the head holds it.
fn check_wav_fmt(head: &[u8], name: &str) -> Result<()> {
    let mut at = 12;
    while at + 8 <= head.len() {
        let size = u32::from_le_bytes([head[at + 4], head[at + 5], head[at + 6], head[at + 7]]) as usize;
        if &head[at..at + 4] == b"fmt " {
            let Some(f) = head.get(at + 8..at + 24) else { return Ok(()) };
            let channels = u16::from_le_bytes([f[2], f[3]]);
            let bits = u16::from_le_bytes([f[14], f[15]]);
            if channels == 0 {
                return Err(Error::Format(format!("{name}: the WAV header says 0 channels")));
            }
            if channels > MAX_CHANNELS {
                return Err(Error::Format(format!("{name}: {channels} channels in the WAV header (at most {MAX_CHANNELS})")));
            }
            if bits > 64 {
                return Err(Error::Format(format!("{name}: {bits} bits per sample in the WAV header")));
            }
            return Ok(());
        }
        at = at.saturating_add(8).saturating_add(size).saturating_add(size & 1);
    }
    Ok(())
}

/// [`decode_source`], with a panic inside the decoder libraries turned into an error natively
/// (a safety net: malformed input must never take the process down; in wasm, where panics
/// abort, the checks before the decoder are what protects).
fn decode_guarded<'s>(src: Box<dyn MediaSource + 's>, container: &'static str, name: &str, limits: &AudioLimits) -> Result<DecodedAudio> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_source(src, container, name, limits))).unwrap_or_else(|p| {
            let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
            Err(Error::Format(format!("{name}: malformed {container} data made the decoder fail ({msg})")))
        })
    }
    #[cfg(target_arch = "wasm32")]
    decode_source(src, container, name, limits)
}

/// Open and decode an audio file, streaming from disk (a 3-hour file is not read whole).
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path, limits: &AudioLimits) -> Result<DecodedAudio> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(format!("opening audio {}", path.display()), e))?;
    decode_reader(std::io::BufReader::new(f), &path.display().to_string(), limits)
}

fn sym_err(name: &str, what: &str, e: SymError) -> Error {
    match e {
        SymError::Unsupported(f) => Error::Format(format!("{name}: {what}: unsupported ({f}); expected {SUPPORTED}")),
        e => Error::Format(format!("{name}: {what}: {e}")),
    }
}

fn decode_source<'s>(src: Box<dyn MediaSource + 's>, container: &'static str, name: &str, limits: &AudioLimits) -> Result<DecodedAudio> {
    let mss = MediaSourceStream::new(src, MediaSourceStreamOptions::default());
    // The reader of the sniffed container, at the position sniffed (symphonia's probe would scan
    // on for any format's marker: a RIFF header inside MP3 data would be read as WAV).
    let opts = FormatOptions::default();
    let reader: std::result::Result<Box<dyn FormatReader + 's>, SymError> = match container {
        "WAV" => WavReader::try_new(mss, opts).map(|r| Box::new(r) as _),
        "FLAC" => FlacReader::try_new(mss, opts).map(|r| Box::new(r) as _),
        "Ogg" => OggReader::try_new(mss, opts).map(|r| Box::new(r) as _),
        _ => MpaReader::try_new(mss, opts).map(|r| Box::new(r) as _),
    };
    let mut format = reader.map_err(|e| match e {
        SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Format(format!("{name}: the {container} file ends before its first complete audio packet (truncated?)"))
        }
        e => sym_err(name, &format!("unreadable {container} header"), e),
    })?;
    let track = format.default_track(TrackType::Audio).or_else(|| format.first_track(TrackType::Audio));
    let Some(track) = track else {
        return Err(Error::Format(format!("{name}: the {container} file holds no audio track")));
    };
    let track_id = track.id;
    let total_frames = track.num_frames;
    let Some(CodecParameters::Audio(params)) = track.codec_params.clone() else {
        return Err(Error::Format(format!("{name}: the {container} file's audio track has no codec parameters")));
    };
    let codec = codec_name(params.codec);
    let decodable = symphonia::default::get_codecs().get_audio_decoder(params.codec).is_some();
    if !decodable {
        let c = codec.map(str::to_string).unwrap_or_else(|| format!("id {}", params.codec));
        return Err(Error::Format(format!("{name}: audio codec {c} in {container} is not supported (expected {SUPPORTED}); convert it, e.g. to FLAC or WAV")));
    }
    let codec = codec.unwrap_or("unknown");
    let sample_rate = params.sample_rate.unwrap_or(0);
    if !(MIN_RATE..=MAX_RATE).contains(&sample_rate) {
        return Err(Error::Format(format!("{name}: sample rate {sample_rate} Hz in the {container} header is outside {MIN_RATE}..={MAX_RATE} Hz")));
    }
    let channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
    if channels == 0 {
        return Err(Error::Format(format!("{name}: the {container} header says 0 channels")));
    }
    let channels = u16::try_from(channels).map_err(|_| Error::Format(format!("{name}: {channels} channels")))?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| sym_err(name, &format!("{codec} decoder"), e))?;

    let cap = if limits.max_seconds.is_finite() { (limits.max_seconds * sample_rate as f64).ceil().min(usize::MAX as f64) as usize } else { usize::MAX };
    let mut samples: Vec<f32> = Vec::new();
    let mut planes: Vec<Vec<f32>> = Vec::new();
    let mut warnings = Vec::new();
    let at = |n: usize| format!("{:.3} s", n as f64 / sample_rate as f64);
    let mut capped = false;
    loop {
        if samples.len() >= cap {
            capped = true;
            break;
        }
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof && !samples.is_empty() => {
                warnings.push(format!("{name}: the file ends early, inside a packet, after {}; using the audio before it", at(samples.len())));
                break;
            }
            Err(e) if !samples.is_empty() => {
                warnings.push(format!("{name}: damaged {container} data after {} ({e}); using the audio before it", at(samples.len())));
                break;
            }
            Err(e) => return Err(sym_err(name, &format!("no readable {container} audio"), e)),
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                if buf.frames() == 0 {
                    continue;
                }
                buf.copy_to_vecs_planar::<f32>(&mut planes);
                let Some(p0) = planes.first() else { continue };
                let take = p0.len().min(cap - samples.len());
                samples.reserve(take.min(1 << 20));
                samples.extend_from_slice(&p0[..take]);
            }
            Err(e) if !samples.is_empty() => {
                warnings.push(format!("{name}: corrupt {codec} packet after {} ({e}); using the audio before it", at(samples.len())));
                break;
            }
            Err(e) => return Err(sym_err(name, &format!("{codec} data is corrupt at the start"), e)),
        }
    }
    if samples.is_empty() {
        let promised = match total_frames {
            Some(n) if n > 0 => format!("; the header announces {n} frames, so the file is probably truncated"),
            _ => String::new(),
        };
        return Err(Error::Format(format!("{name}: no audio samples ({container}, {codec}, {sample_rate} Hz){promised}")));
    }
    if let Some(i) = samples.iter().position(|x| !x.is_finite()) {
        return Err(Error::Format(format!("{name}: sample {i} (at {}) is {}; the file's float samples must be finite", at(i), samples[i])));
    }
    if !capped && warnings.is_empty() {
        if let Some(n) = total_frames.filter(|&n| n > samples.len() as u64) {
            warnings.push(format!(
                "{name}: the header announces {n} frames ({:.3} s) but the file holds {} ({}); it is probably truncated",
                n as f64 / sample_rate as f64,
                samples.len(),
                at(samples.len())
            ));
        }
    }
    Ok(DecodedAudio { samples, sample_rate, channels, container, codec, total_frames, capped, warnings })
}
