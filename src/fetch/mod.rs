//! From the official checkpoints to installed packs: `ssv2a fetch` and `ssv2a models`
//! (native only, feature `fetch`).
//!
//! - [`manifest`]: one TOML file per model in `models/` (sources, sha256, licence, conversion).
//! - [`http`]: downloads into `.partial` files, resumed with HTTP range requests, verified
//!   against the manifest's sha256/size before anything is installed.
//! - [`hub`]: Hugging Face files live in the standard hub cache, shared with Python tools.
//! - [`Fetcher::fetch`] gets every file of a model (cache, reuse, download, or instructions for
//!   files that must be downloaded by hand) and converts with
//!   [`crate::registry::convert_checkpoint`], the code path of `ssv2a convert`.
//! - [`Fetcher::status`] says whether a model's pack is installed, missing or stale.
//!
//! Where things go (see `models/README.md`):
//!
//! | what | where | override |
//! |---|---|---|
//! | packs | `~/.cache/ssv2a/models/<pack>.safetensors` | `SSV2A_MODELS`, `--models-dir` |
//! | downloaded and by-hand source files | `<models>/sources/<model>/<file>` | |
//! | Hugging Face files | `~/.cache/huggingface/hub/models--org--name/…` | `HF_HUB_CACHE`, `HF_HOME` |
//! | Hugging Face server | `https://huggingface.co` | `HF_ENDPOINT` |
//! | every non-Hugging-Face file | its official URL | `SSV2A_MIRROR`, `--mirror`: `<mirror>/<model>/<file>` |

pub mod http;
pub mod hub;
pub mod manifest;
pub mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use http::{Downloader, Expect};
pub use hub::HubCache;
pub use manifest::{FileSpec, Manifest, SourceKind};
pub use status::{ModelStatus, State};

use crate::registry::{convert_checkpoint, is_convertible, ConvertJob};
use crate::{Error, Result};

/// The manifests `ssv2a fetch [NAMES…] [--audioldm s|m|l]` installs, in `manifests`' order.
/// Without names: every manifest except the AudioLDM releases not chosen
/// ([`crate::registry::AUDIOLDM_RELEASES`]; `audioldm` None = `s`, so a plain `ssv2a fetch`
/// installs what it always did). With names: those, plus the chosen release when `audioldm` is
/// given. Unknown names, an unknown release, or a release without a manifest are errors.
pub fn select<'a>(manifests: &'a [Manifest], names: &[String], audioldm: Option<&str>) -> Result<Vec<&'a Manifest>> {
    use crate::registry::{audioldm_manifest, AUDIOLDM_RELEASES};
    let known = || manifests.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
    let chosen = audioldm.map(audioldm_manifest).transpose()?;
    if let Some(c) = chosen {
        if !manifests.iter().any(|m| m.name == c) {
            return Err(Error::arg("--audioldm", format!("no manifest `{c}` (known: {})", known())));
        }
    }
    if names.is_empty() {
        let keep = chosen.unwrap_or(AUDIOLDM_RELEASES[0].1);
        return Ok(manifests.iter().filter(|m| m.name == keep || !AUDIOLDM_RELEASES.iter().any(|(_, r)| *r == m.name)).collect());
    }
    let mut out: Vec<&Manifest> = vec![];
    for name in names.iter().map(String::as_str).chain(chosen) {
        let m = manifests.iter().find(|m| m.name == name).ok_or_else(|| Error::Format(format!("unknown model `{name}` (known: {})", known())))?;
        if !out.iter().any(|o| o.name == m.name) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Progress reports. The CLI draws bars; tests and libraries can ignore them ([`Quiet`]).
pub trait Progress {
    /// A line for the user.
    fn note(&mut self, msg: &str);
    /// A byte-counted task starts (a download or a checksum): `total` if known, `done` so far.
    fn start(&mut self, label: &str, total: Option<u64>, done: u64);
    fn advance(&mut self, done: u64);
    fn finish(&mut self);
}

/// Ignores every report.
pub struct Quiet;

impl Progress for Quiet {
    fn note(&mut self, _: &str) {}
    fn start(&mut self, _: &str, _: Option<u64>, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// A file the user has to download by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandFile {
    pub model: String,
    pub name: String,
    /// Exactly where to put it.
    pub dest: PathBuf,
    pub page: String,
    pub instructions: String,
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

impl std::fmt::Display for HandFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: `{}` must be downloaded by hand.", self.model, self.name)?;
        writeln!(f, "  1. Open {}", self.page)?;
        for line in self.instructions.trim().lines() {
            writeln!(f, "     {}", line.trim())?;
        }
        writeln!(f, "  2. Put the file at {}", self.dest.display())?;
        let size = self.size.map(|n| format!("{n} bytes, ")).unwrap_or_default();
        match &self.sha256 {
            Some(s) => writeln!(f, "     (it must be {size}sha256 {s})")?,
            None => writeln!(f, "     (no published sha256: the file's own is recorded in the pack)")?,
        }
        write!(f, "  3. Run `ssv2a fetch {}` again.", self.model)
    }
}

/// A source file's state after [`Fetcher::ensure_file`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileState {
    /// Present and verified (where the manifest knows the sha256/size).
    Ready { path: PathBuf, sha256: String },
    /// Must be downloaded by hand first.
    ByHand(HandFile),
}

