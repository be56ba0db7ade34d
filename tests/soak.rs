//! Soak (issue 16; not in CI — `#[ignore]`, run by `scripts/soak.sh`): back-to-back generations
//! with the models kept loaded, then with every pack loaded from its file and released in each
//! run, all in one process; RSS and GPU memory at the start, middle and end of each phase.
//! Growth beyond noise fails the test.

mod common;

use ssv2a::pipeline::{demo, ImageSource, Picture, Pipeline, Request, Settings};

fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

#[test]
#[ignore = "soak: minutes of generations on lavapipe; run scripts/soak.sh"]
fn soak_generations_and_pack_cycles() {
    let Some(gpu) = common::test_gpu() else { return };
    let n: usize = std::env::var("SOAK_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("ssv2a-soak-{}", std::process::id()));
    demo::write_packs(&gpu, demo::WEIGHTS_SEED, &dir).unwrap();
    let mut p = Pipeline::new(&gpu);
    p.use_models_dir(&dir);
    let req = Request { images: vec![ImageSource::new("street", Picture::Rgb(demo::scene(96, 64)))], ..Request::default() };
    let mut s = Settings::fast();
    (s.cycle.its, s.cycle.samples, s.cycle.var_samples, s.generate.steps, s.generate.duration_s) = (1, 2, 2, 2, 2.5);
    for (phase, release) in [("kept loaded", false), ("load and release every run", true)] {
        s.release_after_use = release;
        let mut marks = vec![];
        let t0 = std::time::Instant::now();
        for i in 0..n {
            let out = pollster::block_on(p.generate(&req, &s, &mut |_| {}, &|| false)).unwrap();
            assert!(out.waveform.iter().all(|v| v.is_finite()));
            if i == 0 || i == n / 2 || i + 1 == n {
                let m = gpu.memory();
                marks.push((i + 1, rss_mb(), m.allocated as f64 / 1e6, m.in_use as f64 / 1e6));
            }
        }
        println!("soak, {phase}: {n} runs in {:.0} s", t0.elapsed().as_secs_f64());
        for (run, rss, alloc, used) in &marks {
            println!("  after run {run:>4}: RSS {rss:8.1} MB, GPU allocated {alloc:8.1} MB, in use {used:8.1} MB");
        }
        let (mid, end) = (marks[marks.len() / 2], marks[marks.len() - 1]);
        assert!(end.1 <= mid.1 * 1.05 + 30.0, "{phase}: RSS grew from {:.1} to {:.1} MB", mid.1, end.1);
        assert!(end.2 <= mid.2 * 1.05 + 8.0, "{phase}: GPU memory grew from {:.1} to {:.1} MB", mid.2, end.2);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
