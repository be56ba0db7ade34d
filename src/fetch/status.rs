//! Is a model installed? Reads only the pack's header; no network, no hashing.
//!
//! - **installed**: the pack exists, is an ssv2a pack of this build's format version and of the
//!   manifest's kind, was made from the manifest's checkpoint (its `source_sha256`, and the
//!   config's, equal the manifest's where the manifest knows them), and not under older
//!   conversion rules (`manifest_rules`, written by `ssv2a fetch`);
//! - **stale**: the pack exists but fails one of those checks (re-fetch with `--force`, or it
//!   happens on the next `ssv2a fetch`);
//! - **missing**: no pack.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::manifest::{Manifest, SourceKind};
use super::Fetcher;
use crate::registry::is_convertible;
use crate::weights::{PACK_FORMAT, PACK_VERSION};
use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Installed,
    Missing,
    Stale,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Installed => "installed",
            State::Missing => "missing",
            State::Stale => "stale",
        }
    }
}

/// One line of `ssv2a models`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelStatus {
    pub name: String,
    pub state: State,
    /// Why, in words (for stale and missing), or what the pack holds (installed).
    pub detail: String,
    pub pack: PathBuf,
    pub pack_bytes: Option<u64>,
}

/// The `__metadata__` of a safetensors file, reading only its header (the pipeline's reader).
pub fn read_pack_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    crate::pipeline::read_pack_meta(path)
}

pub(super) fn status(fx: &Fetcher, m: &Manifest) -> ModelStatus {
    let pack = fx.pack_path(m);
    let bytes = std::fs::metadata(&pack).ok().filter(|md| md.is_file()).map(|md| md.len());
    let (state, detail) = match bytes {
        None => (State::Missing, missing_detail(fx, m)),
        Some(_) => match read_pack_metadata(&pack) {
            Err(e) => (State::Stale, format!("unreadable pack ({e})")),
            Ok(meta) => match stale_reason(m, &meta) {
                Some(why) => (State::Stale, why),
                None => (
                    State::Installed,
                    format!(
                        "{} pack from {}{}",
                        meta.get("dtype").map(String::as_str).unwrap_or("?"),
                        meta.get("source").map(String::as_str).unwrap_or("?"),
                        if m.checkpoint().sha256().is_some() { " (sha256 verified)" } else { "" }
                    ),
                ),
            },
        },
    };
    ModelStatus { name: m.name.clone(), state, detail, pack, pack_bytes: bytes }
}

fn stale_reason(m: &Manifest, meta: &BTreeMap<String, String>) -> Option<String> {
    let get = |k: &str| meta.get(k).map(String::as_str);
    match get("format") {
        Some(PACK_FORMAT) => {}
        other => return Some(format!("not an ssv2a pack (format {other:?})")),
    }
    let v = get("version").unwrap_or("?");
    if v != PACK_VERSION.to_string() {
        return Some(format!("pack format version {v}, this ssv2a reads version {PACK_VERSION}"));
    }
    if get("kind") != Some(m.convert.kind.as_str()) {
        return Some(format!("a pack of kind `{}`, expected `{}`", get("kind").unwrap_or("?"), m.convert.kind));
    }
    if let Some(want) = m.checkpoint().sha256() {
        match get("source_sha256") {
            Some(have) if have == want => {}
            have => return Some(format!("made from a different file (source sha256 {}, the manifest's {want})", have.unwrap_or("unknown"))),
        }
    }
    if let Some(want) = m.config_file().and_then(|c| c.sha256()) {
        match get("config_sha256") {
            Some(have) if have == want => {}
            have => return Some(format!("made with a different config (sha256 {}, the manifest's {want})", have.unwrap_or("unknown"))),
        }
    }
    if let Some(r) = get("manifest_rules") {
        match r.parse::<u32>() {
            Ok(r) if r >= m.rules => {}
            _ => return Some(format!("converted under rules {r}, the manifest is at rules {}", m.rules)),
        }
    }
    None
}

fn missing_detail(fx: &Fetcher, m: &Manifest) -> String {
    let mut absent_hand = vec![];
    let mut absent = vec![];
    for f in &m.files {
        if fx.local_file(m, f).is_none() {
            match f.source() {
                SourceKind::ByHand(_) => absent_hand.push(f.name.as_str()),
                _ => absent.push(f.name.as_str()),
            }
        }
    }
    match (absent_hand.is_empty(), absent.is_empty()) {
        (true, true) if !is_convertible(&m.convert.kind) => {
            format!("source files present; converting kind `{}` is not available in this version of ssv2a yet", m.convert.kind)
        }
        (true, true) => format!("source files present; run `ssv2a fetch {}` to convert", m.name),
        (false, _) => format!("needs {} downloaded by hand (`ssv2a fetch {}` says how)", absent_hand.join(", "), m.name),
        (true, false) => format!("not downloaded ({})", absent.join(", ")),
    }
}