/// What [`Fetcher::fetch`] did for one model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The pack was already installed and up to date; nothing was downloaded.
    AlreadyInstalled { pack: PathBuf },
    /// The pack was converted and installed.
    Installed { pack: PathBuf, tensors: usize, bytes: u64 },
    /// Some files must be downloaded by hand; the others are ready.
    NeedsFilesByHand(Vec<HandFile>),
    /// Every file is downloaded and verified, but this build cannot convert the kind yet.
    NotConvertible { kind: String, files: Vec<PathBuf> },
}

/// Settings and the HTTP client for fetching models.
pub struct Fetcher {
    /// Where packs go; source files go to `<models_dir>/sources/<model>/`.
    pub models_dir: PathBuf,
    pub hub: HubCache,
    /// Hugging Face server (`HF_ENDPOINT`).
    pub hf_endpoint: String,
    /// If set, every non-Hugging-Face file is downloaded from `<mirror>/<model>/<file>` instead
    /// of its official URLs (by-hand files too, when the mirror has them).
    pub mirror: Option<String>,
    pub http: Downloader,
}

/// The user's cache folder: `$XDG_CACHE_HOME`, else `~/.cache` (`%LOCALAPPDATA%` on Windows).
fn cache_home() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if cfg!(windows) {
        return env("LOCALAPPDATA");
    }
    env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os(if cfg!(windows) { "USERPROFILE" } else { "HOME" }).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `~/x` → `$HOME/x`.
pub fn expand_home(p: &str) -> Option<PathBuf> {
    match p.strip_prefix("~/") {
        Some(rest) => home_dir().map(|h| h.join(rest)),
        None => Some(PathBuf::from(p)),
    }
}

/// The default models folder: `$SSV2A_MODELS`, else `<cache>/ssv2a/models`.
pub fn default_models_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("SSV2A_MODELS").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    cache_home().map(|c| c.join("ssv2a").join("models")).ok_or_else(|| Error::Format("no home folder to put models in: set SSV2A_MODELS to a folder".into()))
}

/// The hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `<cache>/huggingface/hub`.
pub fn default_hub_cache() -> Result<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = env("HF_HUB_CACHE") {
        return Ok(d);
    }
    if let Some(d) = env("HF_HOME") {
        return Ok(d.join("hub"));
    }
    cache_home().map(|c| c.join("huggingface").join("hub")).ok_or_else(|| Error::Format("no home folder for the Hugging Face cache: set HF_HOME".into()))
}

impl Fetcher {
    /// Explicit folders; Hugging Face's public endpoint, no mirror.
    pub fn new(models_dir: impl Into<PathBuf>, hub_cache: impl Into<PathBuf>) -> Fetcher {
        Fetcher {
            models_dir: models_dir.into(),
            hub: HubCache::new(hub_cache),
            hf_endpoint: "https://huggingface.co".into(),
            mirror: None,
            http: Downloader::new(),
        }
    }

