//! Model manifests: one TOML file per model in the top-level `models/` folder (format described
//! in `models/README.md`), embedded in the binary so `ssv2a fetch` works from anywhere.
//!
//! Parsing is strict: unknown fields are errors (a misspelt `sha265` must not silently turn a
//! verified download into an unverified one), names that end up in paths are checked, and every
//! error names the manifest.

use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// `format` of every manifest.
pub const MANIFEST_FORMAT: &str = "ssv2a-manifest";
/// `format_version` this build reads.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// The manifests committed in `models/`, in the order `ssv2a fetch` installs them.
pub const BUILTIN: &[(&str, &str)] = &[
    ("ssv2a.toml", include_str!("../../models/ssv2a.toml")),
    ("aggregator.toml", include_str!("../../models/aggregator.toml")),
    ("audioldm-s-full-v2.toml", include_str!("../../models/audioldm-s-full-v2.toml")),
    ("audioldm-m-full.toml", include_str!("../../models/audioldm-m-full.toml")),
    ("audioldm-l-full.toml", include_str!("../../models/audioldm-l-full.toml")),
    ("clip-vit-l14.toml", include_str!("../../models/clip-vit-l14.toml")),
    ("yolov8x-oiv7.toml", include_str!("../../models/yolov8x-oiv7.toml")),
    ("dalle2-prior.toml", include_str!("../../models/dalle2-prior.toml")),
];

/// One model: where its files come from and how they become a pack.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Version of the manifest schema ([`MANIFEST_FORMAT_VERSION`]).
    pub format_version: u32,
    /// Short name used on the command line (`ssv2a fetch NAME`), `[a-z0-9._-]`.
    pub name: String,
    /// One line for `ssv2a models`.
    pub title: String,
    /// SPDX-style licence of the weights (`none stated` where the authors state none).
    pub licence: String,
    #[serde(default)]
    pub licence_note: String,
    /// Revision of this manifest's sources and conversion rules. Bump it when a source file or
    /// the converter of this kind changes so that packs made before become stale.
    pub rules: u32,
    pub convert: ConvertSpec,
    #[serde(rename = "file")]
    pub files: Vec<FileSpec>,
}

/// How the files become a pack (`ssv2a convert` arguments).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertSpec {
    /// `ssv2a convert --kind`.
    pub kind: String,
    /// `name` of the file passed as `--input`.
    pub checkpoint: String,
    /// `name` of the file passed as `--config`, if any.
    #[serde(default)]
    pub config: Option<String>,
    /// File name of the pack in the models directory.
    pub pack: String,
    /// `f16` (default) or `f32`.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// The text tokenizer's files, stored in the pack (`ssv2a convert --tokenizer-dir`).
    #[serde(default)]
    pub tokenizer: Option<TokenizerSpec>,
}

/// `[convert.tokenizer]`: `name`s of the files holding a byte-level BPE tokenizer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSpec {
    /// `vocab.json`.
    pub vocab: String,
    /// `merges.txt`.
    pub merges: String,
}

fn default_dtype() -> String {
    "f16".into()
}

