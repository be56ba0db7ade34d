//! The config of an AudioLDM v1 checkpoint, read from the checkpoint itself, so that every
//! release (s-full, s-full-v2, m-full, l-full, s/m-text-ft) and any other size converts without
//! a `--config`.
//!
//! Three sources, in this order of authority:
//! 1. **Tensor shapes** fix every width, depth and count they determine: the UNet's
//!    `model_channels`, `channel_mult`, `num_res_blocks`, where the attention blocks are
//!    (`attention_resolutions`), `transformer_depth`, in/out channels and the FiLM width; the VAE
//!    decoder's `ch`·`ch_mult` (with `ch` the greatest common divisor of the level widths unless a
//!    stated `ch` divides them all), `num_res_blocks`, `z_channels`, `embed_dim`, `out_ch` and
//!    its attention levels; HiFi-GAN's `upsample_initial_channel`, `upsample_kernel_sizes`,
//!    `resblock_kernel_sizes` and `num_mels`; the latent's channels and frequency bins.
//!    A stated value that disagrees is an error naming the tensor and the shape found.
//! 2. **Stated configs** ([`Stated`], first wins): `--config`, then the checkpoint's own
//!    (`hyper_parameters` of a Lightning checkpoint, i.e. `LatentDiffusion`'s arguments), for
//!    what shapes cannot show: the UNet's `num_head_channels`/`num_heads`, HiFi-GAN's
//!    `upsample_rates` (strides) and `resblock_dilation_sizes`, and the noise schedule.
//! 3. **The checkpoint's values and the released defaults**, each recorded in
//!    [`Resolution::notes`] (stored in the pack as `config_defaults`):
//!    - noise schedule: from the `betas` buffer when the checkpoint has it (T = its length,
//!      `linear_start`/`linear_end` = the shortest decimals that round to its first and last
//!      value, and every β must be LDM's linear schedule of those), else 1000, 0.0015, 0.0195
//!      (every AudioLDM v1 release);
//!    - `num_head_channels`: 64 when `model_channels` is 256 (audioldm-l-full), else 32
//!      (`default_audioldm_config` for every other release);
//!    - HiFi-GAN strides and dilations: `HIFIGAN_16K_64`'s ([5, 4, 2, 2, 2], [1, 3, 5] per
//!      kernel) when the kernels are its kernels — the vocoder every AudioLDM v1 checkpoint
//!      carries, since `get_vocoder` builds it whatever the config says; otherwise they must be
//!      stated.

use std::collections::BTreeSet;

use serde_json::{Map, Value as J};

use super::unet::UnetConfig;
use super::vae::VaeConfig;
use super::{AudioLdmConfig, DiffusionConfig};
use crate::convert::plan::TensorSource;
use crate::models::hifigan;
use crate::{Error, Result};

const UNET: &str = "model.diffusion_model";
const VAE: &str = "first_stage_model";
const VOCODER: &str = "first_stage_model.vocoder";

/// A config that states some values (e.g. `--config`, or a checkpoint's `hyper_parameters`), in
/// this crate's pack layout or AudioLDM's own (`unet_config.params`, `first_stage_config.params`,
/// vocoder `h`, LDM arguments at the top level, under `ldm` or under `model.params`).
pub struct Stated<'a> {
    /// For messages: "--config ldm.json", "the checkpoint's hyper_parameters".
    pub origin: String,
    pub json: &'a J,
}

/// The resolved config and where the values that are neither in the shapes nor stated came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    pub config: AudioLdmConfig,
    /// One line per value taken from the checkpoint's buffers or a released default.
    pub notes: Vec<String>,
}

/// The sections of one stated config.
struct Sections<'a> {
    origin: &'a str,
    unet: Option<&'a J>,
    vae: Option<&'a J>,
    vocoder: Option<&'a J>,
    diffusion: Option<&'a J>,
    clap_text: Option<&'a J>,
    clap_audio: Option<&'a J>,
}

fn some(v: Option<&J>) -> Option<&J> {
    v.filter(|x| x.is_object())
}

impl<'a> Sections<'a> {
    fn of(s: &'a Stated<'a>) -> Sections<'a> {
        let v = s.json;
        let root = v.pointer("/model/params").unwrap_or(v);
        Sections {
            origin: &s.origin,
            unet: some(root.get("unet")).or_else(|| some(root.pointer("/unet_config/params"))),
            vae: some(root.get("vae")).or_else(|| some(root.pointer("/first_stage_config/params"))),
            vocoder: some(root.get("h")).or_else(|| some(root.pointer("/vocoder/h"))).or_else(|| some(root.get("vocoder"))).or_else(|| some(v.get("h"))),
            diffusion: some(root.get("diffusion")).or_else(|| some(root.get("ldm"))).or(Some(root)),
            clap_text: some(root.get("clap_text")).or_else(|| some(v.get("clap_text"))),
            clap_audio: some(root.get("clap_audio")).or_else(|| some(v.get("clap_audio"))),
        }
    }
}

#[derive(Clone, Copy)]
enum Part {
    Unet,
    Vae,
    Vocoder,
    Diffusion,
}

