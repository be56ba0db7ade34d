//! CLAP's audio tower as AudioLDM stores it: `cond_stage_model.model.audio_branch` (HTSAT, a
//! Swin transformer on a log-mel image; HTSAT-tiny in the released checkpoints) and
//! `cond_stage_model.model.audio_projection` (Linear → ReLU → Linear). ../shared/spec/models.md
//! §4.1–4.2.
//!
//! Reference: audioldm 0.1.1 `audioldm/clap/open_clip/htsat.py` (`HTSAT_Swin_Transformer`,
//! unfused) and `model.py` (`CLAP.get_audio_embedding` = L2-normalised
//! `audio_projection(audio_branch(x)["embedding"])`), torchlibrosa 0.1.0 (`Spectrogram`,
//! `LogmelFilterBank`). On a batch of 48 kHz waveforms fitted to `clip_samples`
//! ([`super::frontend::fit_clip`]):
//! 1. STFT (n_fft = `window_size`, hop `hop_size`, periodic Hann, centred with reflect padding,
//!    power 2): the frames gathered by one strided copy, then one matmul with
//!    [`super::frontend::stft_basis`] (real and imaginary rows), squared;
//! 2. mel: one matmul with `melW` stacked twice (it sums re² and im² per bin), then
//!    `10·log10(max(·, 1e-10))` and bn0 (running statistics) folded into one scale and shift per
//!    mel bin after a natural log;
//! 3. `reshape_wav2img`: bicubic (align_corners) along time, frames → `spec_size·freq_ratio`, as
//!    a matmul with [`super::frontend::bicubic_matrix`], then the fold to a `spec_size²` image
//!    (chunk r of the time axis becomes rows r·mel … r·mel + mel − 1);
//! 4. PatchEmbed: the p×p patches gathered by a strided copy, one Linear, LayerNorm;
//! 5. Swin stages (window attention with relative position bias, shifted windows with the −100
//!    mask, pre-LN, GELU MLP, PatchMerging between stages): token permutations are row gathers
//!    with indices from [`super::swin`], bias and mask one additive tensor per block;
//! 6. final LayerNorm, the mean over tokens (HTSAT's `embedding`), `audio_projection`.
//!
//! Sizes come from the tensor shapes (embed dim, patch size, depths, heads — from the relative
//! position bias tables —, windows, MLP widths, mel bins, n_fft, projection width); what no
//! shape gives (sample rate, clip length, hop, spec_size, patch stride) from the config's
//! `clap_audio` object, by default HTSAT-tiny.json's audio_cfg and `create_htsat_model`'s
//! spec_size 256. `tscam_conv` and `head` (AudioSet logits) are not used and not packed.
//!
//! Pack layout (AudioLDM pack, under [`super::PREFIX`]): the original names, except
//! - `attn.qkv` is split into `attn.q`, `attn.k`, `attn.v` (rows thirds; the attention kernel
//!   takes q, k, v as separate tensors);
//! - `logmel_extractor.melW` [bins, mel] is stored flattened (rank 1), so that an f16 pack keeps
//!   it f32 (it feeds a logarithm);
//! - the fixed tensors are not packed: `spectrogram_extractor.stft.conv_real/conv_imag` (the
//!   runtime computes the same basis; the converter checks a checkpoint's copy against it),
//!   `relative_position_index` and `attn_mask` (checked against [`super::swin`] when present).
//!
//! Deviations: none in the math; the crop offset of waveforms longer than a clip is the
//! caller's (the original draws it from NumPy's global RNG). Weights fp16 (f16 pack) or f32,
//! the STFT basis, mel matrix and interpolation matrix f32, arithmetic f32.

use serde::{Deserialize, Serialize};

use super::frontend::{bicubic_matrix, fit_clip, stft_basis};
use super::swin;
use crate::convert::plan::{names_under, Plan, Recipe, TensorSource};
use crate::nn::{LayerNorm, Linear};
use crate::ops::attention::{ScoreBias, Sdpa};
use crate::ops::copy::PadMode;
use crate::ops::Act;
use crate::tensor::{Tensor, Weight, WeightDtype};
use crate::weights::Weights;
use crate::{Error, Result};

pub use crate::models::Trace;