    /// Folders and servers from the environment (`SSV2A_MODELS`, `HF_HUB_CACHE`/`HF_HOME`,
    /// `HF_ENDPOINT`, `SSV2A_MIRROR`), with the defaults above.
    pub fn from_env() -> Result<Fetcher> {
        let mut f = Fetcher::new(default_models_dir()?, default_hub_cache()?);
        if let Some(e) = std::env::var("HF_ENDPOINT").ok().filter(|v| !v.is_empty()) {
            f.hf_endpoint = e;
        }
        f.mirror = std::env::var("SSV2A_MIRROR").ok().filter(|v| !v.is_empty());
        Ok(f)
    }

    /// `<models_dir>/sources/<model>`.
    pub fn sources_dir(&self, m: &Manifest) -> PathBuf {
        self.models_dir.join("sources").join(&m.name)
    }

    pub fn pack_path(&self, m: &Manifest) -> PathBuf {
        self.models_dir.join(&m.convert.pack)
    }

    /// Where a file is, or would be, without any network access.
    pub fn local_file(&self, m: &Manifest, f: &FileSpec) -> Option<PathBuf> {
        if let SourceKind::Hf(src) = f.source() {
            return self.hub.cached(src);
        }
        let dest = self.sources_dir(m).join(&f.name);
        if dest.is_file() {
            return Some(dest);
        }
        f.reuse.iter().filter_map(|r| expand_home(r)).find(|p| p.is_file())
    }

