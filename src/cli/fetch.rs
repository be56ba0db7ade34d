//! `ssv2a fetch [MODEL…]` and `ssv2a models` (the work is in [`ssv2a::fetch`]; manifests and
//! locations are described in models/README.md).

use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use ssv2a::fetch::{Fetcher, Manifest, Outcome, Progress, State};

#[derive(clap::Args)]
pub struct Common {
    /// Folder for packs and downloaded source files [default: $SSV2A_MODELS, else
    /// ~/.cache/ssv2a/models].
    #[arg(long, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// Read the manifests (*.toml) from this folder instead of those built in
    /// [default: $SSV2A_MANIFESTS].
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct FetchArgs {
    /// Models to fetch (names from `ssv2a models`); all of them when none is given.
    models: Vec<String>,
    #[command(flatten)]
    common: Common,
    /// Download every file that does not come from Hugging Face from MIRROR/<model>/<file>
    /// instead of its official URL (files normally downloaded by hand too, when present)
    /// [default: $SSV2A_MIRROR].
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Hugging Face server [default: $HF_ENDPOINT, else https://huggingface.co].
    #[arg(long, value_name = "URL")]
    hf_endpoint: Option<String>,
    /// Convert again (and download what is missing) even if the pack is installed.
    #[arg(long)]
    force: bool,
    /// Which AudioLDM release to install: s (audioldm-s-full-v2, the default and the one SSV2A
    /// was published with), m (audioldm-m-full) or l (audioldm-l-full). Without model names it
    /// replaces the default in the full set; with names it is added to them.
    #[arg(long, value_name = "s|m|l")]
    audioldm: Option<String>,
    /// Retries of a URL after a dropped connection or a server error (resumed where it stopped).
    #[arg(long, default_value_t = 3)]
    retries: u32,
}

#[derive(clap::Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    common: Common,
    /// One JSON object per model instead of a table.
    #[arg(long)]
    json: bool,
}

fn setup(c: &Common) -> anyhow::Result<(Fetcher, Vec<Manifest>)> {
    let mut fx = Fetcher::from_env()?;
    if let Some(d) = &c.models_dir {
        if d.exists() && !d.is_dir() {
            bail!("--models-dir {}: not a folder", d.display());
        }
        fx.models_dir = d.clone();
    }
    let dir = c.manifests.clone().or_else(|| std::env::var_os("SSV2A_MANIFESTS").filter(|v| !v.is_empty()).map(PathBuf::from));
    let manifests = match dir {
        Some(d) => Manifest::load_dir(&d)?,
        None => Manifest::builtin()?,
    };
    if manifests.is_empty() {
        bail!("no manifests found");
    }
    Ok((fx, manifests))
}

pub fn fetch(a: FetchArgs) -> anyhow::Result<()> {
    let (mut fx, manifests) = setup(&a.common)?;
    if let Some(m) = a.mirror {
        fx.mirror = Some(m);
    }
    if let Some(e) = a.hf_endpoint {
        fx.hf_endpoint = e;
    }
    fx.http.retries = a.retries;
    let selected = ssv2a::fetch::select(&manifests, &a.models, a.audioldm.as_deref())?;
    let mut bars = Bars { bar: None };
    let (mut failed, mut by_hand, mut waiting) = (vec![], vec![], vec![]);
    for m in selected {
        eprintln!("==> {}: {} (licence: {})", m.name, m.title, m.licence);
        match fx.fetch(m, a.force, &mut bars) {
            Ok(Outcome::AlreadyInstalled { pack }) => println!("{}: already installed ({})", m.name, pack.display()),
            Ok(Outcome::Installed { pack, tensors, bytes }) => {
                println!("{}: installed {} ({tensors} tensors, {:.1} MB)", m.name, pack.display(), bytes as f64 / 1e6)
            }
            Ok(Outcome::NeedsFilesByHand(files)) => {
                for f in &files {
                    println!("{f}");
                }
                by_hand.push(m.name.as_str());
            }
            Ok(Outcome::NotConvertible { kind, files }) => {
                let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                println!(
                    "{}: downloaded and verified ({}), but converting kind `{kind}` is not available in this version of ssv2a yet; \
                     run `ssv2a fetch {}` again with a newer ssv2a",
                    m.name,
                    list.join(", "),
                    m.name
                );
                waiting.push(m.name.as_str());
            }
            Err(e) => {
                bars.finish();
                println!("{}: FAILED: {e}", m.name);
                failed.push(m.name.as_str());
            }
        }
    }
    if !by_hand.is_empty() {
        println!("waiting for files downloaded by hand: {} (instructions above)", by_hand.join(", "));
    }
    if !waiting.is_empty() {
        println!("downloaded, conversion not available yet: {}", waiting.join(", "));
    }
    if !failed.is_empty() {
        bail!("could not fetch {}", failed.join(", "));
    }
    Ok(())
}

pub fn models(a: ModelsArgs) -> anyhow::Result<()> {
    let (fx, manifests) = setup(&a.common)?;
    if a.json {
        for m in &manifests {
            let s = fx.status(m);
            let v = serde_json::json!({
                "name": s.name, "state": s.state.as_str(), "detail": s.detail, "pack": s.pack,
                "pack_bytes": s.pack_bytes, "kind": m.convert.kind, "licence": m.licence, "title": m.title,
            });
            println!("{}", serde_json::to_string(&v).context("writing JSON")?);
        }
        return Ok(());
    }
    println!("models folder: {}", fx.models_dir.display());
    println!("{:<20} {:<10} {:>9}  {:<16} detail", "model", "state", "size", "licence");
    for m in &manifests {
        let s = fx.status(m);
        let size = match (s.state, s.pack_bytes) {
            (State::Missing, _) | (_, None) => "-".to_string(),
            (_, Some(b)) => format!("{:.1} MB", b as f64 / 1e6),
        };
        println!("{:<20} {:<10} {:>9}  {:<16} {}", s.name, s.state.as_str(), size, m.licence, s.detail);
    }
    Ok(())
}

/// Progress bars on stderr (hidden when stderr is not a terminal; then one line per task).
struct Bars {
    bar: Option<ProgressBar>,
}

impl Progress for Bars {
    fn note(&mut self, msg: &str) {
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(msg),
            _ => eprintln!("{msg}"),
        }
    }

    fn start(&mut self, label: &str, total: Option<u64>, done: u64) {
        self.finish();
        let (b, template) = match total {
            Some(t) => (ProgressBar::new(t), "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"),
            None => (ProgressBar::no_length(), "{spinner} {msg} {bytes} {bytes_per_sec}"),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(label.to_string());
        b.set_position(done);
        if b.is_hidden() {
            let size = total.map(|t| format!(" ({:.1} MB)", t as f64 / 1e6)).unwrap_or_default();
            let from = if done > 0 { format!(", resuming at {:.1} MB", done as f64 / 1e6) } else { String::new() };
            eprintln!("{label}{size}{from}");
        }
        self.bar = Some(b);
    }

    fn advance(&mut self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