/// The audio tower's sizes: HTSAT-tiny.json's `audio_cfg` names, then HTSAT's constructor
/// names. In a `--config` file every field is optional: the converter fills the sizes from the
/// tensor shapes and refuses values that contradict them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AudioConfig {
    /// Hz of the waveforms the tower takes (48000).
    pub sample_rate: usize,
    /// Samples per clip (480000: 10 s).
    pub clip_samples: usize,
    /// STFT size and window length (1024; from `melW`'s rows).
    pub window_size: usize,
    /// STFT hop (480).
    pub hop_size: usize,
    /// Mel bins (64; from `melW`).
    pub mel_bins: usize,
    /// Mel filter range (Hz), informational: the filters are `melW`.
    pub fmin: f64,
    pub fmax: f64,
    /// Side of the square image the Swin sees (256).
    pub spec_size: usize,
    /// PatchEmbed kernel (4; from `patch_embed.proj`).
    pub patch_size: usize,
    /// PatchEmbed stride (0: equal to `patch_size`, as in every HTSAT release).
    pub patch_stride: usize,
    /// Stage-1 width (96; from `patch_embed.proj`).
    pub embed_dim: usize,
    /// Blocks per stage ([2, 2, 6, 2]).
    pub depths: Vec<usize>,
    /// Heads per stage ([4, 8, 16, 32]; from the relative position bias tables).
    pub num_heads: Vec<usize>,
    /// Window side per stage ([8, 8, 8, 8]; from the bias tables: HTSAT uses the grid side
    /// when the grid is not larger than the window).
    pub windows: Vec<usize>,
    /// MLP hidden width per stage (4× the width in HTSAT).
    pub mlp_hidden: Vec<usize>,
    /// CLAP's `joint_embed_shape` (512).
    pub joint_embed_shape: usize,
    pub layer_norm_eps: f64,
    pub bn_eps: f64,
}

impl Default for AudioConfig {
    /// HTSAT-tiny.json's `audio_cfg` and HTSAT's fixed values; shape-given sizes 0/empty.
    fn default() -> Self {
        AudioConfig {
            sample_rate: 48000,
            clip_samples: 480000,
            window_size: 0,
            hop_size: 480,
            mel_bins: 0,
            fmin: 50.0,
            fmax: 14000.0,
            spec_size: 256,
            patch_size: 0,
            patch_stride: 0,
            embed_dim: 0,
            depths: vec![],
            num_heads: vec![],
            windows: vec![],
            mlp_hidden: vec![],
            joint_embed_shape: 0,
            layer_norm_eps: 1e-5,
            bn_eps: 1e-5,
        }
    }
}

impl AudioConfig {
    /// HTSAT-tiny with CLAP's 512-d projection (AudioLDM's released checkpoints).
    pub fn htsat_tiny() -> AudioConfig {
        AudioConfig {
            window_size: 1024,
            mel_bins: 64,
            patch_size: 4,
            patch_stride: 4,
            embed_dim: 96,
            depths: vec![2, 2, 6, 2],
            num_heads: vec![4, 8, 16, 32],
            windows: vec![8; 4],
            mlp_hidden: vec![384, 768, 1536, 3072],
            joint_embed_shape: 512,
            ..AudioConfig::default()
        }
    }

    /// STFT bins (n_fft/2 + 1).
    pub fn bins(&self) -> usize {
        self.window_size / 2 + 1
    }
    /// STFT frames of a clip (centred): `clip_samples / hop + 1`.
    pub fn frames(&self) -> usize {
        self.clip_samples / self.hop_size.max(1) + 1
    }
    pub fn stride(&self) -> usize {
        if self.patch_stride == 0 {
            self.patch_size
        } else {
            self.patch_stride
        }
    }
    /// `spec_size / mel_bins`: the time axis is cut into this many chunks stacked along frequency.
    pub fn freq_ratio(&self) -> usize {
        self.spec_size / self.mel_bins.max(1)
    }
    /// Frames after the bicubic stretch (`spec_size·freq_ratio`).
    pub fn target_frames(&self) -> usize {
        self.spec_size * self.freq_ratio()
    }
    /// Token grid side of stage `s`.
    pub fn grid(&self, s: usize) -> usize {
        (self.spec_size / self.stride().max(1)) >> s
    }
    /// Width of stage `s`.
    pub fn dim(&self, s: usize) -> usize {
        self.embed_dim << s
    }
    /// HTSAT's `num_features`: the last stage's width.
    pub fn num_features(&self) -> usize {
        self.dim(self.depths.len().saturating_sub(1))
    }
    /// Shift of block `b` of stage `s`: half the window on odd blocks, 0 where the grid is not
    /// larger than the window.
    pub fn shift(&self, s: usize, b: usize) -> usize {
        if b % 2 == 1 && self.grid(s) > self.windows[s] {
            self.windows[s] / 2
        } else {
            0
        }
    }

