//! Image decoding against Pillow 11.3: the JPEG decoder (vs libjpeg-turbo 3.1.1) gives PIL's
//! pixels exactly on every fixture (tests/reference/make_decode.py lists what each file
//! exercises), and WebP through the `image` crate matches libwebp 1.5.0 on the test files.

use std::path::PathBuf;

use ssv2a::media::jpeg::{decode, Layout};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Golden {
    bytes: Vec<u8>,
    n: usize,
    meta: safetensors::tensor::Metadata,
}

impl Golden {
    fn load(name: &str) -> Golden {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        let (n, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        Golden { bytes, n, meta }
    }
    fn get(&self, key: &str) -> Option<(Vec<usize>, &[u8])> {
        let info = self.meta.info(key)?;
        let (a, b) = info.data_offsets;
        Some((info.shape.clone(), &self.bytes[8 + self.n + a..8 + self.n + b]))
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.meta.tensors().keys().cloned().collect();
        v.sort();
        v
    }
}

/// (max |Δ|, values that differ)
fn diff(a: &[u8], b: &[u8]) -> (u8, usize) {
    assert_eq!(a.len(), b.len());
    let d = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y));
    (d.clone().max().unwrap_or(0), d.filter(|&v| v > 0).count())
}

#[test]
fn decodes_exactly_as_pillow() {
    let g = Golden::load("decode_pil.safetensors");
    let mut report = vec![];
    let mut checked = 0;
    for name in g.names() {
        if name.starts_with("committed.") || name.starts_with("webp.") {
            continue;
        }
        let file = fixtures().join(format!("images/jpeg/{name}.jpg"));
        let bytes = std::fs::read(&file).unwrap();
        let got = decode(&bytes);
        if name.contains("arithmetic") {
            let e = got.expect_err("arithmetic-coded JPEG decoded");
            assert!(e.contains("arithmetic"), "{e}");
            report.push(format!("{name}: error as intended: {e}"));
            continue;
        }
        let j = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let (shape, want) = g.get(&name).unwrap();
        assert_eq!((j.height, j.width, j.layout.channels()), (shape[0], shape[1], shape[2]), "{name}: shape");
        let (md, count) = diff(&j.data, want);
        report.push(format!("{name}: {:?} {}×{}: max |Δ| {md} on {count} of {} values", j.layout, j.width, j.height, want.len()));
        // Only the file with unrefined AC coefficients goes through libjpeg's block smoothing.
        assert_eq!(j.smoothed, name.contains("unrefined"), "{name}: smoothing");
        assert_eq!(md, 0, "{name}: not bit-exact vs Pillow 11.3 ({count} values differ)");
        checked += 1;
    }
    assert!(checked >= 17, "only {checked} fixtures");
    eprintln!("JPEG decode vs Pillow 11.3 / libjpeg-turbo 3.1.1:\n{}", report.join("\n"));
}

#[test]
fn committed_photo_and_cmyk_decode_exactly() {
    let pre = Golden::load("clip_preprocess.safetensors");
    let j = decode(&std::fs::read(fixtures().join("images/photo_203x200.jpg")).unwrap()).unwrap();
    assert_eq!((j.width, j.height, j.layout), (203, 200, Layout::Rgb));
    let (_, want) = pre.get("in.photo_203x200.decoded").unwrap();
    assert_eq!(diff(&j.data, want), (0, 0), "photo_203x200.jpg");
    let g = Golden::load("decode_pil.safetensors");
    let j = decode(&std::fs::read(fixtures().join("images/cmyk_48x40.jpg")).unwrap()).unwrap();
    assert_eq!(j.layout, Layout::Cmyk);
    let (_, want) = g.get("committed.cmyk_48x40").unwrap();
    assert_eq!(diff(&j.data, want), (0, 0), "cmyk_48x40.jpg");
}

#[test]
fn corrupt_and_cut_files_give_errors_not_panics() {
    let bytes = std::fs::read(fixtures().join("images/photo_203x200.jpg")).unwrap();
    // Every prefix: a clean error or (past the last scan's data) an image.
    for cut in (0..bytes.len()).step_by(37) {
        let _ = decode(&bytes[..cut]);
    }
    assert!(decode(&bytes[..bytes.len() / 2]).unwrap_err().contains("truncated"));
    // Flipped bytes through headers and entropy data: never a panic.
    let mut seed = 7u64;
    for _ in 0..400 {
        let mut b = bytes.clone();
        for _ in 0..3 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let i = (seed >> 33) as usize % b.len();
            b[i] ^= (seed >> 13) as u8 | 1;
        }
        let _ = decode(&b);
    }
    assert!(decode(b"\xFF\xD8\xFF\xC0\x00\x0B\x08\x00\x00\x00\x10\x01\x01\x11\x00").unwrap_err().contains("empty"));
    assert!(decode(b"\xFF\xD8\xFF\xC0\x00\x0B\x0C\x00\x10\x00\x10\x01\x01\x11\x00").unwrap_err().contains("12-bit"));
    assert!(decode(b"\xFF\xD8\xFF\xC0\x00\x0B\x08\xFF\xFF\xFF\xFF\x01\x01\x11\x00").unwrap_err().contains("limit"));
}

#[test]
fn webp_decodes_as_pillow() {
    let g = Golden::load("decode_pil.safetensors");
    let mut n = 0;
    for name in g.names().into_iter().filter(|k| k.starts_with("webp.")) {
        let stem = &name["webp.".len()..];
        let d = ssv2a::media::imageio::open(fixtures().join(format!("images/webp/{stem}.webp"))).unwrap().to_rgb();
        let (shape, want) = g.get(&name).unwrap();
        assert_eq!((d.height, d.width), (shape[0], shape[1]), "{stem}");
        assert_eq!(diff(&d.data, want), (0, 0), "{stem}: differs from PIL (libwebp 1.5.0)");
        n += 1;
    }
    assert_eq!(n, 2, "lossy and lossless fixtures");
}