/// One source file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Local file name.
    pub name: String,
    /// Lower-case hex sha256 of the official file; empty where it is not known.
    #[serde(default)]
    pub sha256: String,
    /// Size in bytes where known.
    #[serde(default)]
    pub size: Option<u64>,
    /// Direct download URLs of the same bytes, tried in order.
    #[serde(default)]
    pub urls: Vec<String>,
    /// A file of a Hugging Face repository (kept in the standard hub cache).
    #[serde(default)]
    pub hf: Option<HfSource>,
    /// A file that cannot be downloaded automatically.
    #[serde(default)]
    pub by_hand: Option<ByHand>,
    /// Places where other tools cache the same file (`~` = home); used in place when present
    /// (and verified, where the manifest knows the sha256 or size).
    #[serde(default)]
    pub reuse: Vec<String>,
    #[serde(default)]
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfSource {
    /// `org/name`.
    pub repo: String,
    /// A commit hash (pinned) or a branch/tag name.
    pub revision: String,
    /// Path of the file inside the repository.
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByHand {
    /// The page to download from.
    pub page: String,
    /// What to do there, in words.
    pub instructions: String,
}

/// Where a file comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind<'a> {
    Urls(&'a [String]),
    Hf(&'a HfSource),
    ByHand(&'a ByHand),
}

impl FileSpec {
    pub fn source(&self) -> SourceKind<'_> {
        // `Manifest::parse` checked that exactly one is set.
        match (&self.hf, &self.by_hand) {
            (Some(h), _) => SourceKind::Hf(h),
            (None, Some(b)) => SourceKind::ByHand(b),
            (None, None) => SourceKind::Urls(&self.urls),
        }
    }

    /// The expected sha256, if the manifest knows it.
    pub fn sha256(&self) -> Option<&str> {
        (!self.sha256.is_empty()).then_some(self.sha256.as_str())
    }
}

impl Manifest {
    /// Parse and check a manifest; `origin` (a file name) is used in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
        let m: Manifest = toml::from_str(text).map_err(|e| Error::Format(format!("manifest {origin}: {e}")))?;
        m.check().map_err(|msg| Error::Format(format!("manifest {origin}: {msg}")))?;
        Ok(m)
    }

    /// Read one manifest file.
    pub fn from_file(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading manifest {}", path.display()), e))?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// The manifests built into this binary.
    pub fn builtin() -> Result<Vec<Manifest>> {
        BUILTIN.iter().map(|(name, text)| Manifest::parse(text, &format!("models/{name}"))).collect()
    }

    /// Every `*.toml` in `dir`, sorted by file name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>> {
        let rd = std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading manifest folder {}", dir.display()), e))?;
        let mut paths = vec![];
        for e in rd {
            let p = e.map_err(|e| Error::io(format!("reading manifest folder {}", dir.display()), e))?.path();
            if p.extension().is_some_and(|x| x == "toml") {
                paths.push(p);
            }
        }
        paths.sort();
        let list: Vec<Manifest> = paths.iter().map(|p| Manifest::from_file(p)).collect::<Result<_>>()?;
        check_unique(&list)?;
        Ok(list)
    }

    /// The file with `name`.
    pub fn file(&self, name: &str) -> Option<&FileSpec> {
        self.files.iter().find(|f| f.name == name)
    }

    pub fn checkpoint(&self) -> &FileSpec {
        // `check` guarantees it exists.
        self.file(&self.convert.checkpoint).unwrap_or(&self.files[0])
    }

    pub fn config_file(&self) -> Option<&FileSpec> {
        self.convert.config.as_deref().and_then(|c| self.file(c))
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.format != MANIFEST_FORMAT {
            return Err(format!("format is `{}`, expected `{MANIFEST_FORMAT}`", self.format));
        }
        if self.format_version != MANIFEST_FORMAT_VERSION {
            return Err(format!("format_version {} is not supported by this ssv2a (it reads version {MANIFEST_FORMAT_VERSION})", self.format_version));
        }
        if !is_simple_name(&self.name) {
            return Err(format!("name `{}` must be made of a-z, 0-9, `.`, `_` and `-`", self.name));
        }
        if self.licence.trim().is_empty() {
            return Err("licence is empty (write `none stated` when the authors state none)".into());
        }
        let c = &self.convert;
        if crate::registry::kind(&c.kind).is_none_or(|k| k.name != c.kind) {
            return Err(format!("convert.kind `{}` is not one of {}", c.kind, crate::registry::names(|_| true).join(", ")));
        }
        if !is_file_name(&c.pack) || !c.pack.ends_with(".safetensors") {
            return Err(format!("convert.pack `{}` must be a plain file name ending in .safetensors", c.pack));
        }
        if c.dtype != "f16" && c.dtype != "f32" {
            return Err(format!("convert.dtype must be f16 or f32, not `{}`", c.dtype));
        }
        if self.files.is_empty() {
            return Err("no [[file]]".into());
        }
        for (i, f) in self.files.iter().enumerate() {
            if !is_file_name(&f.name) {
                return Err(format!("file name `{}` must be a plain file name", f.name));
            }
            if self.files[..i].iter().any(|g| g.name == f.name) {
                return Err(format!("file `{}` is listed twice", f.name));
            }
            let ctx = |m: String| format!("file `{}`: {m}", f.name);
            let hex64 = f.sha256.len() == 64 && f.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !f.sha256.is_empty() && !hex64 {
                return Err(ctx(format!("sha256 `{}` is not 64 lower-case hex digits (leave it empty when unknown)", f.sha256)));
            }
            let sources = usize::from(!f.urls.is_empty()) + usize::from(f.hf.is_some()) + usize::from(f.by_hand.is_some());
            if sources != 1 {
                return Err(ctx("needs exactly one source: `urls`, `hf` or `by_hand`".into()));
            }
            for u in &f.urls {
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    return Err(ctx(format!("URL `{u}` must start with https:// or http://")));
                }
            }
            if let Some(h) = &f.hf {
                let parts: Vec<&str> = h.repo.split('/').collect();
                if parts.len() != 2 || !parts.iter().all(|p| is_repo_part(p)) {
                    return Err(ctx(format!("hf.repo `{}` must be `org/name`", h.repo)));
                }
                if !is_rel_path(&h.revision) {
                    return Err(ctx(format!("hf.revision `{}` is not a valid revision", h.revision)));
                }
                if !is_rel_path(&h.path) {
                    return Err(ctx(format!("hf.path `{}` must be a relative path inside the repository", h.path)));
                }
            }
            if let Some(b) = &f.by_hand {
                if b.page.trim().is_empty() || b.instructions.trim().is_empty() {
                    return Err(ctx("by_hand needs a `page` and `instructions`".into()));
                }
            }
        }
        if self.file(&c.checkpoint).is_none() {
            return Err(format!("convert.checkpoint `{}` is not one of the files", c.checkpoint));
        }
        if let Some(cfg) = &c.config {
            if self.file(cfg).is_none() {
                return Err(format!("convert.config `{cfg}` is not one of the files"));
            }
        }
        if let Some(t) = &c.tokenizer {
            for (what, name) in [("vocab", &t.vocab), ("merges", &t.merges)] {
                if self.file(name).is_none() {
                    return Err(format!("convert.tokenizer.{what} `{name}` is not one of the files"));
                }
            }
        }
        Ok(())
    }
}

