//! HTTP downloads that resume and verify.
//!
//! A file is downloaded into `<dest>.partial` and renamed to `<dest>` only after its size and
//! sha256 (where the manifest knows them) are right. An interrupted transfer (connection lost,
//! timeout, 5xx) is retried with `Range: bytes=<have>-`, in the same run and in the next one:
//! the `.partial` stays on disk until the file is complete. A server that ignores the range
//! (200) or resumes at another offset restarts the file from zero. A checksum or size mismatch
//! deletes the `.partial` (resuming a corrupt prefix could never succeed) and tries the next
//! URL; nothing is installed from a file that failed verification.
//!
//! Redirects are followed here rather than by ureq so that the first response's headers (the
//! Hugging Face hub's `X-Repo-Commit` and `X-Linked-Etag`, sent with its redirect to the CDN)
//! are kept and the `Range` header goes along every hop.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest;

use super::Progress;
use crate::{Error, Result};

const MAX_REDIRECTS: usize = 10;
const BUF: usize = 1 << 20;

/// What a download must match.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expect<'a> {
    pub sha256: Option<&'a str>,
    pub size: Option<u64>,
}

/// Headers of the first response that say what the server sent (Hugging Face hub metadata).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteMeta {
    /// `X-Repo-Commit`: the commit a hub revision resolved to.
    pub repo_commit: Option<String>,
    /// `X-Linked-Etag` (LFS files: their sha256) or `ETag`, without quotes or `W/`.
    pub etag: Option<String>,
}

/// A verified, complete download.
#[derive(Clone, Debug)]
pub struct Downloaded {
    pub sha256: String,
    pub bytes: u64,
    /// The URL it came from.
    pub url: String,
    pub meta: RemoteMeta,
}

/// Blocking downloader (ureq with rustls; proxies from the usual environment variables, except
/// for loopback addresses).
pub struct Downloader {
    agent: ureq::Agent,
    direct: ureq::Agent,
    /// Retries of one URL after a transient failure (connection lost, timeout, 5xx, 429).
    pub retries: u32,
    /// Pause before retry `n` is `n × retry_delay`.
    pub retry_delay: Duration,
}

/// A request error as the retry loop sees it: a name that does not resolve (no network, or
/// a wrong host) is not worth retrying, and is said plainly.
fn classify(e: ureq::Error, url: &str) -> Failure {
    let host = url.split("://").nth(1).and_then(|r| r.split(['/', ':']).next()).unwrap_or(url);
    let offline = || Failure::Permanent(format!("cannot resolve the host {host} (is this machine offline?)"));
    match e {
        ureq::Error::BadUri(m) => Failure::Permanent(format!("bad URL ({m})")),
        ureq::Error::HostNotFound => offline(),
        ureq::Error::Io(io) if is_resolution_error(&io) => offline(),
        other => Failure::Transient(other.to_string()),
    }
}

/// getaddrinfo's failures as the OS words them (glibc, musl, macOS) or as std reports them.
fn is_resolution_error(e: &std::io::Error) -> bool {
    let m = e.to_string().to_lowercase();
    ["failed to lookup address", "name resolution", "name or service not known", "nodename nor servname", "no address associated"].iter().any(|s| m.contains(s))
}

#[derive(Debug)]
enum Failure {
    /// Worth retrying (with a range request where bytes arrived).
    Transient(String),
    /// This URL will not work (404, bad redirect).
    Permanent(String),
    /// The bytes are wrong (checksum, size): the `.partial` was deleted.
    Mismatch(String),
    /// Local I/O failed: stop.
    Local(Error),
}

