//! Image resampling against Pillow and OpenCV goldens (`tests/fixtures/resize.safetensors`,
//! made by `tests/reference/make_resize_fixture.py`): both must match bit for bit, since CLIP
//! and YOLO preprocessing are specified by what those libraries compute.

use ssv2a::media::image::{RgbImage, RgbaImage};

fn load() -> (Vec<u8>, safetensors::tensor::Metadata, usize) {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resize.safetensors")).unwrap();
    let (n, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    (bytes, meta, n)
}

#[test]
fn resampling_matches_pillow_and_opencv_exactly() {
    let (bytes, meta, n) = load();
    let data = |k: &str| -> (Vec<usize>, Vec<u8>) {
        let info = meta.info(k).unwrap_or_else(|| panic!("fixture lacks {k}"));
        let (a, b) = info.data_offsets;
        (info.shape.clone(), bytes[8 + n + a..8 + n + b].to_vec())
    };
    let mut checked = 0;
    for name in ["grad", "noise", "rgba"] {
        let (shape, px) = data(&format!("in.{name}"));
        let (h, w, c) = (shape[0], shape[1], shape[2]);
        for (ow, oh) in [(33usize, 17usize), (90, 70), (7, 64)] {
            let (_, want) = data(&format!("out.{name}.pil_bicubic.{ow}x{oh}"));
            let got = if c == 4 {
                RgbaImage::new(w, h, px.clone()).unwrap().resize_bicubic(ow, oh).unwrap().data
            } else {
                RgbImage::new(w, h, px.clone()).unwrap().resize_bicubic(ow, oh).unwrap().data
            };
            let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(bad, 0, "{name} Pillow bicubic {ow}x{oh}: {bad} bytes differ");
            checked += 1;
            if c == 3 {
                let (_, want) = data(&format!("out.{name}.cv2_linear.{ow}x{oh}"));
                let got = RgbImage::new(w, h, px.clone()).unwrap().resize_cv2_linear(ow, oh).unwrap().data;
                let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                assert_eq!(bad, 0, "{name} OpenCV linear {ow}x{oh}: {bad} bytes differ");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 15);
}

#[test]
fn decoding_bad_files_gives_clear_errors() {
    use ssv2a::media::imageio::decode;
    for (name, bytes) in [("empty.png", vec![]), ("text.png", b"hello, not an image".to_vec()), ("trunc.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec())] {
        let err = decode(&bytes, name).expect_err(name).to_string();
        assert!(err.contains(name), "{err}");
    }
}
