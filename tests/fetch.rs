//! `ssv2a fetch` and `ssv2a models` against a local HTTP server on 127.0.0.1 started by each
//! test (range requests, a connection dropped halfway, 404, wrong content, redirects with Hugging
//! Face hub headers). No other network access.

#![cfg(all(feature = "fetch", not(target_arch = "wasm32")))]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest;
use ssv2a::fetch::status::read_pack_metadata;
use ssv2a::fetch::{Fetcher, FileState, Manifest, Outcome, Quiet, State};
use ssv2a::registry::KINDS;

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 server: one request per connection, `Connection: close`.

#[derive(Clone)]
enum Reply {
    File {
        body: Arc<Vec<u8>>,
        headers: Vec<(String, String)>,
        /// On the first request only, send this many body bytes and close the connection.
        drop_first_at: Option<usize>,
        ignore_range: bool,
    },
    Redirect {
        to: String,
        headers: Vec<(String, String)>,
    },
    Status(u16),
}

#[derive(Clone, Debug)]
struct Logged {
    path: String,
    range: Option<String>,
}

#[derive(Clone)]
struct Server {
    base: String,
    routes: Arc<Mutex<HashMap<String, (Reply, usize)>>>,
    log: Arc<Mutex<Vec<Logged>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let s = Server { base, routes: Arc::default(), log: Arc::default() };
        let s2 = s.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s3 = s2.clone();
                std::thread::spawn(move || {
                    let _ = s3.handle(stream);
                });
            }
        });
        s
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn file(&self, path: &str, body: &[u8]) {
        self.route(path, Reply::File { body: Arc::new(body.to_vec()), headers: vec![], drop_first_at: None, ignore_range: false });
    }

    fn route(&self, path: &str, r: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), (r, 0));
    }

    fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    fn handle(&self, stream: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = Some(v.trim().to_string());
                }
            }
        }
        self.log.lock().unwrap().push(Logged { path: path.clone(), range: range.clone() });
        let (reply, count) = {
            let mut routes = self.routes.lock().unwrap();
            match routes.get_mut(&path) {
                Some((r, n)) => {
                    *n += 1;
                    (r.clone(), *n - 1)
                }
                None => (Reply::Status(404), 0),
            }
        };
        let mut out = stream;
        match reply {
            Reply::Status(code) => {
                write!(out, "HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            }
            Reply::Redirect { to, headers } => {
                write!(out, "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n")?;
                for (k, v) in headers {
                    write!(out, "{k}: {v}\r\n")?;
                }
                write!(out, "\r\n")?;
            }
            Reply::File { body, headers, drop_first_at, ignore_range } => {
                let len = body.len();
                let start = range
                    .as_deref()
                    .filter(|_| !ignore_range)
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|n| n.parse::<usize>().ok());
                let (status, from) = match start {
                    Some(s) if s >= len => {
                        write!(out, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                        return Ok(());
                    }
                    Some(s) => (format!("206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}", len - 1), s),
                    None => ("200 OK".to_string(), 0),
                };
                write!(out, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", len - from)?;
                for (k, v) in headers {
                    write!(out, "{k}: {v}\r\n")?;
                }
                write!(out, "\r\n")?;
                let part = &body[from..];
                match drop_first_at {
                    Some(k) if count == 0 => {
                        out.write_all(&part[..k.min(part.len())])?;
                        out.flush()?;
                        out.shutdown(std::net::Shutdown::Both)?;
                    }
                    _ => out.write_all(part)?,
                }
            }
        }
        out.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ssv2a-fetch-tests-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sha(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic bytes that are not all alike.
fn payload(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ckpt").join(name)
}

fn fetcher(dir: &Path) -> Fetcher {
    let mut fx = Fetcher::new(dir.join("models"), dir.join("hf/hub"));
    fx.http.retries = 2;
    fx.http.retry_delay = Duration::from_millis(10);
    // Nothing in these tests may reach the real hub.
    fx.hf_endpoint = "http://127.0.0.1:9".into();
    fx
}

/// A manifest with `files` (TOML `[[file]]` tables).
fn manifest_text(name: &str, kind: &str, checkpoint: &str, config: Option<&str>, files: &str) -> String {
    let config = config.map(|c| format!("config = \"{c}\"\n")).unwrap_or_default();
    format!(
        "format = \"ssv2a-manifest\"\nformat_version = 1\nname = \"{name}\"\ntitle = \"test model\"\nlicence = \"MIT\"\nrules = 1\n\
         [convert]\nkind = \"{kind}\"\ncheckpoint = \"{checkpoint}\"\n{config}pack = \"{name}.safetensors\"\n{files}"
    )
}

fn manifest(name: &str, kind: &str, checkpoint: &str, config: Option<&str>, files: &str) -> Manifest {
    Manifest::parse(&manifest_text(name, kind, checkpoint, config, files), name).unwrap()
}

fn url_file(name: &str, sha256: &str, url: &str) -> String {
    format!("[[file]]\nname = \"{name}\"\nsha256 = \"{sha256}\"\nurls = [\"{url}\"]\n")
}

fn ready(s: FileState) -> (PathBuf, String) {
    match s {
        FileState::Ready { path, sha256 } => (path, sha256),
        other => panic!("expected a ready file, got {other:?}"),
    }
}

/// The AudioLDM fixture checkpoint and config served at /tiny/…, and a manifest for them.
fn serve_tiny_audioldm(server: &Server, name: &str) -> (Manifest, String) {
    let ckpt = std::fs::read(fixture("audioldm_tiny.ckpt")).unwrap();
    let cfg = std::fs::read(fixture("audioldm_tiny.json")).unwrap();
    server.file(&format!("/{name}/audioldm_tiny.ckpt"), &ckpt);
    server.file(&format!("/{name}/audioldm_tiny.json"), &cfg);
    let files = url_file("audioldm_tiny.ckpt", &sha(&ckpt), &server.url(&format!("/{name}/audioldm_tiny.ckpt")))
        + &url_file("audioldm_tiny.json", &sha(&cfg), &server.url(&format!("/{name}/audioldm_tiny.json")));
    let text = manifest_text(name, "audioldm", "audioldm_tiny.ckpt", Some("audioldm_tiny.json"), &files);
    (Manifest::parse(&text, name).unwrap(), text)
}

// ---------------------------------------------------------------------------------------------
// Manifests.

#[test]
fn committed_manifests_parse() {
    let builtin = Manifest::builtin().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let on_disk = Manifest::load_dir(&dir).unwrap();
    // Every committed manifest is built in, unchanged.
    let mut a: Vec<_> = builtin.iter().map(|m| m.name.clone()).collect();
    let mut b: Vec<_> = on_disk.iter().map(|m| m.name.clone()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for m in &on_disk {
        assert_eq!(builtin.iter().find(|x| x.name == m.name), Some(m));
    }
    ssv2a::fetch::manifest::check_unique(&builtin).unwrap();
    let get = |n: &str| builtin.iter().find(|m| m.name == n).unwrap_or_else(|| panic!("no manifest {n}"));
    for (name, kind, licence) in [
        ("ssv2a", "ssv2a", "none stated"),
        ("aggregator", "aggregator", "none stated"),
        ("audioldm-s-full-v2", "audioldm", "CC-BY-NC-SA-4.0"),
        ("clip-vit-l14", "clip", "MIT"),
        ("yolov8x-oiv7", "yolo", "AGPL-3.0"),
        ("dalle2-prior", "prior", "MIT"),
    ] {
        let m = get(name);
        assert_eq!((m.convert.kind.as_str(), m.licence.as_str()), (kind, licence), "{name}");
        assert_eq!(m.convert.dtype, "f16");
        for f in &m.files {
            for u in &f.urls {
                assert!(u.starts_with("https://"), "{name}: {u}");
            }
        }
    }
    // The authors' Google Drive files are by hand.
    for (name, files) in [("ssv2a", &["ssv2a.pth", "ssv2a.json"][..]), ("aggregator", &["agg.pth"][..])] {
        for f in files {
            assert!(get(name).file(f).unwrap().by_hand.is_some(), "{name}/{f}");
        }
    }
    assert_eq!(get("ssv2a").convert.config.as_deref(), Some("ssv2a.json"));
    // Zenodo's file name, not the model's.
    assert_eq!(get("audioldm-s-full-v2").convert.checkpoint, "audioldm-full-s-v2.ckpt");
    assert!(get("audioldm-s-full-v2").checkpoint().urls[0].contains("zenodo.org/record/7698295/"));
    // OpenAI publishes the sha256 as the URL's folder name.
    let clip = get("clip-vit-l14").checkpoint();
    for u in &clip.urls {
        assert_eq!(u.rsplit('/').nth(1), Some(clip.sha256.as_str()));
    }
    let prior = get("dalle2-prior");
    let hf = prior.checkpoint().hf.as_ref().unwrap();
    assert_eq!((hf.repo.as_str(), hf.path.as_str()), ("laion/DALLE2-PyTorch", "prior/latest.pth"));
    assert_eq!(prior.config_file().unwrap().hf.as_ref().unwrap().path, "prior/prior_config.json");
}

// ---------------------------------------------------------------------------------------------
// Downloads.

#[test]
fn normal_download() {
    let dir = tmp("normal");
    let server = Server::start();
    let body = payload(3_000_000, 1);
    server.file("/a.bin", &body);
    let m = manifest("m", "audioldm", "a.bin", None, &url_file("a.bin", &sha(&body), &server.url("/a.bin")));
    let fx = fetcher(&dir);
    let (path, got) = ready(fx.ensure_file(&m, &m.files[0], &mut Quiet).unwrap());
    assert_eq!(path, dir.join("models/sources/m/a.bin"));
    assert_eq!(got, sha(&body));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert!(!dir.join("models/sources/m/a.bin.partial").exists());
    let log = server.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].range, None);
    // Present and verified: no second request.
    ready(fx.ensure_file(&m, &m.files[0], &mut Quiet).unwrap());
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn dropped_connection_resumes_with_range() {
    let dir = tmp("dropped");
    let server = Server::start();
    let body = payload(4_000_000, 2);
    let half = body.len() / 2;
    server.route("/big.bin", Reply::File { body: Arc::new(body.clone()), headers: vec![], drop_first_at: Some(half), ignore_range: false });
    let m = manifest("m", "audioldm", "big.bin", None, &url_file("big.bin", &sha(&body), &server.url("/big.bin")));
    let fx = fetcher(&dir);
    let (path, got) = ready(fx.ensure_file(&m, &m.files[0], &mut Quiet).unwrap());
    assert_eq!(got, sha(&body));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    let log = server.requests();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].range, None);
    let resumed: usize = log[1].range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-')).unwrap().parse().unwrap();
    assert!(resumed > 0 && resumed <= half, "resumed at {resumed}");
}

#[test]
fn partial_from_an_earlier_run_is_resumed() {
    let dir = tmp("earlier");
    let server = Server::start();
    let body = payload(1_500_000, 3);
    server.file("/c.bin", &body);
    let m = manifest("m", "audioldm", "c.bin", None, &url_file("c.bin", &sha(&body), &server.url("/c.bin")));
    let fx = fetcher(&dir);
    let partial = dir.join("models/sources/m/c.bin.partial");
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, &body[..1000]).unwrap();
    let (path, _) = ready(fx.ensure_file(&m, &m.files[0], &mut Quiet).unwrap());
    assert_eq!(std::fs::read(path).unwrap(), body);
    assert_eq!(server.requests()[0].range.as_deref(), Some("bytes=1000-"));
    assert!(!partial.exists());

    // A partial that is already complete: the server answers 416 and the file is verified.
    let m3 = manifest("m3", "audioldm", "c.bin", None, &url_file("c.bin", &sha(&body), &server.url("/c.bin")));
    let partial3 = dir.join("models/sources/m3/c.bin.partial");
    std::fs::create_dir_all(partial3.parent().unwrap()).unwrap();
    std::fs::write(&partial3, &body).unwrap();
    let (path3, _) = ready(fx.ensure_file(&m3, &m3.files[0], &mut Quiet).unwrap());
    assert_eq!(std::fs::read(path3).unwrap(), body);
    assert_eq!(server.requests().last().unwrap().range, Some(format!("bytes={}-", body.len())));

    // A server that ignores the range: the file starts over and is still right.
    let server2 = Server::start();
    server2.route("/c.bin", Reply::File { body: Arc::new(body.clone()), headers: vec![], drop_first_at: None, ignore_range: true });
    let m2 = manifest("m2", "audioldm", "c.bin", None, &url_file("c.bin", &sha(&body), &server2.url("/c.bin")));
    let partial2 = dir.join("models/sources/m2/c.bin.partial");
    std::fs::create_dir_all(partial2.parent().unwrap()).unwrap();
    std::fs::write(&partial2, b"garbage that is not the start of the file").unwrap();
    let (path2, _) = ready(fx.ensure_file(&m2, &m2.files[0], &mut Quiet).unwrap());
    assert_eq!(std::fs::read(path2).unwrap(), body);
}

#[test]
fn checksum_mismatch_installs_nothing() {
    let dir = tmp("mismatch");
    let server = Server::start();
    let good = payload(200_000, 4);
    let bad = payload(200_000, 5);
    server.file("/x.bin", &bad);
    let url = server.url("/x.bin");
    let m = manifest("m", "audioldm", "x.bin", None, &url_file("x.bin", &sha(&good), &url));
    let fx = fetcher(&dir);
    let err = fx.ensure_file(&m, &m.files[0], &mut Quiet).unwrap_err().to_string();
    assert!(err.contains(&url) && err.contains("sha256") && err.contains(&sha(&good)) && err.contains("nothing was installed"), "{err}");
    // The rejected download is deleted (a corrupt prefix can never be resumed into a good file).
    assert!(!dir.join("models/sources/m/x.bin").exists());
    assert!(!dir.join("models/sources/m/x.bin.partial").exists());
    assert_eq!(server.requests().len(), 1, "a mismatch is not retried");

    // Through `fetch`: no pack either, and the model stays missing.
    let (mut tiny, _) = serve_tiny_audioldm(&server, "tiny");
    tiny.files[0].sha256 = sha(b"another file");
    let e = fx.fetch(&tiny, false, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("audioldm_tiny.ckpt") && e.contains("sha256"), "{e}");
    assert!(!fx.pack_path(&tiny).exists());
    assert_eq!(fx.status(&tiny).state, State::Missing);
}

#[test]
fn not_found_names_the_url() {
    let dir = tmp("notfound");
    let server = Server::start();
    let url = server.url("/missing.bin");
    let m = manifest("m", "audioldm", "missing.bin", None, &url_file("missing.bin", "", &url));
    let err = fetcher(&dir).ensure_file(&m, &m.files[0], &mut Quiet).unwrap_err().to_string();
    assert!(err.contains(&url) && err.contains("404"), "{err}");
    assert_eq!(server.requests().len(), 1, "a 404 is not retried");

    // The next URL of the same file is tried.
    let body = payload(10_000, 6);
    server.file("/mirror/missing.bin", &body);
    let files = format!("[[file]]\nname = \"missing.bin\"\nurls = [\"{url}\", \"{}\"]\n", server.url("/mirror/missing.bin"));
    let m = manifest("m", "audioldm", "missing.bin", None, &files);
    let (path, _) = ready(fetcher(&dir).ensure_file(&m, &m.files[0], &mut Quiet).unwrap());
    assert_eq!(std::fs::read(path).unwrap(), body);
}

// ---------------------------------------------------------------------------------------------
// Conversion and status.

#[test]
fn fetch_converts_a_real_checkpoint() {
    let dir = tmp("convert");
    let server = Server::start();
    let (m, text) = serve_tiny_audioldm(&server, "tiny");
    let fx = fetcher(&dir);
    assert_eq!(fx.status(&m).state, State::Missing);
    let pack = match fx.fetch(&m, false, &mut Quiet).unwrap() {
        Outcome::Installed { pack, tensors, bytes } => {
            assert!(tensors > 10 && bytes > 0);
            pack
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(pack, dir.join("models/tiny.safetensors"));
    let st = fx.status(&m);
    assert_eq!(st.state, State::Installed, "{}", st.detail);
    let meta = read_pack_metadata(&pack).unwrap();
    let ckpt_sha = sha(&std::fs::read(fixture("audioldm_tiny.ckpt")).unwrap());
    assert_eq!(meta["kind"], "audioldm");
    assert_eq!(meta["source"], "audioldm_tiny.ckpt");
    assert_eq!(meta["source_sha256"], ckpt_sha);
    assert_eq!(meta["config_sha256"], sha(&std::fs::read(fixture("audioldm_tiny.json")).unwrap()));
    assert_eq!(meta["manifest"], "tiny");
    assert_eq!(meta["manifest_rules"], "1");
    // The pack is the one `ssv2a convert` writes (same code path), apart from fetch's metadata.
    let by_hand = dir.join("by-convert.safetensors");
    let input = fixture("audioldm_tiny.ckpt");
    let mut job = ssv2a::registry::ConvertJob::new("audioldm", &input, &by_hand);
    let cfg = fixture("audioldm_tiny.json");
    job.config = Some(&cfg);
    ssv2a::registry::convert_checkpoint(&job).unwrap();
    let mut a = read_pack_metadata(&by_hand).unwrap();
    let mut b = meta.clone();
    for k in ["manifest", "manifest_rules"] {
        b.remove(k);
    }
    a.remove("source");
    b.remove("source");
    assert_eq!(a, b);
    let (sa, sb) = (std::fs::metadata(&by_hand).unwrap().len(), std::fs::metadata(&pack).unwrap().len());
    assert!(sa.abs_diff(sb) < 100, "{sa} vs {sb}");

    // Installed: nothing is downloaded again.
    let n = server.requests().len();
    assert!(matches!(fx.fetch(&m, false, &mut Quiet).unwrap(), Outcome::AlreadyInstalled { .. }));
    assert_eq!(server.requests().len(), n);

    // Stale: newer rules, another source file, an old pack format.
    let newer = Manifest::parse(&text.replace("rules = 1", "rules = 2"), "newer").unwrap();
    let st = fx.status(&newer);
    assert_eq!(st.state, State::Stale);
    assert!(st.detail.contains("rules 1"), "{}", st.detail);
    let other = Manifest::parse(&text.replace(&ckpt_sha, &sha(b"other")), "other").unwrap();
    let st = fx.status(&other);
    assert_eq!(st.state, State::Stale);
    assert!(st.detail.contains("different file"), "{}", st.detail);
    let mut old_meta = ssv2a::weights::pack_metadata("audioldm", "{}", "f16");
    old_meta.insert("version".into(), "0".into());
    std::fs::write(&pack, ssv2a::weights::serialize_pack(&[], &old_meta).unwrap()).unwrap();
    let st = fx.status(&m);
    assert_eq!(st.state, State::Stale);
    assert!(st.detail.contains("format version 0"), "{}", st.detail);
    std::fs::write(&pack, b"not a pack").unwrap();
    assert_eq!(fx.status(&m).state, State::Stale);
    // A stale pack is replaced by the next fetch, from the files already downloaded.
    assert!(matches!(fx.fetch(&m, false, &mut Quiet).unwrap(), Outcome::Installed { .. }));
    assert_eq!(fx.status(&m).state, State::Installed);
    assert_eq!(server.requests().len(), n);
}

#[test]
fn by_hand_files_get_instructions_then_install() {
    let dir = tmp("byhand");
    let ckpt = std::fs::read(fixture("audioldm_tiny.ckpt")).unwrap();
    let files = format!(
        "[[file]]\nname = \"audioldm_tiny.ckpt\"\nsha256 = \"{}\"\n[file.by_hand]\npage = \"https://drive.example.org/folder\"\ninstructions = \"Right-click it and choose Download.\"\n",
        sha(&ckpt)
    );
    let m = manifest("hand", "audioldm", "audioldm_tiny.ckpt", None, &files);
    let fx = fetcher(&dir);
    let dest = dir.join("models/sources/hand/audioldm_tiny.ckpt");
    match fx.fetch(&m, false, &mut Quiet).unwrap() {
        Outcome::NeedsFilesByHand(v) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].dest, dest);
            let text = v[0].to_string();
            assert!(text.contains(&dest.display().to_string()) && text.contains("https://drive.example.org/folder") && text.contains(&sha(&ckpt)), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let st = fx.status(&m);
    assert_eq!(st.state, State::Missing);
    assert!(st.detail.contains("by hand"), "{}", st.detail);
    // A wrong file in its place is refused, and left alone.
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, b"wrong").unwrap();
    let e = fx.fetch(&m, false, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("sha256") && e.contains(&dest.display().to_string()), "{e}");
    assert!(dest.exists());
    // The right file: converted and installed.
    std::fs::copy(fixture("audioldm_tiny.ckpt"), &dest).unwrap();
    // (The tiny checkpoint needs its config; without one the official config applies and the
    // shapes differ, so give it the fixture's config by hand too.)
    let files =
        files + "[[file]]\nname = \"audioldm_tiny.json\"\n[file.by_hand]\npage = \"https://drive.example.org/folder\"\ninstructions = \"Download it.\"\n";
    let m = manifest("hand", "audioldm", "audioldm_tiny.ckpt", Some("audioldm_tiny.json"), &files);
    assert!(matches!(fx.fetch(&m, false, &mut Quiet).unwrap(), Outcome::NeedsFilesByHand(v) if v.len() == 1));
    std::fs::copy(fixture("audioldm_tiny.json"), dir.join("models/sources/hand/audioldm_tiny.json")).unwrap();
    assert!(matches!(fx.fetch(&m, false, &mut Quiet).unwrap(), Outcome::Installed { .. }));
    assert_eq!(fx.status(&m).state, State::Installed);
}

#[test]
fn mirror_replaces_official_urls() {
    let dir = tmp("mirror");
    let server = Server::start();
    let body = payload(50_000, 7);
    server.file("/mirror/mm/a.bin", &body);
    server.file("/mirror/mm/hand.bin", &body);
    let official = server.url("/official/a.bin");
    let files = url_file("a.bin", &sha(&body), &official)
        + "[[file]]\nname = \"hand.bin\"\n[file.by_hand]\npage = \"https://example.org\"\ninstructions = \"Download it.\"\n";
    let m = manifest("mm", "audioldm", "a.bin", None, &files);
    let mut fx = fetcher(&dir);
    fx.mirror = Some(server.url("/mirror/"));
    ready(fx.ensure_file(&m, &m.files[0], &mut Quiet).unwrap());
    let (p, _) = ready(fx.ensure_file(&m, &m.files[1], &mut Quiet).unwrap());
    assert_eq!(std::fs::read(p).unwrap(), body);
    assert!(server.requests().iter().all(|r| r.path.starts_with("/mirror/mm/")), "{:?}", server.requests());
}

#[test]
fn unimplemented_kind_downloads_then_says_so() {
    let Some(kind) = KINDS.iter().find(|k| k.convert.is_none()).map(|k| k.name) else {
        return; // every kind converts: nothing to test
    };
    let dir = tmp("unimplemented");
    let server = Server::start();
    let body = payload(1000, 8);
    server.file("/w.pth", &body);
    let m = manifest("later", kind, "w.pth", None, &url_file("w.pth", &sha(&body), &server.url("/w.pth")));
    let fx = fetcher(&dir);
    match fx.fetch(&m, false, &mut Quiet).unwrap() {
        Outcome::NotConvertible { kind: k, files } => {
            assert_eq!(&k, kind);
            assert_eq!(files, vec![dir.join("models/sources/later/w.pth")]);
        }
        other => panic!("{other:?}"),
    }
    let st = fx.status(&m);
    assert_eq!(st.state, State::Missing);
    assert!(st.detail.contains("source files present"), "{}", st.detail);
}

// ---------------------------------------------------------------------------------------------
// Hugging Face hub cache.

#[test]
fn hub_cache_layout_and_reuse() {
    let dir = tmp("hub");
    let server = Server::start();
    let body = payload(300_000, 9);
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let etag = sha(&body);
    // Like the hub: the resolve URL redirects to a CDN and carries the metadata.
    server.route(
        "/org/tiny/resolve/main/sub/w.bin",
        Reply::Redirect { to: "/cdn/blob-w".into(), headers: vec![("X-Repo-Commit".into(), commit.into()), ("X-Linked-Etag".into(), format!("\"{etag}\""))] },
    );
    server.route(
        "/cdn/blob-w",
        Reply::File { body: Arc::new(body.clone()), headers: vec![("ETag".into(), "\"cdn-etag\"".into())], drop_first_at: None, ignore_range: false },
    );
    let files = format!("[[file]]\nname = \"w.bin\"\nsha256 = \"{etag}\"\n[file.hf]\nrepo = \"org/tiny\"\nrevision = \"main\"\npath = \"sub/w.bin\"\n");
    let m = manifest("hubm", "audioldm", "w.bin", None, &files);
    let mut fx = fetcher(&dir);
    fx.hf_endpoint = server.base.clone();
    let (path, _) = ready(fx.ensure_file(&m, &m.files[0], &mut Quiet).unwrap());
    let repo = dir.join("hf/hub/models--org--tiny");
    assert_eq!(path, repo.join("snapshots").join(commit).join("sub/w.bin"));
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), commit);
    assert_eq!(std::fs::read(repo.join("blobs").join(&etag)).unwrap(), body);
    assert_eq!(std::fs::read(&path).unwrap(), body);
    #[cfg(unix)]
    assert_eq!(std::fs::read_link(&path).unwrap(), Path::new("../../../blobs").join(&etag));
    // No leftovers in blobs/.
    let blobs: Vec<_> = std::fs::read_dir(repo.join("blobs")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    // Reused: no request.
    let n = server.requests().len();
    let (again, _) = ready(fx.ensure_file(&m, &m.files[0], &mut Quiet).unwrap());
    assert_eq!(again, path);
    assert_eq!(server.requests().len(), n);

    // An unpinned revision from a server that does not say which commit it is: a clear error,
    // nothing left in the cache.
    server.file("/org/plain/resolve/main/w.bin", &body);
    let files = "[[file]]\nname = \"w.bin\"\n[file.hf]\nrepo = \"org/plain\"\nrevision = \"main\"\npath = \"w.bin\"\n";
    let mp = manifest("plain", "audioldm", "w.bin", None, files);
    let e = fx.ensure_file(&mp, &mp.files[0], &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("org/plain") && e.contains("X-Repo-Commit"), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.join("hf/hub/models--org--plain/blobs")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    // A cache written by huggingface_hub for a pinned revision, with no server at all.
    let dir2 = tmp("hub-pinned");
    let fx2 = fetcher(&dir2);
    let repo2 = dir2.join("hf/hub/models--laion--DALLE2-PyTorch");
    std::fs::create_dir_all(repo2.join("blobs")).unwrap();
    std::fs::create_dir_all(repo2.join("snapshots").join(commit).join("prior")).unwrap();
    std::fs::write(repo2.join("blobs/abc123"), &body).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("../../../blobs/abc123", repo2.join("snapshots").join(commit).join("prior/latest.pth")).unwrap();
    #[cfg(not(unix))]
    std::fs::write(repo2.join("snapshots").join(commit).join("prior/latest.pth"), &body).unwrap();
    let files = format!("[[file]]\nname = \"latest.pth\"\n[file.hf]\nrepo = \"laion/DALLE2-PyTorch\"\nrevision = \"{commit}\"\npath = \"prior/latest.pth\"\n");
    let m2 = manifest("pinned", "audioldm", "latest.pth", None, &files);
    let (p2, s2) = ready(fx2.ensure_file(&m2, &m2.files[0], &mut Quiet).unwrap());
    assert_eq!(p2, repo2.join("snapshots").join(commit).join("prior/latest.pth"));
    assert_eq!(s2, etag);
    // A cached file that fails the manifest's sha256 is an error naming it (and is left alone).
    let files = files.replace("name = \"latest.pth\"\n", &format!("name = \"latest.pth\"\nsha256 = \"{}\"\n", sha(b"x")));
    let m3 = manifest("pinned", "audioldm", "latest.pth", None, &files);
    let e = fx2.ensure_file(&m3, &m3.files[0], &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("snapshots") && e.contains("sha256"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The command line.

#[cfg(feature = "cli")]
#[test]
fn cli_fetch_and_models() {
    use std::process::Command;
    let dir = tmp("cli");
    let server = Server::start();
    let (_, text) = serve_tiny_audioldm(&server, "tiny");
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("tiny.toml"), &text).unwrap();
    let broken = manifest_text("broken", "audioldm", "gone.ckpt", None, &url_file("gone.ckpt", "", &server.url("/gone.ckpt")));
    std::fs::write(manifests.join("broken.toml"), broken).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ssv2a"))
            .args(args)
            .arg("--manifests")
            .arg(&manifests)
            .arg("--models-dir")
            .arg(dir.join("models"))
            .env("HF_HOME", dir.join("hf"))
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .env_remove("SSV2A_MIRROR")
            .env_remove("SSV2A_MODELS")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (ok, out) = run(&["models"]);
    assert!(ok, "{out}");
    assert!(out.lines().any(|l| l.starts_with("tiny") && l.contains("missing")), "{out}");
    let (ok, out) = run(&["fetch", "tiny"]);
    assert!(ok, "{out}");
    assert!(out.contains("tiny: installed"), "{out}");
    let (ok, out) = run(&["models"]);
    assert!(ok && out.lines().any(|l| l.starts_with("tiny") && l.contains("installed")), "{out}");
    let (ok, out) = run(&["models", "--json"]);
    let line = out.lines().find(|l| l.contains("\"name\":\"tiny\"")).unwrap_or_else(|| panic!("{out}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(ok && v["state"] == "installed", "{out}");
    // Everything: `tiny` is already there, `broken` fails with its URL, and the exit code says so.
    let (ok, out) = run(&["fetch"]);
    assert!(!ok, "{out}");
    assert!(out.contains("tiny: already installed") && out.contains(&server.url("/gone.ckpt")) && out.contains("404"), "{out}");
    let (ok, out) = run(&["fetch", "nonesuch"]);
    assert!(!ok && out.contains("unknown model `nonesuch`"), "{out}");
    // --audioldm names a release these manifests do not have / no release at all.
    let (ok, out) = run(&["fetch", "--audioldm", "m"]);
    assert!(!ok && out.contains("no manifest `audioldm-m-full`") && !out.contains("tiny: "), "{out}");
    let (ok, out) = run(&["fetch", "--audioldm", "xl"]);
    assert!(!ok && out.contains("--audioldm") && out.contains("`xl`"), "{out}");
}

/// `ssv2a fetch` installs audioldm-s-full-v2 by default (as before the m and l manifests existed);
/// `--audioldm m|l` swaps in that release, or adds it to named models.
#[test]
fn audioldm_release_selection() {
    let builtin = Manifest::builtin().unwrap();
    let names = |v: Vec<&Manifest>| v.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    let all = names(ssv2a::fetch::select(&builtin, &[], None).unwrap());
    assert_eq!(all, ["ssv2a", "aggregator", "audioldm-s-full-v2", "clip-vit-l14", "yolov8x-oiv7", "dalle2-prior"]);
    assert_eq!(names(ssv2a::fetch::select(&builtin, &[], Some("s")).unwrap()), all);
    let m = names(ssv2a::fetch::select(&builtin, &[], Some("m")).unwrap());
    assert_eq!(m, ["ssv2a", "aggregator", "audioldm-m-full", "clip-vit-l14", "yolov8x-oiv7", "dalle2-prior"]);
    let picked = names(ssv2a::fetch::select(&builtin, &["clip-vit-l14".into()], Some("l")).unwrap());
    assert_eq!(picked, ["clip-vit-l14", "audioldm-l-full"]);
    assert_eq!(names(ssv2a::fetch::select(&builtin, &["audioldm-l-full".into()], None).unwrap()), ["audioldm-l-full"]);
    let e = ssv2a::fetch::select(&builtin, &[], Some("xl")).unwrap_err().to_string();
    assert!(e.contains("`xl`") && e.contains("s (audioldm-s-full-v2)"), "{e}");
    let e = ssv2a::fetch::select(&builtin, &["nope".into()], Some("m")).unwrap_err().to_string();
    assert!(e.contains("unknown model `nope`"), "{e}");
    // The releases' manifests: the URLs and cache names audioldm 0.1.1 uses (utils.py
    // get_metadata), roberta-base's tokenizer pinned as for s-full-v2.
    for (name, file, record) in [("audioldm-m-full", "audioldm-m-full.ckpt", "7813012"), ("audioldm-l-full", "audioldm-full-l.ckpt", "7698295")] {
        let m = builtin.iter().find(|m| m.name == name).unwrap();
        assert_eq!((m.convert.kind.as_str(), m.convert.checkpoint.as_str(), m.licence.as_str()), ("audioldm", file, "CC-BY-NC-SA-4.0"));
        assert_eq!(m.convert.pack, format!("{name}.safetensors"));
        assert_eq!(m.checkpoint().urls[0], format!("https://zenodo.org/record/{record}/files/{file}?download=1"));
        assert_eq!(m.checkpoint().reuse, [format!("~/.cache/audioldm/{name}.ckpt")]);
        assert!(m.convert.tokenizer.is_some() && m.file("vocab.json").unwrap().hf.as_ref().unwrap().revision.len() == 40);
    }
}

/// `[convert.tokenizer]`: the tokenizer's files (here from a pinned hub revision, as roberta-base's)
/// reach the conversion and land in the pack; a tokenizer entry naming no file is refused when
/// the manifest is read; the committed AudioLDM manifest takes roberta-base's files.
#[test]
fn fetch_passes_the_tokenizer_files_to_the_conversion() {
    let dir = tmp("tokenizer");
    let server = Server::start();
    let ckpt = std::fs::read(fixture("audioldm_tiny.ckpt")).unwrap();
    let cfg = std::fs::read(fixture("audioldm_tiny.json")).unwrap();
    server.file("/tok/audioldm_tiny.ckpt", &ckpt);
    server.file("/tok/audioldm_tiny.json", &cfg);
    // A vocabulary within the tiny tower's 100 rows.
    let mut vocab: Vec<String> = ["<s>", "<pad>", "</s>", "<unk>"].iter().map(|s| s.to_string()).collect();
    vocab.extend(('a'..='z').map(String::from));
    vocab.extend(["Ġ", "Ġr", "<mask>"].iter().map(|s| s.to_string()));
    let json: serde_json::Map<String, serde_json::Value> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::json!(i))).collect();
    let vocab_json = serde_json::to_vec(&json).unwrap();
    let merges = "#version: 0.2\nĠ r\n".as_bytes().to_vec();
    let commit = "e2da8e2f811d1448a5b465c236feacd80ffbac7b";
    server.file(&format!("/org/roberta/resolve/{commit}/vocab.json"), &vocab_json);
    server.file(&format!("/org/roberta/resolve/{commit}/merges.txt"), &merges);
    let hf =
        |name: &str| format!("[[file]]\nname = \"{name}\"\nsha256 = \"\"\n[file.hf]\nrepo = \"org/roberta\"\nrevision = \"{commit}\"\npath = \"{name}\"\n");
    let files = "[convert.tokenizer]\nvocab = \"vocab.json\"\nmerges = \"merges.txt\"\n".to_string()
        + &url_file("audioldm_tiny.ckpt", &sha(&ckpt), &server.url("/tok/audioldm_tiny.ckpt"))
        + &url_file("audioldm_tiny.json", &sha(&cfg), &server.url("/tok/audioldm_tiny.json"))
        + &hf("vocab.json")
        + &hf("merges.txt");
    let m = manifest("tok", "audioldm", "audioldm_tiny.ckpt", Some("audioldm_tiny.json"), &files);
    assert_eq!(m.convert.tokenizer.as_ref().map(|t| (t.vocab.as_str(), t.merges.as_str())), Some(("vocab.json", "merges.txt")));
    let mut fx = fetcher(&dir);
    fx.hf_endpoint = server.base.clone();
    let pack = match fx.fetch(&m, false, &mut Quiet).unwrap() {
        Outcome::Installed { pack, .. } => pack,
        other => panic!("{other:?}"),
    };
    let meta = read_pack_metadata(&pack).unwrap();
    assert_eq!(meta[ssv2a::models::clap::TOKENIZER_VOCAB_META].as_bytes(), &vocab_json[..]);
    assert_eq!(meta[ssv2a::models::clap::TOKENIZER_MERGES_META].as_bytes(), &merges[..]);
    assert_eq!(meta["tokenizer.merges_sha256"], sha(&merges));
    assert_eq!(fx.status(&m).state, State::Installed);

    // A tokenizer entry that names no file.
    let text = manifest_text(
        "bad",
        "audioldm",
        "a.bin",
        None,
        &("[convert.tokenizer]\nvocab = \"vocab.json\"\nmerges = \"nope.txt\"\n".to_string()
            + &hf("vocab.json")
            + &url_file("a.bin", "", "https://example.org/a.bin")),
    );
    let e = Manifest::parse(&text, "bad").unwrap_err().to_string();
    assert!(e.contains("convert.tokenizer.merges") && e.contains("nope.txt"), "{e}");

    // The committed manifest: roberta-base's files, pinned, stored in the AudioLDM pack.
    let builtin = Manifest::builtin().unwrap();
    let a = builtin.iter().find(|m| m.name == "audioldm-s-full-v2").unwrap();
    let t = a.convert.tokenizer.as_ref().unwrap();
    for name in [&t.vocab, &t.merges] {
        let h = a.file(name).unwrap().hf.as_ref().unwrap();
        assert_eq!((h.repo.as_str(), h.path.as_str(), h.revision.len()), ("FacebookAI/roberta-base", name.as_str(), 40));
    }
    assert!(a.rules >= 3);
}