impl Downloader {
    pub fn new() -> Downloader {
        let make = |proxy_from_env: bool| -> ureq::Agent {
            let b = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .user_agent(concat!("ssv2a/", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                .timeout_per_read(Some(Duration::from_secs(60)));
            let b = if proxy_from_env { b } else { b.proxy(None) };
            b.build().into()
        };
        Downloader { agent: make(true), direct: make(false), retries: 3, retry_delay: Duration::from_secs(1) }
    }

    /// Download the first of `urls` that works into `dest` (through `dest.partial`), verify it
    /// against `expect`, and rename it into place. `label` names the file in progress output.
    pub fn download(&self, urls: &[String], dest: &Path, expect: Expect, label: &str, progress: &mut dyn Progress) -> Result<Downloaded> {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let partial = partial_path(dest);
        let mut errors = vec![];
        let mut mismatch = false;
        for url in urls {
            let mut attempt = 0;
            loop {
                match self.try_once(url, &partial, expect, label, progress) {
                    Ok((sha256, bytes, meta)) => {
                        std::fs::rename(&partial, dest).map_err(|e| Error::io(format!("renaming {} to {}", partial.display(), dest.display()), e))?;
                        return Ok(Downloaded { sha256, bytes, url: url.clone(), meta });
                    }
                    Err(Failure::Transient(msg)) if attempt < self.retries => {
                        attempt += 1;
                        progress.note(&format!("{label}: {msg}; retrying ({attempt}/{}) from {url}", self.retries));
                        std::thread::sleep(self.retry_delay * attempt);
                    }
                    Err(Failure::Transient(msg)) | Err(Failure::Permanent(msg)) => {
                        errors.push(format!("{url}: {msg}"));
                        break;
                    }
                    Err(Failure::Mismatch(msg)) => {
                        mismatch = true;
                        errors.push(format!("{url}: {msg}"));
                        break;
                    }
                    Err(Failure::Local(e)) => return Err(e),
                }
            }
        }
        if urls.is_empty() {
            errors.push("no URL to download from".into());
        }
        let msg = format!("could not download {label}: {}", errors.join("; "));
        if mismatch {
            return Err(Error::Format(format!("{msg}; nothing was installed")));
        }
        let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        let what = if kept > 0 {
            format!("{kept} bytes stay in {} and the next run resumes from there", partial.display())
        } else {
            "nothing was installed".to_string()
        };
        Err(Error::io(msg, std::io::Error::other(what)))
    }

    fn try_once(
        &self,
        url: &str,
        partial: &Path,
        expect: Expect,
        label: &str,
        progress: &mut dyn Progress,
    ) -> std::result::Result<(String, u64, RemoteMeta), Failure> {
        let local = |what: &str, e: std::io::Error| Failure::Local(Error::io(format!("{what} {}", partial.display()), e));
        let mut have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        if expect.size.is_some_and(|s| have > s) {
            remove(partial).map_err(|e| local("removing", e))?;
            have = 0;
        }
        let (resp, meta) = self.get(url, (have > 0).then_some(have))?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let append = match status {
            200 => false,
            206 => {
                let start = header("content-range").as_deref().and_then(range_start);
                if start != Some(have) {
                    remove(partial).map_err(|e| local("removing", e))?;
                    return Err(Failure::Transient(format!("the server resumed at byte {start:?} instead of {have}; restarting")));
                }
                true
            }
            416 => {
                // Nothing left to send: complete if the size agrees, else start over.
                let total = header("content-range").as_deref().and_then(range_total);
                if have > 0 && (total == Some(have) || expect.size == Some(have)) {
                    let (sha, n) = hash_file(partial, label, progress).map_err(Failure::Local)?;
                    return verify(partial, sha, n, expect, meta);
                }
                remove(partial).map_err(|e| local("removing", e))?;
                return Err(Failure::Transient("range not satisfiable; restarting".into()));
            }
            404 | 410 => return Err(Failure::Permanent(format!("HTTP {status} Not Found"))),
            408 | 429 | 500..=599 => return Err(Failure::Transient(format!("HTTP {status}"))),
            _ => return Err(Failure::Permanent(format!("HTTP {status}"))),
        };
        let mut hasher = sha2::Sha256::new();
        let mut done = 0u64;
        let mut out = if append && have > 0 {
            // Hash the bytes already on disk, then append.
            let mut f = File::open(partial).map_err(|e| local("opening", e))?;
            let mut buf = vec![0u8; BUF];
            loop {
                let n = f.read(&mut buf).map_err(|e| local("reading", e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                done += n as u64;
            }
            OpenOptions::new().append(true).open(partial).map_err(|e| local("opening", e))?
        } else {
            File::create(partial).map_err(|e| local("creating", e))?
        };
        let length = resp.body().content_length();
        let total = length.map(|l| l + done).or(expect.size);
        progress.start(label, total, done);
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; BUF];
        let mut received = 0u64;
        let outcome = loop {
            match body.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    out.write_all(&buf[..n]).map_err(|e| local("writing", e))?;
                    hasher.update(&buf[..n]);
                    received += n as u64;
                    done += n as u64;
                    progress.advance(done);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        out.flush().map_err(|e| local("writing", e))?;
        out.sync_all().map_err(|e| local("syncing", e))?;
        drop(out);
        progress.finish();
        match outcome {
            Err(e) => return Err(Failure::Transient(format!("connection lost after {done} bytes ({e})"))),
            Ok(()) if length.is_some_and(|l| received < l) => {
                return Err(Failure::Transient(format!("connection closed after {done} of {} bytes", total.unwrap_or(0))))
            }
            Ok(()) => {}
        }
        let sha: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        verify(partial, sha, done, expect, meta)
    }

    /// GET `url` (with `Range: bytes=<from>-`), following redirects.
    fn get(&self, url: &str, from: Option<u64>) -> std::result::Result<(ureq::http::Response<ureq::Body>, RemoteMeta), Failure> {
        let mut cur = url.to_string();
        let mut meta: Option<RemoteMeta> = None;
        for _ in 0..=MAX_REDIRECTS {
            let agent = if is_loopback(&cur) { &self.direct } else { &self.agent };
            let mut req = agent.get(&cur).header("Accept-Encoding", "identity");
            if let Some(n) = from {
                req = req.header("Range", format!("bytes={n}-"));
            }
            let resp = req.call().map_err(|e| classify(e, &cur))?;
            let h = resp.headers();
            let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
            let m = meta.get_or_insert_with(|| RemoteMeta {
                repo_commit: None,
                etag: get("x-linked-etag").or_else(|| get("etag")).map(|e| e.trim_start_matches("W/").trim_matches('"').to_string()),
            });
            if m.repo_commit.is_none() {
                m.repo_commit = get("x-repo-commit");
            }
            let status = resp.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let Some(loc) = get("location") else {
                    return Err(Failure::Permanent(format!("HTTP {status} redirect without a Location")));
                };
                cur = join_url(&cur, &loc);
                continue;
            }
            return Ok((resp, meta.unwrap_or_default()));
        }
        Err(Failure::Permanent(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

impl Default for Downloader {
    fn default() -> Self {
        Downloader::new()
    }
}

fn verify(partial: &Path, sha: String, bytes: u64, expect: Expect, meta: RemoteMeta) -> std::result::Result<(String, u64, RemoteMeta), Failure> {
    let bad = if expect.size.is_some_and(|s| s != bytes) {
        Some(format!("size is {bytes} bytes, the manifest expects {}", expect.size.unwrap_or(0)))
    } else if expect.sha256.is_some_and(|s| s != sha) {
        Some(format!("sha256 is {sha}, the manifest expects {}", expect.sha256.unwrap_or("")))
    } else {
        None
    };
    match bad {
        Some(msg) => {
            remove(partial).map_err(|e| Failure::Local(Error::io(format!("removing {}", partial.display()), e)))?;
            Err(Failure::Mismatch(format!("{msg} (download rejected and deleted)")))
        }
        None => Ok((sha, bytes, meta)),
    }
}

/// `<dest>.partial`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

fn remove(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// sha256 and size of a file, with progress.
pub fn hash_file(path: &Path, label: &str, progress: &mut dyn Progress) -> Result<(String, u64)> {
    let ctx = |e| Error::io(format!("reading {}", path.display()), e);
    let mut f = File::open(path).map_err(ctx)?;
    let total = f.metadata().map_err(ctx)?.len();
    progress.start(&format!("verifying {label}"), Some(total), 0);
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(ctx)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress.advance(done);
    }
    progress.finish();
    Ok((h.finalize().iter().map(|b| format!("{b:02x}")).collect(), done))
}

/// `bytes 100-199/200` → 100.
fn range_start(v: &str) -> Option<u64> {
    v.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// `bytes */200` or `bytes 0-1/200` → 200.
fn range_total(v: &str) -> Option<u64> {
    v.rsplit('/').next()?.trim().parse().ok()
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    if let Some(stripped) = host_port.strip_prefix('[') {
        return stripped.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

fn is_loopback(url: &str) -> bool {
    let h = host_of(url);
    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Resolve a `Location` against the URL it came from.
pub fn join_url(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return loc.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    if let Some(rest) = loc.strip_prefix("//") {
        return format!("{}{rest}", &base[..scheme_end]);
    }
    let origin_end = base[scheme_end..].find('/').map(|i| scheme_end + i).unwrap_or(base.len());
    if loc.starts_with('/') {
        return format!("{}{loc}", &base[..origin_end]);
    }
    let path = &base[origin_end..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
    format!("{}{}{loc}", &base[..origin_end], if dir.is_empty() { "/" } else { dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_ranges() {
        assert_eq!(join_url("https://a.org/x/y?q=1", "/z"), "https://a.org/z");
        assert_eq!(join_url("https://a.org/x/y?q=1", "z"), "https://a.org/x/z");
        assert_eq!(join_url("https://a.org", "z"), "https://a.org/z");
        assert_eq!(join_url("https://a.org/x", "//b.org/c"), "https://b.org/c");
        assert_eq!(join_url("https://a.org/x", "http://b.org/c"), "http://b.org/c");
        assert!(is_loopback("http://127.0.0.1:8080/x"));
        assert!(is_loopback("http://[::1]:80/"));
        assert!(is_loopback("http://localhost/"));
        assert!(!is_loopback("https://huggingface.co/x"));
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_total("bytes */200"), Some(200));
        assert_eq!(range_start("items 1-2/3"), None);
    }
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    /// Resolution failures are not retried and say the machine may be offline; other I/O
    /// errors are retried.
    #[test]
    fn resolution_errors_fail_fast() {
        let dns = std::io::Error::other("failed to lookup address information: Temporary failure in name resolution");
        match classify(ureq::Error::Io(dns), "https://zenodo.org/record/1/files/x.ckpt") {
            Failure::Permanent(m) => assert!(m.contains("zenodo.org") && m.contains("offline"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(ureq::Error::HostNotFound, "https://example.org/x"), Failure::Permanent(_)));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer");
        assert!(matches!(classify(ureq::Error::Io(reset), "https://example.org/x"), Failure::Transient(_)));
    }
}