    /// Make one source file present and verified: from the hub cache, the sources folder, a
    /// reuse location, or a download; by-hand files come back as instructions unless present
    /// (or on the mirror).
    pub fn ensure_file(&self, m: &Manifest, f: &FileSpec, progress: &mut dyn Progress) -> Result<FileState> {
        let expect = Expect { sha256: f.sha256(), size: f.size };
        let label = format!("{}/{}", m.name, f.name);
        if let SourceKind::Hf(src) = f.source() {
            if let Some(p) = self.hub.cached(src) {
                let sha = check_existing(&p, f, &label, progress)?
                    .map_err(|msg| Error::Format(format!("{}: {msg}; delete it to download the file again", p.display())))?;
                progress.note(&format!("{label}: using {} (Hugging Face cache)", p.display()));
                return Ok(FileState::Ready { path: p, sha256: sha });
            }
            let tmp = self.hub.download_path(src);
            let url = hub::resolve_url(&self.hf_endpoint, src);
            let d = self.http.download(&[url], &tmp, expect, &label, progress)?;
            let p = self.hub.store(src, d.meta.repo_commit.as_deref(), d.meta.etag.as_deref(), &d.sha256, &tmp).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })?;
            return Ok(FileState::Ready { path: p, sha256: d.sha256 });
        }
        let dest = self.sources_dir(m).join(&f.name);
        if dest.is_file() {
            match check_existing(&dest, f, &label, progress)? {
                Ok(sha) => return Ok(FileState::Ready { path: dest, sha256: sha }),
                Err(msg) => {
                    if let SourceKind::ByHand(_) = f.source() {
                        return Err(Error::Format(format!("{}: {msg}; replace it with the official file", dest.display())));
                    }
                    progress.note(&format!("{}: {msg}; downloading it again", dest.display()));
                    std::fs::remove_file(&dest).map_err(|e| Error::io(format!("removing {}", dest.display()), e))?;
                }
            }
        }
        for p in f.reuse.iter().filter_map(|r| expand_home(r)).filter(|p| p.is_file()) {
            match check_existing(&p, f, &label, progress)? {
                Ok(sha) => {
                    progress.note(&format!("{label}: using {}", p.display()));
                    return Ok(FileState::Ready { path: p, sha256: sha });
                }
                Err(msg) => progress.note(&format!("{label}: not using {} ({msg})", p.display())),
            }
        }
        let mirror_url = self.mirror.as_ref().map(|base| format!("{}/{}/{}", base.trim_end_matches('/'), m.name, f.name));
        let urls: Vec<String> = match (f.source(), mirror_url) {
            (_, Some(u)) => vec![u],
            (SourceKind::Urls(u), None) => u.to_vec(),
            (_, None) => vec![],
        };
        if let SourceKind::ByHand(b) = f.source() {
            let hand = HandFile {
                model: m.name.clone(),
                name: f.name.clone(),
                dest: dest.clone(),
                page: b.page.clone(),
                instructions: b.instructions.clone(),
                sha256: f.sha256().map(str::to_string),
                size: f.size,
            };
            if urls.is_empty() {
                return Ok(FileState::ByHand(hand));
            }
            return match self.http.download(&urls, &dest, expect, &label, progress) {
                Ok(d) => Ok(FileState::Ready { path: dest, sha256: d.sha256 }),
                Err(e) => {
                    progress.note(&format!("{label}: not on the mirror ({e})"));
                    Ok(FileState::ByHand(hand))
                }
            };
        }
        let d = self.http.download(&urls, &dest, expect, &label, progress)?;
        Ok(FileState::Ready { path: dest, sha256: d.sha256 })
    }

    /// Get every file of `m` and install its pack. Unless `force`, a model whose pack is
    /// installed and current is left alone without any network access.
    pub fn fetch(&self, m: &Manifest, force: bool, progress: &mut dyn Progress) -> Result<Outcome> {
        let pack = self.pack_path(m);
        if !force && self.status(m).state == State::Installed {
            return Ok(Outcome::AlreadyInstalled { pack });
        }
        let mut ready: BTreeMap<&str, (PathBuf, String)> = BTreeMap::new();
        let mut hand = vec![];
        for f in &m.files {
            match self.ensure_file(m, f, progress)? {
                FileState::Ready { path, sha256 } => {
                    ready.insert(&f.name, (path, sha256));
                }
                FileState::ByHand(h) => hand.push(h),
            }
        }
        if !hand.is_empty() {
            return Ok(Outcome::NeedsFilesByHand(hand));
        }
        if !is_convertible(&m.convert.kind) {
            return Ok(Outcome::NotConvertible { kind: m.convert.kind.clone(), files: ready.into_values().map(|(p, _)| p).collect() });
        }
        let (input, sha) = &ready[m.convert.checkpoint.as_str()];
        let config = m.convert.config.as_deref().map(|c| ready[c].0.as_path());
        std::fs::create_dir_all(&self.models_dir).map_err(|e| Error::io(format!("creating {}", self.models_dir.display()), e))?;
        let mut job = ConvertJob::new(&m.convert.kind, input, &pack);
        job.config = config;
        job.f16 = m.convert.dtype == "f16";
        job.input_sha256 = Some(sha);
        job.tokenizer = m.convert.tokenizer.as_ref().map(|t| (ready[t.vocab.as_str()].0.as_path(), ready[t.merges.as_str()].0.as_path()));
        job.extra_metadata.insert("source".into(), m.convert.checkpoint.clone());
        job.extra_metadata.insert("manifest".into(), m.name.clone());
        job.extra_metadata.insert("manifest_rules".into(), m.rules.to_string());
        progress.note(&format!("{}: converting {} to {}", m.name, input.display(), pack.display()));
        let done = convert_checkpoint(&job).map_err(|e| Error::Format(format!("{}: converting {}: {e}", m.name, input.display())))?;
        Ok(Outcome::Installed { pack, tensors: done.tensors, bytes: done.bytes })
    }

    /// Installed, missing or stale (no network access, no hashing).
    pub fn status(&self, m: &Manifest) -> ModelStatus {
        status::status(self, m)
    }
}

/// Hash an existing file and compare it with the manifest: `Ok(Ok(sha))` if it matches (or
/// nothing is known to compare with), `Ok(Err(why))` if not.
fn check_existing(path: &Path, f: &FileSpec, label: &str, progress: &mut dyn Progress) -> Result<std::result::Result<String, String>> {
    if let Some(size) = f.size {
        let have = std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?.len();
        if have != size {
            return Ok(Err(format!("size is {have} bytes, the manifest expects {size}")));
        }
    }
    let (sha, _) = http::hash_file(path, label, progress)?;
    match f.sha256() {
        Some(want) if want != sha => Ok(Err(format!("sha256 is {sha}, the manifest expects {want}"))),
        _ => Ok(Ok(sha)),
    }
}