    pub fn check(&self) -> Result<()> {
        let c = self;
        let stages = c.depths.len();
        let stages_ok = stages > 0
            && c.num_heads.len() == stages
            && c.windows.len() == stages
            && c.mlp_hidden.len() == stages
            && c.depths.iter().all(|&d| d > 0)
            && c.mlp_hidden.iter().all(|&h| h > 0)
            && c.windows.iter().all(|&w| w > 0);
        let front_ok = c.sample_rate > 0
            && c.window_size >= 2
            && c.hop_size > 0
            && c.clip_samples > c.window_size / 2
            && c.mel_bins > 0
            && c.spec_size.is_multiple_of(c.mel_bins)
            && c.freq_ratio() > 0
            && c.spec_size / c.freq_ratio() == c.mel_bins
            && c.frames() <= c.target_frames();
        let patch_ok = c.patch_size > 0 && c.stride() == c.patch_size && c.spec_size.is_multiple_of(c.patch_size) && c.embed_dim > 0;
        if !(stages_ok && front_ok && patch_ok && c.joint_embed_shape > 0 && c.layer_norm_eps > 0.0 && c.bn_eps > 0.0) {
            return Err(Error::Format(format!(
                "unsupported CLAP audio config {c:?} (needs: as many heads, windows and MLP widths as stages; spec_size a multiple of mel_bins and of the patch; \
                 patch stride equal to the patch; at most spec_size·spec_size/mel_bins STFT frames)"
            )));
        }
        for s in 0..stages {
            let (g, w, d, h) = (c.grid(s), c.windows[s], c.dim(s), c.num_heads[s]);
            let ok =
                g > 0 && g.is_multiple_of(w) && (s + 1 == stages || g.is_multiple_of(2)) && h > 0 && d.is_multiple_of(h) && (d / h).is_multiple_of(4) && w <= g;
            if !ok {
                return Err(Error::Format(format!(
                    "unsupported CLAP audio config: stage {s} has a {g}×{g} grid, window {w}, width {d}, {h} heads (the grid must be a multiple of the window, \
                     even before a merge, and the head size a multiple of 4)"
                )));
            }
        }
        Ok(())
    }
}

fn dim(src: &dyn TensorSource, name: &str, axis: usize) -> Result<usize> {
    src.shape(name).and_then(|s| s.get(axis).copied()).ok_or_else(|| Error::missing(src.describe(), name.to_string()))
}

/// Tensors of an HTSAT state dict that the embedding never uses (AudioSet head, BatchNorm's
/// batch counter).
fn is_unused(rel: &str) -> bool {
    rel.starts_with("tscam_conv.") || rel.starts_with("head.") || rel.ends_with("num_batches_tracked")
}

/// The audio tower's config from the tensor shapes under `prefix` (e.g.
/// `cond_stage_model.model`), completed by `given` (its non-shape values are taken, its non-zero
/// sizes must agree with the shapes). `None` when the source has no audio tower.
pub fn config_from_source(src: &dyn TensorSource, prefix: &str, given: Option<&AudioConfig>) -> Result<Option<AudioConfig>> {
    let ab = format!("{prefix}.audio_branch");
    let proj = format!("{ab}.patch_embed.proj.weight");
    if !src.contains(&proj) {
        return Ok(None);
    }
    let pshape = src.shape(&proj).unwrap_or_default();
    if pshape.len() != 4 || pshape[1] != 1 || pshape[2] != pshape[3] {
        return Err(Error::Format(format!("{}: `{proj}` is {pshape:?}, expected [embed_dim, 1, patch, patch]", src.describe())));
    }
    let mel = format!("{ab}.logmel_extractor.melW");
    let base = given.cloned().unwrap_or_default();
    let mut c = AudioConfig {
        window_size: (dim(src, &mel, 0)?.saturating_sub(1)) * 2,
        mel_bins: dim(src, &mel, 1)?,
        patch_size: pshape[2],
        embed_dim: pshape[0],
        joint_embed_shape: dim(src, &format!("{prefix}.audio_projection.0.weight"), 0)?,
        depths: vec![],
        num_heads: vec![],
        windows: vec![],
        mlp_hidden: vec![],
        ..base.clone()
    };
    for s in 0.. {
        let depth = (0..).take_while(|b| src.contains(&format!("{ab}.layers.{s}.blocks.{b}.norm1.weight"))).count();
        if depth == 0 {
            break;
        }
        let table = format!("{ab}.layers.{s}.blocks.0.attn.relative_position_bias_table");
        let rows = dim(src, &table, 0)?;
        let side = (rows as f64).sqrt().round() as usize;
        if side * side != rows || side.is_multiple_of(2) {
            return Err(Error::Format(format!("{}: `{table}` has {rows} rows, not (2·window − 1)²", src.describe())));
        }
        c.depths.push(depth);
        c.num_heads.push(dim(src, &table, 1)?);
        c.windows.push(side.div_ceil(2));
        c.mlp_hidden.push(dim(src, &format!("{ab}.layers.{s}.blocks.0.mlp.fc1.weight"), 0)?);
    }
    if let Some(g) = given {
        let shapes = [
            ("window_size", g.window_size, c.window_size),
            ("mel_bins", g.mel_bins, c.mel_bins),
            ("patch_size", g.patch_size, c.patch_size),
            ("embed_dim", g.embed_dim, c.embed_dim),
            ("joint_embed_shape", g.joint_embed_shape, c.joint_embed_shape),
        ];
        for (what, want, have) in shapes {
            if want != 0 && want != have {
                return Err(Error::Format(format!("{}: the config says clap_audio.{what} = {want}, the checkpoint's shapes say {have}", src.describe())));
            }
        }
        for (what, want, have) in [
            ("depths", &g.depths, &c.depths),
            ("num_heads", &g.num_heads, &c.num_heads),
            ("windows", &g.windows, &c.windows),
            ("mlp_hidden", &g.mlp_hidden, &c.mlp_hidden),
        ] {
            if !want.is_empty() && want != have {
                return Err(Error::Format(format!("{}: the config says clap_audio.{what} = {want:?}, the checkpoint's shapes say {have:?}", src.describe())));
            }
        }
    }
    c.check().map_err(|e| Error::Format(format!("{}: {e}", src.describe())))?;
    // A stored mask tells the grid: it must be the one spec_size gives.
    for s in 0..c.depths.len() {
        for b in 0..c.depths[s] {
            let m = format!("{ab}.layers.{s}.blocks.{b}.attn_mask");
            if let Some(shape) = src.shape(&m) {
                let w = c.windows[s];
                let want = vec![(c.grid(s) / w).pow(2), w * w, w * w];
                if c.shift(s, b) == 0 || shape != want {
                    return Err(Error::Format(format!(
                        "{}: `{m}` is {shape:?}, but clap_audio.spec_size = {} gives {} (a {}×{} grid, window {w}); give the right spec_size in --config",
                        src.describe(),
                        c.spec_size,
                        if c.shift(s, b) == 0 { "no mask for this block".to_string() } else { format!("{want:?}") },
                        c.grid(s),
                        c.grid(s)
                    )));
                }
            }
        }
    }
    Ok(Some(c))
}