impl Part {
    fn of<'a>(self, s: &Sections<'a>) -> Option<&'a J> {
        match self {
            Part::Unet => s.unet,
            Part::Vae => s.vae,
            Part::Vocoder => s.vocoder,
            Part::Diffusion => s.diffusion,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Part::Unet => "unet",
            Part::Vae => "vae",
            Part::Vocoder => "vocoder",
            Part::Diffusion => "diffusion",
        }
    }
}

/// The stated configs, first wins.
struct Given<'a> {
    list: Vec<Sections<'a>>,
}

impl<'a> Given<'a> {
    /// The first stated value of `part`'s `path` (`a/b`), with its origin.
    fn raw(&self, part: Part, path: &str) -> Option<(&'a J, &'a str)> {
        let ptr = format!("/{path}");
        self.list.iter().find_map(|s| part.of(s).and_then(|p| p.pointer(&ptr)).filter(|x| !x.is_null()).map(|x| (x, s.origin)))
    }

    fn get<T: serde::de::DeserializeOwned>(&self, part: Part, path: &str) -> Result<Option<(T, String)>> {
        match self.raw(part, path) {
            None => Ok(None),
            Some((v, origin)) => serde_json::from_value(v.clone())
                .map(|t| Some((t, origin.to_string())))
                .map_err(|e| Error::Format(format!("{origin}: {}.{}: {e}", part.name(), path.replace('/', ".")))),
        }
    }

