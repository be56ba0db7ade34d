//! The Hugging Face hub cache layout, as `huggingface_hub` writes it, so files are shared with
//! Python tools in both directions:
//!
//! ```text
//! $HF_HUB_CACHE (default $HF_HOME/hub, default ~/.cache/huggingface/hub)
//!   models--<org>--<name>/
//!     blobs/<etag>                     the file's bytes (etag = sha256 for LFS files)
//!     refs/<revision>                  the commit a branch/tag resolved to
//!     snapshots/<commit>/<path>        relative symlink to ../../blobs/<etag>
//! ```
//!
//! A file is reused when `snapshots/<commit>/<path>` exists, `<commit>` being the manifest's
//! pinned revision or what `refs/<revision>` says, so no request is made for it. Downloads go
//! to `blobs/.ssv2a-<key>.partial` (resumable), then become `blobs/<etag>` with the
//! snapshot link and ref written as `huggingface_hub` would.

use std::path::{Path, PathBuf};

use sha2::Digest;

use super::manifest::HfSource;
use crate::{Error, Result};

/// A hub cache root (the folder holding `models--*`).
#[derive(Clone, Debug)]
pub struct HubCache {
    pub root: PathBuf,
}

impl HubCache {
    pub fn new(root: impl Into<PathBuf>) -> HubCache {
        HubCache { root: root.into() }
    }

    /// `models--org--name`.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The commit `revision` stands for, from the revision itself or `refs/`.
    pub fn commit_of(&self, src: &HfSource) -> Option<String> {
        if is_commit(&src.revision) {
            return Some(src.revision.clone());
        }
        let r = std::fs::read_to_string(self.repo_dir(&src.repo).join("refs").join(&src.revision)).ok()?;
        let r = r.trim();
        is_commit(r).then(|| r.to_string())
    }

    /// The cached file, if present.
    pub fn cached(&self, src: &HfSource) -> Option<PathBuf> {
        let commit = self.commit_of(src)?;
        let p = self.snapshot_path(&src.repo, &commit, &src.path);
        p.is_file().then_some(p)
    }

    pub fn snapshot_path(&self, repo: &str, commit: &str, path: &str) -> PathBuf {
        let mut p = self.repo_dir(repo).join("snapshots").join(commit);
        for part in path.split('/') {
            p.push(part);
        }
        p
    }

    /// Where the download of `src` goes before it is stored: a name fixed by (repo, revision,
    /// path) so an interrupted download resumes in the next run.
    pub fn download_path(&self, src: &HfSource) -> PathBuf {
        let key: String =
            sha2::Sha256::digest(format!("{}\n{}\n{}", src.repo, src.revision, src.path).as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
        self.repo_dir(&src.repo).join("blobs").join(format!(".ssv2a-{key}"))
    }

    /// Move a complete download into the cache: `blobs/<etag>`, the snapshot link and the ref.
    /// `commit` comes from the pinned revision or the server's `X-Repo-Commit`; `etag` from its
    /// `X-Linked-Etag`/`ETag` (else the file's sha256). Returns the snapshot path.
    pub fn store(&self, src: &HfSource, commit: Option<&str>, etag: Option<&str>, sha256: &str, file: &Path) -> Result<PathBuf> {
        let repo_dir = self.repo_dir(&src.repo);
        let commit = match commit.filter(|c| is_commit(c)) {
            Some(c) => c.to_string(),
            None if is_commit(&src.revision) => src.revision.clone(),
            None => {
                return Err(Error::Format(format!(
                    "{}/{}: the server did not say which commit revision `{}` is (no X-Repo-Commit header); pin the revision to a commit hash",
                    src.repo, src.path, src.revision
                )))
            }
        };
        let etag = etag.filter(|e| is_safe_etag(e)).unwrap_or(sha256);
        let blobs = repo_dir.join("blobs");
        let blob = blobs.join(etag);
        let io = |what: String, e| Error::io(what, e);
        std::fs::create_dir_all(&blobs).map_err(|e| io(format!("creating {}", blobs.display()), e))?;
        std::fs::rename(file, &blob).map_err(|e| io(format!("moving {} to {}", file.display(), blob.display()), e))?;
        let snap = self.snapshot_path(&src.repo, &commit, &src.path);
        if let Some(dir) = snap.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
        }
        if std::fs::symlink_metadata(&snap).is_ok() {
            std::fs::remove_file(&snap).map_err(|e| io(format!("replacing {}", snap.display()), e))?;
        }
        link_or_copy(&blob, &snap, src.path.split('/').count() + 1)?;
        if src.revision != commit {
            let r = repo_dir.join("refs").join(&src.revision);
            if let Some(dir) = r.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
            }
            std::fs::write(&r, &commit).map_err(|e| io(format!("writing {}", r.display()), e))?;
        }
        Ok(snap)
    }
}

/// A relative symlink `snap -> ../../blobs/<etag>` (`ups` levels up), as `huggingface_hub`
/// makes it; a copy where symlinks are not available.
fn link_or_copy(blob: &Path, snap: &Path, ups: usize) -> Result<()> {
    #[cfg(unix)]
    {
        let mut target = PathBuf::new();
        for _ in 0..ups {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        std::os::unix::fs::symlink(&target, snap).map_err(|e| Error::io(format!("linking {} to {}", snap.display(), target.display()), e))
    }
    #[cfg(not(unix))]
    {
        let _ = ups;
        std::fs::copy(blob, snap).map(|_| ()).map_err(|e| Error::io(format!("copying {} to {}", blob.display(), snap.display()), e))
    }
}

/// A full 40-digit hex commit hash.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_safe_etag(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// `https://huggingface.co/<repo>/resolve/<revision>/<path>` on `endpoint`.
pub fn resolve_url(endpoint: &str, src: &HfSource) -> String {
    format!("{}/{}/resolve/{}/{}", endpoint.trim_end_matches('/'), src.repo, src.revision.replace('/', "%2F"), src.path)
}