/// Largest |difference| allowed between a checkpoint's STFT basis and [`stft_basis`].
pub const STFT_BASIS_TOLERANCE: f32 = 1e-5;

/// Converter rules for the audio tower under `prefix` (see the module doc for the layout):
/// every used tensor with its shape checked against `c`; the fixed tensors checked against the
/// runtime's when present; unused ones (`tscam_conv`, `head`, the BatchNorm counter) skipped;
/// any other tensor under `audio_branch` / `audio_projection` is an error.
pub fn plan(plan: &mut Plan, src: &dyn TensorSource, prefix: &str, c: &AudioConfig) -> Result<()> {
    let ab = format!("{prefix}.audio_branch");
    let (bins, mel, p, e) = (c.bins(), c.mel_bins, c.patch_size, c.embed_dim);
    let mut want: Vec<(String, Vec<usize>)> = vec![];
    let mut known: std::collections::BTreeSet<String> = Default::default();
    // melW, flattened.
    let melw = format!("{ab}.logmel_extractor.melW");
    match src.shape(&melw) {
        Some(s) if s == [bins, mel] => plan.push(melw.clone(), vec![bins * mel], Recipe::Copy(melw.clone())),
        Some(s) => return Err(Error::TensorShape { file: src.describe(), name: melw, expected: vec![bins, mel], got: s }),
        None => return Err(Error::missing(src.describe(), melw)),
    }
    known.insert(melw);
    for n in ["weight", "bias", "running_mean", "running_var"] {
        want.push((format!("{ab}.bn0.{n}"), vec![mel]));
    }
    want.push((format!("{ab}.patch_embed.proj.weight"), vec![e, 1, p, p]));
    want.push((format!("{ab}.patch_embed.proj.bias"), vec![e]));
    want.push((format!("{ab}.patch_embed.norm.weight"), vec![e]));
    want.push((format!("{ab}.patch_embed.norm.bias"), vec![e]));
    let stages = c.depths.len();
    for s in 0..stages {
        let (d, h, w, f) = (c.dim(s), c.num_heads[s], c.windows[s], c.mlp_hidden[s]);
        for b in 0..c.depths[s] {
            let blk = format!("{ab}.layers.{s}.blocks.{b}");
            for (n, shape) in [
                ("norm1.weight", vec![d]),
                ("norm1.bias", vec![d]),
                ("attn.relative_position_bias_table", vec![(2 * w - 1) * (2 * w - 1), h]),
                ("attn.proj.weight", vec![d, d]),
                ("attn.proj.bias", vec![d]),
                ("norm2.weight", vec![d]),
                ("norm2.bias", vec![d]),
                ("mlp.fc1.weight", vec![f, d]),
                ("mlp.fc1.bias", vec![f]),
                ("mlp.fc2.weight", vec![d, f]),
                ("mlp.fc2.bias", vec![d]),
            ] {
                want.push((format!("{blk}.{n}"), shape));
            }
            // qkv split into thirds.
            let (qw, qb) = (format!("{blk}.attn.qkv.weight"), format!("{blk}.attn.qkv.bias"));
            for (name, shape) in [(&qw, vec![3 * d, d]), (&qb, vec![3 * d])] {
                match src.shape(name) {
                    Some(got) if got == shape => {}
                    Some(got) => return Err(Error::TensorShape { file: src.describe(), name: name.to_string(), expected: shape, got }),
                    None => return Err(Error::missing(src.describe(), name.to_string())),
                }
            }
            for (i, part) in ["q", "k", "v"].iter().enumerate() {
                plan.push(format!("{blk}.attn.{part}.weight"), vec![d, d], Recipe::Rows { src: qw.clone(), start: i * d, len: d });
                plan.push(format!("{blk}.attn.{part}.bias"), vec![d], Recipe::Rows { src: qb.clone(), start: i * d, len: d });
            }
            known.insert(qw);
            known.insert(qb);
            // Fixed buffers: checked, not packed.
            let idx = format!("{blk}.attn.relative_position_index");
            if src.contains(&idx) {
                let got = read_shaped(src, &idx, &[w * w, w * w])?;
                let mine = swin::relative_position_index(w);
                if got.iter().zip(&mine).any(|(a, b)| *a != *b as f32) {
                    return Err(Error::Format(format!("{}: `{idx}` is not the standard Swin relative position index for window {w}", src.describe())));
                }
                known.insert(idx);
            }
            let m = format!("{blk}.attn_mask");
            if src.contains(&m) {
                let (g, sh) = (c.grid(s), c.shift(s, b));
                let got = read_shaped(src, &m, &[(g / w) * (g / w), w * w, w * w])?;
                if got != swin::shift_mask(g, g, w, sh) {
                    return Err(Error::Format(format!("{}: `{m}` is not the shifted-window mask of a {g}×{g} grid, window {w}, shift {sh}", src.describe())));
                }
                known.insert(m);
            }
        }
        if s + 1 < stages {
            let ds = format!("{ab}.layers.{s}.downsample");
            want.push((format!("{ds}.norm.weight"), vec![4 * d]));
            want.push((format!("{ds}.norm.bias"), vec![4 * d]));
            want.push((format!("{ds}.reduction.weight"), vec![2 * d, 4 * d]));
        }
    }
    let nf = c.num_features();
    want.push((format!("{ab}.norm.weight"), vec![nf]));
    want.push((format!("{ab}.norm.bias"), vec![nf]));
    let j = c.joint_embed_shape;
    for (n, s) in [("0.weight", vec![j, nf]), ("0.bias", vec![j]), ("2.weight", vec![j, j]), ("2.bias", vec![j])] {
        want.push((format!("{prefix}.audio_projection.{n}"), s));
    }
    // The STFT basis: checked, not packed.
    let basis = stft_basis(c.window_size);
    let nfft = c.window_size;
    for (part, rows) in [("conv_real", 0..bins), ("conv_imag", bins..2 * bins)] {
        let name = format!("{ab}.spectrogram_extractor.stft.{part}.weight");
        if src.contains(&name) {
            let got = read_shaped(src, &name, &[bins, 1, nfft])?;
            let mine = &basis[rows.start * nfft..rows.end * nfft];
            let worst = got.iter().zip(mine).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            if worst.is_nan() || worst > STFT_BASIS_TOLERANCE {
                return Err(Error::Format(format!(
                    "{}: `{name}` differs from a periodic-Hann DFT of {nfft} points by up to {worst:e} (the runtime computes that basis; it takes no other)",
                    src.describe()
                )));
            }
            known.insert(name);
        }
    }
    for (n, _) in &want {
        known.insert(n.clone());
    }
    let extra: Vec<String> = names_under(src, &ab)
        .into_iter()
        .chain(names_under(src, &format!("{prefix}.audio_projection")))
        .filter(|n| !known.contains(n) && !is_unused(n.strip_prefix(&format!("{ab}.")).unwrap_or("")))
        .collect();
    if !extra.is_empty() {
        return Err(Error::Format(format!(
            "{}: {} CLAP audio tensor(s) that are not part of an HTSAT with depths {:?} + audio_projection: {}",
            src.describe(),
            extra.len(),
            c.depths,
            extra.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    for (name, shape) in want {
        plan.copy(src, &name, &shape)?;
    }
    Ok(())
}

fn read_shaped(src: &dyn TensorSource, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    match src.shape(name) {
        Some(s) if s == shape => src.read_f32(name),
        Some(s) => Err(Error::TensorShape { file: src.describe(), name: name.to_string(), expected: shape.to_vec(), got: s }),
        None => Err(Error::missing(src.describe(), name.to_string())),
    }
}

/// One Swin block, with its token orders and attention bias.
struct Block {
    norm1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    /// [windows or 1, heads, T, T]: relative position bias (+ shift mask).
    bias: Tensor,
    /// Windows the bias cycles over (1 without a shift).
    bias_windows: usize,
    tokens_per_window: usize,
    /// Window-major order of one image's tokens, and its inverse; `None` when it is the
    /// identity (one window, no shift).
    order: Option<(Vec<u32>, Vec<u32>)>,
}

impl Block {
    fn load(w: &Weights, c: &AudioConfig, s: usize, b: usize) -> Result<Block> {
        let (d, h, win, f, eps) = (c.dim(s), c.num_heads[s], c.windows[s], c.mlp_hidden[s], c.layer_norm_eps as f32);
        let g = c.grid(s);
        let shift = c.shift(s, b);
        let table = w.host("attn.relative_position_bias_table", &[(2 * win - 1) * (2 * win - 1), h])?;
        let bias = swin::attention_bias(&table.data, h, g, g, win, shift);
        let bias_windows = if shift > 0 { (g / win) * (g / win) } else { 1 };
        let t = win * win;
        let order = (g != win || shift != 0).then(|| {
            let o = swin::window_order(g, g, win, shift);
            let inv = swin::inverse(&o);
            (o, inv)
        });
        Ok(Block {
            norm1: LayerNorm::load(&w.sub("norm1"), d, eps)?,
            q: Linear::load(&w.sub("attn.q"), d, d, true)?,
            k: Linear::load(&w.sub("attn.k"), d, d, true)?,
            v: Linear::load(&w.sub("attn.v"), d, d, true)?,
            proj: Linear::load(&w.sub("attn.proj"), d, d, true)?,
            norm2: LayerNorm::load(&w.sub("norm2"), d, eps)?,
            fc1: Linear::load(&w.sub("mlp.fc1"), d, f, true)?,
            fc2: Linear::load(&w.sub("mlp.fc2"), f, d, true)?,
            heads: h,
            bias: Tensor::from_slice(w.gpu(), &bias, [bias_windows, h, t, t])?,
            bias_windows,
            tokens_per_window: t,
            order,
        })
    }

    /// x: [B·N, C] in token order -> [B·N, C]
    fn forward(&self, x: &Tensor, batch: usize) -> Result<Tensor> {
        let [rows, d] = x.dims("swin block")?;
        let n = rows / batch;
        let t = self.tokens_per_window;
        let h = self.norm1.forward(x)?;
        let hw = match &self.order {
            Some((o, _)) => h.gather_rows(&swin::batched(o, n, batch))?,
            None => h,
        };
        let windows = rows / t;
        let q = self.q.forward(&hw)?.reshape([windows, t, d])?;
        let k = self.k.forward(&hw)?.reshape([windows, t, d])?;
        let v = self.v.forward(&hw)?.reshape([windows, t, d])?;
        let mut o = Sdpa::new(self.heads, 1.0 / ((d / self.heads) as f32).sqrt());
        let batch_stride = if self.bias_windows > 1 { self.heads * t * t } else { 0 };
        o.bias = Some(ScoreBias { tensor: &self.bias, batch_stride, head_stride: t * t, row_stride: t, batch_period: self.bias_windows });
        let a = q.sdpa_with(&k, &v, &o)?.reshape([rows, d])?;
        let a = self.proj.forward(&a)?;
        let a = match &self.order {
            Some((_, inv)) => a.gather_rows(&swin::batched(inv, n, batch))?,
            None => a,
        };
        let x = x.add(&a)?;
        let m = self.fc2.forward(&self.fc1.forward_act(&self.norm2.forward(&x)?, Act::Gelu)?)?;
        x.add(&m)
    }
}

/// PatchMerging: 2×2 neighbours concatenated, LayerNorm, Linear 4C → 2C (no bias).
struct Merge {
    norm: LayerNorm,
    reduction: Linear,
    order: Vec<u32>,
}

struct Stage {
    blocks: Vec<Block>,
    merge: Option<Merge>,
}

/// HTSAT (unfused, embedding path) + CLAP's `audio_projection`.
pub struct ClapAudio {
    pub config: AudioConfig,
    /// [2·bins, n_fft] f32: windowed DFT, real rows then imaginary rows.
    dft: Weight,
    /// [mel, 2·bins] f32: `melWᵀ` twice (sums re² and im²).
    mel: Weight,
    /// [mel]: 10/ln 10 · γ/√(σ² + ε), and β − μ·γ/√(σ² + ε) (log10 and bn0 folded).
    bn_scale: Tensor,
    bn_shift: Tensor,
    /// [target_frames, frames] f32 bicubic stretch; `None` when the sizes are equal.
    interp: Option<Weight>,
    patch: Linear,
    patch_norm: LayerNorm,
    stages: Vec<Stage>,
    norm: LayerNorm,
    projection_0: Linear,
    projection_2: Linear,
}

impl ClapAudio {
    /// Load from a view at CLAP's root (`cond_stage_model.model` of an AudioLDM pack), strictly
    /// over `audio_branch.*` and `audio_projection.*` (the layout of [`plan`]).
    pub fn load(w: &Weights, c: &AudioConfig) -> Result<ClapAudio> {
        c.check()?;
        let gpu = w.gpu();
        let ab = w.sub("audio_branch");
        let (bins, mel, nfft, eps) = (c.bins(), c.mel_bins, c.window_size, c.layer_norm_eps as f32);
        let dft = Weight::from_f32(gpu, &stft_basis(nfft), [2 * bins, nfft], WeightDtype::F32)?;
        let melw = ab.host("logmel_extractor.melW", &[bins * mel])?;
        let mut m = vec![0f32; mel * 2 * bins];
        for k in 0..bins {
            for j in 0..mel {
                let v = melw.data[k * mel + j];
                m[j * 2 * bins + k] = v;
                m[j * 2 * bins + bins + k] = v;
            }
        }
        let mel_w = Weight::from_f32(gpu, &m, [mel, 2 * bins], WeightDtype::F32)?;
        let bn = ab.sub("bn0");
        let [gamma, beta, mean, var] = ["weight", "bias", "running_mean", "running_var"].map(|n| bn.host(n, &[mel]));
        let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
        let log10_scale = 10.0 / std::f64::consts::LN_10;
        let mut scale = vec![0f32; mel];
        let mut shift = vec![0f32; mel];
        for i in 0..mel {
            let s = gamma.data[i] as f64 / (var.data[i] as f64 + c.bn_eps).sqrt();
            scale[i] = (log10_scale * s) as f32;
            shift[i] = (beta.data[i] as f64 - mean.data[i] as f64 * s) as f32;
        }
        let (frames, target) = (c.frames(), c.target_frames());
        let interp = if frames == target { None } else { Some(Weight::from_f32(gpu, &bicubic_matrix(frames, target), [target, frames], WeightDtype::F32)?) };
        let (p, e) = (c.patch_size, c.embed_dim);
        let pe = ab.sub("patch_embed");
        let patch = Linear { weight: pe.weight("proj.weight", &[e, 1, p, p])?, bias: Some(pe.tensor("proj.bias", &[e])?) };
        let patch_norm = LayerNorm::load(&pe.sub("norm"), e, eps)?;
        let stages_n = c.depths.len();
        let mut stages = Vec::with_capacity(stages_n);
        for s in 0..stages_n {
            let l = ab.sub(&format!("layers.{s}"));
            let blocks = (0..c.depths[s]).map(|b| Block::load(&l.sub(&format!("blocks.{b}")), c, s, b)).collect::<Result<Vec<_>>>()?;
            let merge = if s + 1 < stages_n {
                let d = c.dim(s);
                let ds = l.sub("downsample");
                Some(Merge {
                    norm: LayerNorm::load(&ds.sub("norm"), 4 * d, eps)?,
                    reduction: Linear::load(&ds.sub("reduction"), 4 * d, 2 * d, false)?,
                    order: swin::merge_order(c.grid(s), c.grid(s)),
                })
            } else {
                None
            };
            stages.push(Stage { blocks, merge });
        }
        let nf = c.num_features();
        let j = c.joint_embed_shape;
        let model = ClapAudio {
            dft,
            mel: mel_w,
            bn_scale: Tensor::from_slice(gpu, &scale, [mel])?,
            bn_shift: Tensor::from_slice(gpu, &shift, [mel])?,
            interp,
            patch,
            patch_norm,
            stages,
            norm: LayerNorm::load(&ab.sub("norm"), nf, eps)?,
            projection_0: Linear::load(&w.sub("audio_projection.0"), nf, j, true)?,
            projection_2: Linear::load(&w.sub("audio_projection.2"), j, j, true)?,
            config: c.clone(),
        };
        ab.finish()?;
        w.sub("audio_projection").finish()?;
        Ok(model)
    }

    /// Waveforms fitted to the clip length, [B, clip_samples] -> audio embeddings
    /// [B, joint_embed_shape] **before** L2 normalisation (`audio_projection(embedding)`).
    /// Trace names: `audio_branch.bn0` [B, 1, frames, mel] (log-mel after bn0),
    /// `audio_branch.image` [B, 1, spec, spec], `audio_branch.patch_embed` [B, N, C],
    /// `audio_branch.layers.<i>` [B, N_i, C_i] (after the stage's PatchMerging),
    /// `audio_branch.norm` [B, N, C], `embedding` [B, C] (HTSAT's token mean).
    pub fn forward(&self, wave: &Tensor, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        let c = &self.config;
        let [b, len] = wave.dims("clap audio")?;
        if len != c.clip_samples || b == 0 {
            return Err(Error::shape("clap audio", format!("waveform [B ≥ 1, {}] (fitted clips at {} Hz)", c.clip_samples, c.sample_rate), wave.shape()));
        }
        let mut rec = |name: &str, t: &Tensor| {
            if let Some(tr) = trace.as_deref_mut() {
                tr.push((name.to_string(), t.clone()));
            }
        };
        let (nfft, hop, mel, frames) = (c.window_size, c.hop_size, c.mel_bins, c.frames());
        // 1. STFT power: reflect-pad, frames by a strided copy, one matmul, squared.
        let half = nfft / 2;
        let padded = wave.pad(&[(0, 0), (half, half)], PadMode::Reflect)?;
        let plen = len + 2 * half;
        let fr = Tensor::empty(wave.gpu(), [b * frames, nfft])?;
        padded.strided_copy_into(&fr, &[b, frames, nfft], 0, &[plen, hop, 1], 0, &[frames * nfft, nfft, 1])?;
        let spec = fr.linear(&self.dft, None, Act::None)?.square()?;
        // 2. mel, log, bn0.
        let m = spec.linear(&self.mel, None, Act::None)?;
        debug_assert_eq!(m.shape(), [b * frames, mel]);
        let x = m.log_floor(1e-10)?.mul(&self.bn_scale)?.add(&self.bn_shift)?.reshape([b, 1, frames, mel])?;
        rec("audio_branch.bn0", &x);
        // 3. bicubic stretch along time, fold to the image.
        let xt = x.reshape([b, frames, mel])?.permute(&[0, 2, 1])?;
        let z = match &self.interp {
            Some(w) => xt.linear(w, None, Act::None)?,
            None => xt,
        };
        let (spec_n, ratio) = (c.spec_size, c.freq_ratio());
        let image = z.reshape([b, mel, ratio, spec_n])?.permute(&[0, 2, 1, 3])?.reshape([b, 1, spec_n, spec_n])?;
        rec("audio_branch.image", &image);
        // 4. PatchEmbed: p×p patches as rows, one Linear, LayerNorm.
        let (p, g) = (c.patch_size, c.grid(0));
        let patches = image.reshape([b, g, p, g, p])?.permute(&[0, 1, 3, 2, 4])?.reshape([b * g * g, p * p])?;
        let mut x = self.patch_norm.forward(&self.patch.forward(&patches)?)?;
        rec("audio_branch.patch_embed", &x.reshape([b, g * g, c.embed_dim])?);
        // 5. Swin stages.
        for (s, st) in self.stages.iter().enumerate() {
            for blk in &st.blocks {
                x = blk.forward(&x, b)?;
            }
            if let Some(mg) = &st.merge {
                let n = c.grid(s) * c.grid(s);
                let d = c.dim(s);
                let merged = x.gather_rows(&swin::batched(&mg.order, n, b))?.reshape([b * n / 4, 4 * d])?;
                x = mg.reduction.forward(&mg.norm.forward(&merged)?)?;
            }
            let (n, d) = if st.merge.is_some() { (c.grid(s + 1).pow(2), c.dim(s + 1)) } else { (c.grid(s).pow(2), c.dim(s)) };
            rec(&format!("audio_branch.layers.{s}"), &x.reshape([b, n, d])?);
        }
        // 6. LayerNorm, token mean, projection.
        let last = self.stages.len() - 1;
        let (n, nf) = (c.grid(last).pow(2), c.num_features());
        let x = self.norm.forward(&x)?.reshape([b, n, nf])?;
        rec("audio_branch.norm", &x);
        let emb = x.permute(&[0, 2, 1])?.mean_last()?;
        rec("embedding", &emb);
        let h = self.projection_0.forward_act(&emb, Act::Relu)?;
        self.projection_2.forward(&h)
    }

    /// `CLAP.get_audio_embedding` on fitted clips: [`ClapAudio::forward`] L2-normalised.
    /// wave: [B, clip_samples] -> [B, joint_embed_shape]
    pub fn embed(&self, wave: &Tensor) -> Result<Tensor> {
        self.forward(wave, None)?.l2_normalize()
    }

    /// Waveforms at the tower's sample rate (48 kHz), any lengths, fitted to a clip each
    /// ([`fit_clip`]: `offsets[i]` is the crop start of a longer waveform, 0 for the others)
    /// and uploaded as one batch: [B, clip_samples].
    pub fn clips(&self, waves: &[&[f32]], offsets: &[usize]) -> Result<Tensor> {
        let c = &self.config;
        if waves.is_empty() || offsets.len() != waves.len() {
            return Err(Error::arg("clap audio", format!("{} waveforms with {} crop offsets (one each, at least one)", waves.len(), offsets.len())));
        }
        let mut data = Vec::with_capacity(waves.len() * c.clip_samples);
        for (i, (w, &o)) in waves.iter().zip(offsets).enumerate() {
            data.extend(fit_clip(w, c.clip_samples, o, &format!("waveform {i}"))?);
        }
        let gpu = self.bn_scale.gpu();
        Tensor::from_slice(gpu, &data, [waves.len(), c.clip_samples])
    }

    /// Unit-norm audio embeddings of 48 kHz waveforms (AudioLDM's re-ranking and SSV2A's audio
    /// conditions): [`ClapAudio::clips`] then [`ClapAudio::embed`]. -> [B, joint_embed_shape]
    pub fn embed_waves(&self, waves: &[&[f32]], offsets: &[usize]) -> Result<Tensor> {
        self.embed(&self.clips(waves, offsets)?)
    }
}