    /// `part`'s stated keys merged (first wins), as a starting point for the resolved section.
    fn merged(&self, part: Part) -> Map<String, J> {
        let mut out = Map::new();
        for s in self.list.iter().rev() {
            if let Some(J::Object(m)) = part.of(s) {
                for (k, v) in m {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }
}

/// The checkpoint's tensors, with errors naming the file and the tensor.
struct Shapes<'a> {
    src: &'a dyn TensorSource,
}

impl Shapes<'_> {
    fn file(&self) -> String {
        self.src.describe()
    }

    /// The shape of `name` (or of its `weight_v`, for weight-normed vocoders).
    fn get(&self, name: &str) -> Option<Vec<usize>> {
        self.src.shape(name).or_else(|| name.strip_suffix(".weight").and_then(|b| self.src.shape(&format!("{b}.weight_v"))))
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn dims<const N: usize>(&self, name: &str) -> Result<[usize; N]> {
        let s = self.get(name).ok_or_else(|| Error::missing(self.file(), name))?;
        s.as_slice().try_into().map_err(|_| Error::Format(format!("{}: `{name}` has shape {s:?}, expected {N} dimensions", self.file())))
    }

    /// An error about `name`, whose shape was found to be `shape`.
    fn bad(&self, name: &str, msg: impl std::fmt::Display) -> Error {
        let shape = self.get(name).unwrap_or_default();
        Error::Format(format!("{}: `{name}` has shape {shape:?}: {msg}", self.file()))
    }

    /// The stated value of a field that shapes determine must agree with them.
    fn agree<T: PartialEq + std::fmt::Debug>(&self, field: &str, derived: &T, tensor: &str, stated: Option<(T, String)>) -> Result<()> {
        match stated {
            Some((s, origin)) if s != *derived => Err(self.bad(tensor, format!("so {field} is {derived:?}, but {origin} says {s:?}"))),
            _ => Ok(()),
        }
    }

    /// How many `format!(pattern with {i})` exist, from 0.
    fn count(&self, f: impl Fn(usize) -> String) -> usize {
        (0..).take_while(|&i| self.has(&f(i))).count()
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Whether the source holds a UNet, a VAE decoder, a vocoder.
pub fn has_unet(src: &dyn TensorSource) -> bool {
    src.contains(&format!("{UNET}.input_blocks.0.0.weight"))
}
pub fn has_vae(src: &dyn TensorSource) -> bool {
    src.contains(&format!("{VAE}.decoder.conv_in.weight"))
}
pub fn has_vocoder(src: &dyn TensorSource) -> bool {
    let s = Shapes { src };
    s.has(&format!("{VOCODER}.conv_pre.weight"))
}

/// Resolve the config of the AudioLDM checkpoint `src` (module docs). Parts the checkpoint does
/// not hold take the stated config's section, else the released s-full-v2's (the UNet: none).
pub fn resolve(src: &dyn TensorSource, stated: &[Stated]) -> Result<Resolution> {
    let given = Given { list: stated.iter().map(Sections::of).collect() };
    let sh = Shapes { src };
    let mut notes = vec![];
    let base = AudioLdmConfig::s_full_v2();
    let unet = if has_unet(src) {
        Some(resolve_unet(&sh, &given, &mut notes)?)
    } else {
        given.list.iter().find_map(|s| s.unet).map(UnetConfig::from_json).transpose()?
    };
    let vae = if has_vae(src) {
        resolve_vae(&sh, &given)?
    } else {
        match given.list.iter().find_map(|s| s.vae) {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::Format(format!("VAE config: {e}")))?,
            None => base.vae.clone(),
        }
    };
    let vocoder = if has_vocoder(src) {
        resolve_vocoder(&sh, &given, &mut notes)?
    } else {
        match given.list.iter().find_map(|s| s.vocoder) {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::Format(format!("vocoder config: {e}")))?,
            None => base.vocoder.clone(),
        }
    };
    let diffusion = resolve_diffusion(&sh, &given, unet.as_ref(), &vae, &vocoder, &mut notes)?;
    let clap_text = match given.list.iter().find_map(|s| s.clap_text) {
        Some(t) => Some(serde_json::from_value(t.clone()).map_err(|e| Error::Format(format!("clap_text config: {e}")))?),
        None => None,
    };
    let clap_audio = match given.list.iter().find_map(|s| s.clap_audio) {
        Some(t) => Some(serde_json::from_value(t.clone()).map_err(|e| Error::Format(format!("clap_audio config: {e}")))?),
        None => None,
    };
    let unet = unet.map(|u| serde_json::to_value(u).map_err(|e| Error::Format(e.to_string()))).transpose()?;
    Ok(Resolution { config: AudioLdmConfig { vae, vocoder, diffusion, unet, clap_text, clap_audio }, notes })
}

fn resolve_unet(sh: &Shapes, given: &Given, notes: &mut Vec<String>) -> Result<UnetConfig> {
    let t = |k: &str| format!("{UNET}.{k}");
    let g = |k: &str| given.get::<usize>(Part::Unet, k);
    let conv_in = t("input_blocks.0.0.weight");
    let [mc, in_ch, _, _] = sh.dims::<4>(&conv_in)?;
    let out = t("out.2.weight");
    let [out_ch, mc_out, _, _] = sh.dims::<4>(&out)?;
    if mc_out != mc {
        return Err(sh.bad(&out, format!("its input width should be model_channels {mc} (from `{conv_in}`)")));
    }
    let te = t("time_embed.0.weight");
    let [ted, mc_t] = sh.dims::<2>(&te)?;
    if mc_t != mc || ted != 4 * mc {
        return Err(sh.bad(&te, format!("expected [{}, {mc}] (4·model_channels, model_channels)", 4 * mc)));
    }
    let film = t("film_emb.weight");
    if !sh.has(&film) {
        return Err(Error::Format(format!("{}: no `{film}`: only FiLM conditioning (AudioLDM v1's `extra_film_condition_dim`) is implemented", sh.file())));
    }
    let [ted_f, film_dim] = sh.dims::<2>(&film)?;
    if ted_f != ted {
        return Err(sh.bad(&film, format!("expected {ted} rows (the time embedding's width)")));
    }
    // Input blocks: resblocks grouped into levels by the downsamplers.
    struct Level {
        width: usize,
        blocks: usize,
        attn: Vec<bool>,
        first: String,
    }
    let mut levels = vec![Level { width: 0, blocks: 0, attn: vec![], first: String::new() }];
    for i in 1.. {
        if sh.has(&t(&format!("input_blocks.{i}.0.op.weight"))) {
            levels.push(Level { width: 0, blocks: 0, attn: vec![], first: String::new() });
            continue;
        }
        let key = t(&format!("input_blocks.{i}.0.in_layers.2.weight"));
        if !sh.has(&key) {
            break;
        }
        let [cout, _, _, _] = sh.dims::<4>(&key)?;
        let emb = t(&format!("input_blocks.{i}.0.emb_layers.1.weight"));
        let [rows, emb_dim] = sh.dims::<2>(&emb)?;
        if rows == 2 * cout {
            return Err(sh.bad(&emb, "use_scale_shift_norm is not implemented (AudioLDM v1 does not use it)"));
        }
        if emb_dim != 2 * ted {
            return Err(sh.bad(&emb, format!("expected {} inputs: only FiLM by concatenation (extra_film_use_concat) is implemented", 2 * ted)));
        }
        let l = levels.last_mut().expect("one level at least");
        if l.blocks > 0 && l.width != cout {
            return Err(sh.bad(&key, format!("expected {} output channels, as the level's first block `{}`", l.width, l.first)));
        }
        if l.blocks == 0 {
            l.first = key.clone();
        }
        l.width = cout;
        l.blocks += 1;
        l.attn.push(sh.has(&t(&format!("input_blocks.{i}.1.proj_in.weight"))));
    }
    let nrb = levels[0].blocks;
    if nrb == 0 {
        return Err(Error::missing(sh.file(), t("input_blocks.1.0.in_layers.2.weight")));
    }
    let mut channel_mult = vec![];
    let mut attention_resolutions = vec![];
    for (l, lv) in levels.iter().enumerate() {
        if lv.blocks != nrb {
            return Err(Error::Format(format!(
                "{}: UNet level {l} has {} res blocks under input_blocks, level 0 has {nrb} (num_res_blocks is one number)",
                sh.file(),
                lv.blocks
            )));
        }
        if !lv.width.is_multiple_of(mc) {
            return Err(sh.bad(&lv.first, format!("{} channels are not a multiple of model_channels {mc}", lv.width)));
        }
        channel_mult.push(lv.width / mc);
        if lv.attn.iter().any(|&a| a != lv.attn[0]) {
            return Err(Error::Format(format!("{}: UNet level {l}: some blocks have a SpatialTransformer and some not", sh.file())));
        }
        if lv.attn[0] {
            attention_resolutions.push(1usize << l);
        }
    }
    let depth = sh.count(|b| t(&format!("middle_block.1.transformer_blocks.{b}.norm1.weight")));
    if depth == 0 {
        return Err(Error::Format(format!(
            "{}: no `{}`: only SpatialTransformer attention (use_spatial_transformer) is implemented",
            sh.file(),
            t("middle_block.1.transformer_blocks.0.norm1.weight")
        )));
    }
    let pin = t("middle_block.1.proj_in.weight");
    let [inner, _, _, _] = sh.dims::<4>(&pin)?;
    let k = t("middle_block.1.transformer_blocks.0.attn2.to_k.weight");
    let [_, ctx] = sh.dims::<2>(&k)?;
    if ctx != inner {
        return Err(sh.bad(
            &k,
            format!("attn2 attends to a {ctx}-wide context: cross-attention (context_dim) is not implemented; AudioLDM v1 runs attn2 as self-attention"),
        ));
    }
    sh.agree("in_channels", &in_ch, &conv_in, g("in_channels")?)?;
    sh.agree("model_channels", &mc, &conv_in, g("model_channels")?)?;
    sh.agree("out_channels", &out_ch, &out, g("out_channels")?)?;
    sh.agree("extra_film_condition_dim", &film_dim, &film, g("extra_film_condition_dim")?)?;
    let last_block = t(&format!("input_blocks.{}.0.in_layers.2.weight", levels.len() * (nrb + 1) - 1));
    sh.agree("channel_mult", &channel_mult, &last_block, given.get(Part::Unet, "channel_mult")?)?;
    sh.agree("num_res_blocks", &nrb, &last_block, g("num_res_blocks")?)?;
    let stated_attn = given.get::<Vec<usize>>(Part::Unet, "attention_resolutions")?.map(|(v, o)| (v.into_iter().collect::<BTreeSet<_>>(), o));
    let attn_set: BTreeSet<usize> = attention_resolutions.iter().copied().collect();
    if let Some((s, origin)) = stated_attn {
        // Levels that do not exist cannot hold attention; compare the ones that do.
        let s: BTreeSet<usize> = s.into_iter().filter(|ds| *ds < 1 << levels.len()).collect();
        if s != attn_set {
            return Err(Error::Format(format!(
                "{}: the UNet has SpatialTransformers at downsampling factors {attn_set:?} (input_blocks.*.1.proj_in), but {origin} says attention_resolutions {s:?}",
                sh.file()
            )));
        }
    }
    sh.agree("transformer_depth", &depth, &pin, g("transformer_depth")?)?;
    // A set; the releases list it from the deepest level ([8, 4, 2]).
    attention_resolutions.reverse();

    let mut m = given.merged(Part::Unet);
    let nhc = given.get::<i64>(Part::Unet, "num_head_channels")?;
    let nh = given.get::<i64>(Part::Unet, "num_heads")?;
    let heads_stated = nhc.as_ref().is_some_and(|(v, _)| *v > 0) || nh.as_ref().is_some_and(|(v, _)| *v > 0);
    if !heads_stated {
        let (v, why) = match mc {
            256 => (64, "audioldm-l-full's, for model_channels 256"),
            128 => (32, "audioldm-s-full(-v2)'s, for model_channels 128"),
            192 => (32, "audioldm-m-full's, for model_channels 192"),
            _ => (32, "AudioLDM's default_audioldm_config"),
        };
        m.insert("num_head_channels".into(), J::from(v));
        notes.push(format!("unet.num_head_channels = {v} ({why}; head counts are not in tensor shapes)"));
    }
    for (k, v) in [
        ("in_channels", J::from(in_ch)),
        ("out_channels", J::from(out_ch)),
        ("model_channels", J::from(mc)),
        ("num_res_blocks", J::from(nrb)),
        ("channel_mult", J::from(channel_mult)),
        ("attention_resolutions", J::from(attention_resolutions)),
        ("transformer_depth", J::from(depth)),
        ("extra_film_condition_dim", J::from(film_dim)),
        ("extra_film_use_concat", J::from(true)),
        ("use_spatial_transformer", J::from(true)),
    ] {
        m.insert(k.into(), v);
    }
    m.remove("context_dim");
    UnetConfig::from_json(&J::Object(m)).map_err(|e| Error::Format(format!("{}: {e}", sh.file())))
}

fn resolve_vae(sh: &Shapes, given: &Given) -> Result<VaeConfig> {
    let t = |k: &str| format!("{VAE}.{k}");
    let g = |k: &str| given.get::<usize>(Part::Vae, k);
    let pq = t("post_quant_conv.weight");
    let [z_channels, embed_dim, _, _] = sh.dims::<4>(&pq)?;
    let conv_in = t("decoder.conv_in.weight");
    let [top, zc, _, _] = sh.dims::<4>(&conv_in)?;
    if zc != z_channels {
        return Err(sh.bad(&conv_in, format!("expected {z_channels} inputs (z_channels, from `{pq}`)")));
    }
    let levels = sh.count(|l| t(&format!("decoder.up.{l}.block.0.conv1.weight")));
    if levels == 0 {
        return Err(Error::missing(sh.file(), t("decoder.up.0.block.0.conv1.weight")));
    }
    let blocks = sh.count(|j| t(&format!("decoder.up.0.block.{j}.conv1.weight")));
    let mut widths = vec![];
    let mut attn_levels = vec![];
    for l in 0..levels {
        let n = sh.count(|j| t(&format!("decoder.up.{l}.block.{j}.conv1.weight")));
        if n != blocks {
            return Err(Error::Format(format!(
                "{}: VAE decoder level {l} has {n} blocks (decoder.up.{l}.block.*), level 0 has {blocks} (num_res_blocks + 1 is one number)",
                sh.file()
            )));
        }
        let key = t(&format!("decoder.up.{l}.block.0.conv2.weight"));
        let [w, _, _, _] = sh.dims::<4>(&key)?;
        widths.push(w);
        let a = sh.count(|j| t(&format!("decoder.up.{l}.attn.{j}.q.weight")));
        if a != 0 && a != blocks {
            return Err(Error::Format(format!("{}: VAE decoder level {l} has attention after {a} of its {blocks} blocks", sh.file())));
        }
        if a != 0 {
            attn_levels.push(l);
        }
    }
    if top != widths[levels - 1] {
        return Err(sh.bad(&conv_in, format!("expected {} outputs (the width of decoder.up.{})", widths[levels - 1], levels - 1)));
    }
    let conv_out = t("decoder.conv_out.weight");
    let [out_ch, _, _, _] = sh.dims::<4>(&conv_out)?;
    let w0 = t("decoder.up.0.block.0.conv2.weight");
    let stated_ch = g("ddconfig/ch")?;
    let ch = match &stated_ch {
        Some((c, _)) if *c > 0 && widths.iter().all(|w| w.is_multiple_of(*c)) => *c,
        Some((c, origin)) => return Err(sh.bad(&w0, format!("the decoder's level widths {widths:?} are not multiples of ch {c} ({origin})"))),
        None => widths.iter().fold(0, |a, &w| gcd(a, w)),
    };
    let ch_mult: Vec<usize> = widths.iter().map(|w| w / ch).collect();
    sh.agree("ddconfig.ch_mult", &ch_mult, &w0, given.get(Part::Vae, "ddconfig/ch_mult")?)?;
    sh.agree("ddconfig.num_res_blocks", &(blocks - 1), &w0, g("ddconfig/num_res_blocks")?)?;
    sh.agree("ddconfig.z_channels", &z_channels, &pq, g("ddconfig/z_channels")?)?;
    sh.agree("embed_dim", &embed_dim, &pq, g("embed_dim")?)?;
    sh.agree("ddconfig.out_ch", &out_ch, &conv_out, g("ddconfig/out_ch")?)?;
    let resolution = g("ddconfig/resolution")?.map(|(r, _)| r).unwrap_or(256);
    // Level l runs at resolution / 2^l (`Decoder.__init__`'s curr_res).
    let attn_resolutions: Vec<usize> = attn_levels.iter().map(|&l| resolution >> l).collect();
    if let Some((s, origin)) = given.get::<Vec<usize>>(Part::Vae, "ddconfig/attn_resolutions")? {
        let s: BTreeSet<usize> = s.into_iter().filter(|r| (0..levels).any(|l| resolution >> l == *r)).collect();
        if s != attn_resolutions.iter().copied().collect() {
            return Err(Error::Format(format!(
                "{}: the VAE decoder has attention at resolutions {attn_resolutions:?} (decoder.up.*.attn), but {origin} says attn_resolutions {s:?}",
                sh.file()
            )));
        }
    }
    let mut dd = given.merged(Part::Vae).get("ddconfig").and_then(|d| d.as_object().cloned()).unwrap_or_default();
    for (k, v) in [
        ("ch", J::from(ch)),
        ("ch_mult", J::from(ch_mult)),
        ("num_res_blocks", J::from(blocks - 1)),
        ("z_channels", J::from(z_channels)),
        ("out_ch", J::from(out_ch)),
        ("resolution", J::from(resolution)),
        ("attn_resolutions", J::from(attn_resolutions)),
    ] {
        dd.insert(k.into(), v);
    }
    let v = serde_json::json!({"ddconfig": dd, "embed_dim": embed_dim});
    serde_json::from_value(v).map_err(|e| Error::Format(format!("{}: VAE config: {e}", sh.file())))
}

fn resolve_vocoder(sh: &Shapes, given: &Given, notes: &mut Vec<String>) -> Result<hifigan::Config> {
    let t = |k: &str| format!("{VOCODER}.{k}");
    let pre = t("conv_pre.weight");
    let [c0, num_mels, _] = sh.dims::<3>(&pre)?;
    let stages = sh.count(|i| t(&format!("ups.{i}.weight")));
    if stages == 0 {
        return Err(Error::missing(sh.file(), t("ups.0.weight")));
    }
    let mut kernels = vec![];
    for i in 0..stages {
        let key = t(&format!("ups.{i}.weight"));
        let [cin, cout, k] = sh.dims::<3>(&key)?;
        if cin != c0 >> i || cout != c0 >> (i + 1) {
            return Err(sh.bad(&key, format!("expected [{}, {}, k]: each stage halves upsample_initial_channel {c0}", c0 >> i, c0 >> (i + 1))));
        }
        kernels.push(k);
    }
    if sh.has(&t("resblocks.0.convs.0.weight")) {
        return Err(sh.bad(&t("resblocks.0.convs.0.weight"), "HiFi-GAN resblock type \"2\" is not implemented (AudioLDM's vocoder uses \"1\")"));
    }
    let total = sh.count(|j| t(&format!("resblocks.{j}.convs1.0.weight")));
    if total == 0 || !total.is_multiple_of(stages) {
        return Err(Error::Format(format!("{}: the vocoder has {total} resblocks for {stages} upsampling stages (expected a multiple)", sh.file())));
    }
    let nk = total / stages;
    let mut rk = vec![];
    let mut n_dil = 0;
    for j in 0..total {
        let key = t(&format!("resblocks.{j}.convs1.0.weight"));
        let [c, _, k] = sh.dims::<3>(&key)?;
        let ch = c0 >> (j / nk + 1);
        if c != ch {
            return Err(sh.bad(&key, format!("expected {ch} channels (stage {})", j / nk)));
        }
        if j < nk {
            rk.push(k);
            n_dil = sh.count(|d| t(&format!("resblocks.{j}.convs1.{d}.weight")));
        } else if k != rk[j % nk] {
            return Err(sh.bad(&key, format!("expected kernel {} (the same kernels at every stage)", rk[j % nk])));
        }
    }
    let post = t("conv_post.weight");
    let [one, cl, _] = sh.dims::<3>(&post)?;
    if one != 1 || cl != c0 >> stages {
        return Err(sh.bad(&post, format!("expected [1, {}, 7]", c0 >> stages)));
    }
    let g = |k: &str| given.get::<usize>(Part::Vocoder, k);
    sh.agree("vocoder.upsample_initial_channel", &c0, &pre, g("upsample_initial_channel")?)?;
    sh.agree("vocoder.num_mels", &num_mels, &pre, g("num_mels")?)?;
    let last_up = t(&format!("ups.{}.weight", stages - 1));
    sh.agree("vocoder.upsample_kernel_sizes", &kernels, &last_up, given.get(Part::Vocoder, "upsample_kernel_sizes")?)?;
    sh.agree("vocoder.resblock_kernel_sizes", &rk, &t(&format!("resblocks.{}.convs1.0.weight", nk - 1)), given.get(Part::Vocoder, "resblock_kernel_sizes")?)?;
    let released = hifigan::Config::audioldm_16k_64();
    let rates = match given.get::<Vec<usize>>(Part::Vocoder, "upsample_rates")? {
        Some((r, origin)) if r.len() != stages => return Err(sh.bad(&last_up, format!("the vocoder has {stages} upsampling stages, but {origin} gives upsample_rates {r:?}"))),
        Some((r, _)) => r,
        None if kernels == released.upsample_kernel_sizes => {
            notes.push(format!("vocoder.upsample_rates = {:?} (HIFIGAN_16K_64's, whose kernels these are; strides are not in tensor shapes)", released.upsample_rates));
            released.upsample_rates.clone()
        }
        None => {
            return Err(Error::Format(format!(
                "{}: the vocoder's upsampling kernels {kernels:?} (ups.*.weight) are not HIFIGAN_16K_64's {:?}, and its strides are not in tensor shapes: give h.upsample_rates in --config",
                sh.file(),
                released.upsample_kernel_sizes
            )))
        }
    };
    let dilations = match given.get::<Vec<Vec<usize>>>(Part::Vocoder, "resblock_dilation_sizes")? {
        Some((d, origin)) if d.len() != nk || d.iter().any(|x| x.len() != n_dil) => {
            return Err(Error::Format(format!(
                "{}: the vocoder has {nk} resblocks per stage with {n_dil} dilated convs each (resblocks.*.convs1.*), but {origin} gives resblock_dilation_sizes {d:?}",
                sh.file()
            )))
        }
        Some((d, _)) => d,
        None if n_dil == 3 => {
            notes.push(format!("vocoder.resblock_dilation_sizes = [1, 3, 5] for each of the {nk} kernels (HIFIGAN_16K_64's and ResBlock1's; dilations are not in tensor shapes)"));
            vec![vec![1, 3, 5]; nk]
        }
        None => {
            return Err(Error::Format(format!(
                "{}: the vocoder's resblocks have {n_dil} dilated convs (ResBlock1 has 3), and dilations are not in tensor shapes: give h.resblock_dilation_sizes in --config",
                sh.file()
            )))
        }
    };
    let c = hifigan::Config {
        resblock: "1".into(),
        upsample_rates: rates,
        upsample_kernel_sizes: kernels,
        upsample_initial_channel: c0,
        resblock_kernel_sizes: rk,
        resblock_dilation_sizes: dilations,
        num_mels,
    };
    if c.upsample_rates.iter().zip(&c.upsample_kernel_sizes).any(|(&u, &k)| u == 0 || k < u) {
        return Err(Error::Format(format!(
            "{}: vocoder upsample_rates {:?} do not fit kernels {:?} (need 0 < u ≤ k)",
            sh.file(),
            c.upsample_rates,
            c.upsample_kernel_sizes
        )));
    }
    Ok(c)
}

/// The shortest decimal that rounds to `x` (f32), as f64: `0.0015f32` → 0.0015.
fn shortest(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(x as f64)
}

fn resolve_diffusion(
    sh: &Shapes,
    given: &Given,
    unet: Option<&UnetConfig>,
    vae: &VaeConfig,
    vocoder: &hifigan::Config,
    notes: &mut Vec<String>,
) -> Result<DiffusionConfig> {
    let d = DiffusionConfig::default();
    let g = |k: &str| given.get::<usize>(Part::Diffusion, k);
    let (have_unet, have_vae, have_voc) = (unet.is_some() && has_unet(sh.src), has_vae(sh.src), has_vocoder(sh.src));
    // Latent channels: the UNet's in/out and the VAE's embed_dim.
    let channels = if let Some(u) = unet.filter(|_| have_unet) {
        let out = format!("{UNET}.out.2.weight");
        if u.out_channels != u.in_channels {
            return Err(sh.bad(&out, format!("the UNet predicts {} channels from {} (in_channels ≠ out_channels)", u.out_channels, u.in_channels)));
        }
        if have_vae && vae.embed_dim != u.in_channels {
            return Err(sh.bad(
                &format!("{VAE}.post_quant_conv.weight"),
                format!("the VAE decodes {}-channel latents but the UNet makes {} (`{out}`)", vae.embed_dim, u.in_channels),
            ));
        }
        sh.agree("channels", &u.in_channels, &format!("{UNET}.input_blocks.0.0.weight"), g("channels")?)?;
        u.in_channels
    } else if have_vae {
        sh.agree("channels", &vae.embed_dim, &format!("{VAE}.post_quant_conv.weight"), g("channels")?)?;
        vae.embed_dim
    } else {
        g("channels")?.map(|(c, _)| c).unwrap_or(d.channels)
    };
    // Latent frequency bins: the vocoder's mels over the VAE's upsampling.
    let up = 1usize << (vae.ddconfig.ch_mult.len().max(1) - 1);
    let latent_f_size = if have_vae && have_voc {
        let pre = format!("{VOCODER}.conv_pre.weight");
        if !vocoder.num_mels.is_multiple_of(up) {
            return Err(sh.bad(&pre, format!("{} mel bins cannot come from the VAE decoder, which upsamples by {up}", vocoder.num_mels)));
        }
        let f = vocoder.num_mels / up;
        sh.agree("latent_f_size", &f, &pre, g("latent_f_size")?)?;
        f
    } else {
        g("latent_f_size")?.map(|(c, _)| c).unwrap_or(d.latent_f_size)
    };
    // The noise schedule.
    let t = g("timesteps")?;
    let s = given.get::<f64>(Part::Diffusion, "linear_start")?;
    let e = given.get::<f64>(Part::Diffusion, "linear_end")?;
    let betas = match sh.src.shape("betas") {
        Some(shape) if shape.len() == 1 && shape[0] >= 2 => Some(sh.src.read_f32("betas")?),
        Some(_) => return Err(sh.bad("betas", "expected one dimension of at least 2 timesteps")),
        None => None,
    };
    let (timesteps, linear_start, linear_end) = match &betas {
        Some(b) => {
            let n = b.len();
            let tt = t.as_ref().map(|x| x.0).unwrap_or(n);
            sh.agree("timesteps", &n, "betas", t.clone())?;
            let ls = s.as_ref().map(|x| x.0).unwrap_or_else(|| shortest(b[0]));
            let le = e.as_ref().map(|x| x.0).unwrap_or_else(|| shortest(b[n - 1]));
            if !(ls > 0.0 && ls <= le && le < 1.0) {
                return Err(Error::Format(format!("{}: `betas` runs from {ls} to {le}: not a noise schedule (0 < β_start ≤ β_end < 1)", sh.file())));
            }
            let want = super::sampler::ldm_linear_betas(tt, ls, le);
            if let Some(i) = (0..n).find(|&i| ((want[i] as f32) - b[i]).abs() > 1e-6 * b[i].abs().max(1e-12)) {
                let from = [(&s, "linear_start"), (&e, "linear_end")]
                    .iter()
                    .filter_map(|(x, k)| x.as_ref().map(|(_, o)| format!("{k} from {o}")))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Error::Format(format!(
                    "{}: `betas` is not LDM's linear schedule from {ls} to {le}{}: β[{i}] is {} where that schedule has {}",
                    sh.file(),
                    if from.is_empty() { String::new() } else { format!(" ({from})") },
                    b[i],
                    want[i] as f32
                )));
            }
            if s.is_none() || e.is_none() || t.is_none() {
                notes.push(format!("diffusion: timesteps {tt}, linear_start {ls}, linear_end {le} (from the checkpoint's `betas`)"));
            }
            (tt, ls, le)
        }
        None => {
            let all_stated = t.is_some() && s.is_some() && e.is_some();
            let v = (t.map(|x| x.0).unwrap_or(d.timesteps), s.map(|x| x.0).unwrap_or(d.linear_start), e.map(|x| x.0).unwrap_or(d.linear_end));
            if !all_stated {
                notes.push(format!(
                    "diffusion: timesteps {}, linear_start {}, linear_end {} (every AudioLDM v1 release's; no `betas` in the checkpoint)",
                    v.0, v.1, v.2
                ));
            }
            v
        }
    };
    Ok(DiffusionConfig { timesteps, linear_start, linear_end, channels, latent_f_size })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::models::audioldm::{unet, vae};

    /// A checkpoint that has only shapes (values are never read: no `betas`).
    struct ShapesOnly(BTreeMap<String, Vec<usize>>);

    impl TensorSource for ShapesOnly {
        fn names(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
        fn shape(&self, name: &str) -> Option<Vec<usize>> {
            self.0.get(name).cloned()
        }
        fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
            Err(Error::Format(format!("no values for {name}")))
        }
        fn describe(&self) -> String {
            "shapes".into()
        }
    }

    /// A released model: `default_audioldm_config(name)` (audioldm 0.1.1 utils.py).
    fn released(model_channels: usize, num_head_channels: i64) -> AudioLdmConfig {
        let mut c = AudioLdmConfig::s_full_v2();
        let mut u = UnetConfig::s_full_v2();
        u.model_channels = model_channels;
        u.num_head_channels = num_head_channels;
        c.unet = Some(serde_json::to_value(u).unwrap());
        c
    }

    fn checkpoint_of(c: &AudioLdmConfig) -> ShapesOnly {
        let u = UnetConfig::from_json(c.unet.as_ref().unwrap()).unwrap();
        let mut m = BTreeMap::new();
        for (k, s) in unet::param_shapes(&u).unwrap() {
            m.insert(format!("{UNET}.{k}"), s);
        }
        for (k, s) in vae::param_shapes(&c.vae) {
            m.insert(format!("{VAE}.{k}"), s);
        }
        for (k, s) in hifigan::param_shapes(&c.vocoder) {
            m.insert(format!("{VOCODER}.{k}"), s);
        }
        m.insert("scale_factor".into(), vec![]);
        ShapesOnly(m)
    }

    #[test]
    fn every_release_resolves_from_its_shapes_alone() {
        // s-full / s-full-v2 / s-text-ft: 128 channels; m-full / m-text-ft: 192; l-full: 256 with
        // 64-wide heads.
        for (mc, nhc) in [(128, 32), (192, 32), (256, 64)] {
            let want = released(mc, nhc);
            let r = resolve(&checkpoint_of(&want), &[]).unwrap();
            let got_u = UnetConfig::from_json(r.config.unet.as_ref().unwrap()).unwrap();
            assert_eq!(got_u, UnetConfig::from_json(want.unet.as_ref().unwrap()).unwrap(), "{mc}");
            assert_eq!((&r.config.vae, &r.config.vocoder, &r.config.diffusion), (&want.vae, &want.vocoder, &want.diffusion), "{mc}");
            assert!(r.notes.iter().any(|n| n.contains(&format!("num_head_channels = {nhc}"))), "{:?}", r.notes);
        }
        // A narrower VAE (the error this module replaces: conv_in [256, 8, 3, 3]).
        let mut c = AudioLdmConfig::s_full_v2();
        c.vae.ddconfig.ch = 64;
        let r = resolve(&checkpoint_of(&c), &[]).unwrap();
        assert_eq!(r.config.vae, c.vae);
        // A stated head width wins over the rule; a stated width the shapes contradict fails.
        let given = serde_json::json!({"unet_config": {"params": {"num_head_channels": 64}}});
        let r = resolve(&checkpoint_of(&released(128, 32)), &[Stated { origin: "--config".into(), json: &given }]).unwrap();
        assert_eq!(UnetConfig::from_json(r.config.unet.as_ref().unwrap()).unwrap().num_head_channels, 64);
        let given = serde_json::json!({"unet_config": {"params": {"channel_mult": [1, 2, 4, 4]}}});
        let err = resolve(&checkpoint_of(&released(128, 32)), &[Stated { origin: "--config".into(), json: &given }]).unwrap_err().to_string();
        assert!(err.contains("input_blocks.11.0.in_layers.2.weight") && err.contains("[640, 640, 3, 3]") && err.contains("[1, 2, 4, 4]"), "{err}");
    }
}
