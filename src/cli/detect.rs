//! `ssv2a detect IMAGE... --weights YOLO_PACK [--annotate OUT.png] [--crops DIR]`: the
//! official SSV2A sound-source detection (YOLOv8, TTA, NMS, top-k, crops) on image files;
//! prints one line per source. Defaults are `ssv2a.json`'s (conf 0.25, iou 0, max_det 64,
//! top_k 16, TTA on, the official imgsz rule); see `ssv2a::models::detect`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use ssv2a::models::detect::{draw_boxes, CropMode, Detector, Settings};
use ssv2a::{Gpu, Weights};

#[derive(clap::Args)]
pub struct Args {
    /// Image files (PNG, JPEG, WebP). As in SSV2A, the first image sets the detection size and
    /// the crop size for all.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// YOLO weight pack (`ssv2a convert --kind yolo`).
    #[arg(long)]
    weights: PathBuf,
    /// Confidence threshold (ssv2a.json: 0.25; the detector function's default: 0.5).
    #[arg(long, default_value_t = 0.25)]
    conf: f32,
    /// NMS IoU threshold (ssv2a.json: 0, i.e. any overlap within a class suppresses; detector default 0.5).
    #[arg(long, default_value_t = 0.0)]
    iou: f32,
    /// Most boxes kept by NMS.
    #[arg(long, default_value_t = 64)]
    max_det: usize,
    /// Sources kept per image, best first (0 = all).
    #[arg(long, default_value_t = 16)]
    top_k: usize,
    /// Turn test-time augmentation off (SSV2A runs it).
    #[arg(long)]
    no_augment: bool,
    /// Detection size: `ssv2a` (official: the first image's W×H read as h×w), `image` (the first
    /// image's H×W), `N` (N×N) or `HxW`.
    #[arg(long, default_value = "ssv2a")]
    imgsz: String,
    /// Keep each crop's aspect ratio instead of stretching it to the image size.
    #[arg(long)]
    keep_aspect: bool,
    /// Write the image with the boxes drawn (one input image only).
    #[arg(long)]
    annotate: Option<PathBuf>,
    /// Write each source's crop as DIR/<image stem>_<k>.png.
    #[arg(long)]
    crops: Option<PathBuf>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    if a.annotate.is_some() && a.images.len() != 1 {
        bail!("--annotate takes one input image ({} given)", a.images.len());
    }
    if let Some(out) = &a.annotate {
        ssv2a::fs::check_writable(out)?;
    }
    if let Some(dir) = &a.crops {
        if !dir.is_dir() {
            bail!("--crops {}: no such folder", dir.display());
        }
    }
    let s = Settings {
        conf: a.conf,
        iou: a.iou,
        max_det: a.max_det,
        top_k: (a.top_k > 0).then_some(a.top_k),
        augment: !a.no_augment,
        agnostic: false,
        imgsz: a.imgsz.parse().with_context(|| format!("--imgsz {}", a.imgsz))?,
        crop: if a.keep_aspect { CropMode::KeepAspect } else { CropMode::Stretch },
    };
    let images = a.images.iter().map(|p| Ok(ssv2a::media::imageio::open(p)?.to_rgb())).collect::<anyhow::Result<Vec<_>>>()?;
    let gpu = Gpu::new().await?;
    let det = Detector::load(&Weights::from_file(&gpu, &a.weights)?)?;
    let t0 = std::time::Instant::now();
    let refs: Vec<&_> = images.iter().collect();
    let found = det.sources(&gpu, &refs, &s).await?;
    eprintln!("detected in {:.2} s ({} image(s), TTA {})", t0.elapsed().as_secs_f64(), images.len(), if s.augment { "on" } else { "off" });
    if let Some(dir) = &a.crops {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for ((path, img), srcs) in a.images.iter().zip(&images).zip(&found) {
        println!("{} ({}x{}): {} source(s)", path.display(), img.width, img.height, srcs.len());
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for (k, src) in srcs.iter().enumerate() {
            let d = &src.detection;
            let [x0, y0, x1, y1] = d.xyxy;
            println!("  {k:>2} {:<28} class {:>3}  score {:.4}  box {x0:.1} {y0:.1} {x1:.1} {y1:.1}", d.name, d.class, d.score);
            if let Some(dir) = &a.crops {
                let out = dir.join(format!("{stem}_{k}.png"));
                ssv2a::fs::write_atomic(&out, &ssv2a::media::imageio::encode_png(&src.crop)?)?;
            }
        }
        if let Some(out) = &a.annotate {
            let mut canvas = img.clone();
            let dets: Vec<_> = srcs.iter().map(|s| s.detection.clone()).collect();
            draw_boxes(&mut canvas, &dets);
            ssv2a::fs::write_atomic(out, &ssv2a::media::imageio::encode_png(&canvas)?)?;
        }
    }
    Ok(())
}

/// CPU seconds (user + system, all threads) this process has used, from /proc/self/stat
/// (Linux; None elsewhere). On lavapipe the "GPU" work runs on the process's own threads, so
/// this measures the work done independently of how loaded a shared machine is.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the command name; clock ticks
    // of 1/100 s (USER_HZ on every Linux configuration in practice).
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

/// `ssv2a bench yolo`: forward time of a YOLO pack at size×size on random pixels, without and
/// with TTA (readback included, as `detect` runs it), after one warm-up run that compiles the
/// pipelines; wall time and process CPU time per run. Without a pack, random yolov8x-oiv7
/// weights (f16) are generated.
pub async fn bench(weights: Option<&std::path::Path>, size: usize, reps: usize, profile: bool) -> anyhow::Result<()> {
    use ssv2a::tensor::HostTensor;
    let now = std::time::Instant::now;
    if size == 0 || !size.is_multiple_of(32) {
        bail!("--size must be a positive multiple of 32");
    }
    let t0 = now();
    let gpu = Gpu::new().await?;
    let info = gpu.info();
    println!("adapter: {} ({:?})", info.name, info.backend);
    let (w, what) = match weights {
        Some(p) => (Weights::from_file(&gpu, p)?, p.display().to_string()),
        None => {
            let cfg = ssv2a::models::yolo::Config::x_oiv7();
            (Weights::from_bytes(&gpu, ssv2a::models::yolo::random_pack(&cfg, 1, true)?, "random")?, "random yolov8x-oiv7 (f16)".into())
        }
    };
    let det = Detector::load(&w)?;
    let c = &det.model.config;
    println!("pack {what}: depth {} width {} nc {}; init + load {:.2} s", c.depth_multiple, c.width_multiple, c.nc, now().duration_since(t0).as_secs_f64());
    let x = HostTensor::new(vec![1, 3, size, size], ssv2a::rng::Rng::new(7).uniforms(3 * size * size, 0.0, 1.0))?;
    // (wall s, cpu s) of one call.
    async fn timed<F: std::future::Future<Output = ssv2a::Result<HostTensor>>>(f: F) -> anyhow::Result<(f64, f64)> {
        let (t, c) = (std::time::Instant::now(), cpu_seconds());
        f.await?;
        Ok((t.elapsed().as_secs_f64(), cpu_seconds().zip(c).map(|(a, b)| a - b).unwrap_or(f64::NAN)))
    }
    let (wu, wc) = timed(det.raw(&gpu, &x)).await?;
    println!("warm-up (pipeline compile + run): {wu:.2} s wall, {wc:.2} s CPU");
    if profile {
        let xt = ssv2a::Tensor::upload(&gpu, &x)?;
        let prof = det.model.profile(&xt, ssv2a::bench::native_now).await?;
        let total: f64 = prof.iter().map(|p| p.1).sum();
        let line: Vec<String> = prof.iter().map(|(n, t)| format!("{}:{:.0}", n.trim_start_matches("model."), t * 1e3)).collect();
        println!("per layer (ms wall, GPU synced after each; sum {total:.2} s): {}", line.join(" "));
    }
    let mut plain = vec![];
    for _ in 0..reps.max(1) {
        plain.push(timed(det.raw(&gpu, &x)).await?);
    }
    let (tu, tc) = timed(det.raw_augmented(&gpu, &x)).await?;
    println!("TTA warm-up (compiles for the scaled sizes): {tu:.2} s wall, {tc:.2} s CPU");
    let mut tta = vec![];
    for _ in 0..reps.max(1) {
        tta.push(timed(det.raw_augmented(&gpu, &x)).await?);
    }
    let report = |name: &str, v: &[(f64, f64)]| {
        let best = v.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let cpu = v.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let runs: Vec<String> = v.iter().map(|(w, c)| format!("{w:.2}/{c:.2}")).collect();
        println!("yolo {size}x{size} {name}: best {best:.3} s wall, {cpu:.2} s CPU (runs wall/CPU s: {})", runs.join(", "));
    };
    report("no TTA", &plain);
    report("TTA (3 passes)", &tta);
    Ok(())
}