/// Fail if two manifests share a name or a pack file.
pub fn check_unique(list: &[Manifest]) -> Result<()> {
    for (i, m) in list.iter().enumerate() {
        for n in &list[..i] {
            if n.name == m.name {
                return Err(Error::Format(format!("two manifests are named `{}`", m.name)));
            }
            if n.convert.pack == m.convert.pack {
                return Err(Error::Format(format!("manifests `{}` and `{}` write the same pack `{}`", n.name, m.name, m.convert.pack)));
            }
        }
    }
    Ok(())
}

fn is_simple_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)) && !s.starts_with('.')
}

fn is_file_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s != "." && s != ".." && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

fn is_repo_part(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `a/b/c` with plain components (no `..`, no leading `/`).
fn is_rel_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 300
        && s.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
format = "ssv2a-manifest"
format_version = 1
name = "m"
title = "t"
licence = "MIT"
rules = 1
[convert]
kind = "audioldm"
checkpoint = "a.ckpt"
pack = "m.safetensors"
[[file]]
name = "a.ckpt"
urls = ["https://example.org/a.ckpt"]
"#;

    #[test]
    fn parses_and_rejects() {
        let m = Manifest::parse(GOOD, "good").unwrap();
        assert_eq!(m.convert.dtype, "f16");
        assert!(matches!(m.checkpoint().source(), SourceKind::Urls(_)));
        for (from, to, want) in [
            ("name = \"a.ckpt\"", "name = \"../a.ckpt\"", "plain file name"),
            ("urls = [\"https://example.org/a.ckpt\"]", "urls = []", "exactly one source"),
            ("kind = \"audioldm\"", "kind = \"vae\"", "convert.kind"),
            ("rules = 1", "rules = 1\nsha265 = \"\"", "unknown field"),
            ("urls = [", "sha256 = \"ABC\"\nurls = [", "64 lower-case hex"),
            ("checkpoint = \"a.ckpt\"", "checkpoint = \"b.ckpt\"", "not one of the files"),
            ("format_version = 1", "format_version = 2", "format_version 2"),
        ] {
            let text = GOOD.replace(from, to);
            let err = Manifest::parse(&text, "bad.toml").unwrap_err().to_string();
            assert!(err.contains("bad.toml") && err.contains(want), "{from} -> {to}: {err}");
        }
    }
}
