//! Video frames through `ffmpeg`/`ffprobe` (native only; they must be on PATH). As the official
//! `batch_extract_frames`: `n` frame indices `round(linspace(0, L−1, n))` over the L decoded
//! frames, each frame resized to `size`×`size` with bicubic (aspect ratio not kept).

use std::path::Path;
use std::process::Command;

use crate::media::image::RgbImage;
use crate::{Error, Result};

fn tool(name: &str, path: &Path) -> Result<Command> {
    let probe = Command::new(name).arg("-version").output();
    match probe {
        Ok(o) if o.status.success() => Ok(Command::new(name)),
        _ => Err(Error::Format(format!(
            "{}: video input needs `{name}` on PATH (install FFmpeg, e.g. `apt-get install ffmpeg`), and it was not found",
            path.display()
        ))),
    }
}

/// A tool's stderr as one line (its last lines, joined), for error messages.
fn one_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Number of video frames, by decoding the stream's packets (exact, unlike container metadata).
pub fn frame_count(path: &Path) -> Result<usize> {
    let out = tool("ffprobe", path)?
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets,width,height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| Error::io(format!("running ffprobe on {}", path.display()), e))?;
    if !out.status.success() {
        return Err(Error::Format(format!("{}: ffprobe cannot read it: {}", path.display(), one_line(&out.stderr))));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text
        .trim()
        .split(',')
        .next_back()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .ok_or_else(|| Error::Format(format!("{}: no video stream found", path.display())))?;
    if n == 0 {
        return Err(Error::Format(format!("{}: the video has no frames", path.display())));
    }
    Ok(n)
}

/// `round(linspace(0, l − 1, n))` with NumPy's rounding (half to even).
pub fn frame_indices(l: usize, n: usize) -> Vec<usize> {
    if n == 1 {
        return vec![0];
    }
    (0..n).map(|i| crate::media::image::round_half_even(i as f64 * (l - 1) as f64 / (n - 1) as f64) as usize).collect()
}

/// Decode the official `n` evenly spaced frames, each resized to `size`×`size`.
pub fn extract_frames(path: &Path, n: usize, size: usize) -> Result<Vec<RgbImage>> {
    if n == 0 || size == 0 {
        return Err(Error::arg("extract_frames", "need at least one frame of at least 1×1"));
    }
    if !path.exists() {
        return Err(Error::io(format!("reading video {}", path.display()), std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    let total = frame_count(path)?;
    let idx = frame_indices(total, n);
    let mut unique = idx.clone();
    unique.dedup();
    let select = unique.iter().map(|i| format!("eq(n\\,{i})")).collect::<Vec<_>>().join("+");
    let (w, h) = probe_size(path)?;
    let out = tool("ffmpeg", path)?
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-vf", &format!("select='{select}'"), "-vsync", "0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .map_err(|e| Error::io(format!("running ffmpeg on {}", path.display()), e))?;
    if !out.status.success() {
        return Err(Error::Format(format!("{}: ffmpeg failed: {}", path.display(), one_line(&out.stderr))));
    }
    let frame_bytes = w * h * 3;
    if frame_bytes == 0 || out.stdout.len() < frame_bytes * unique.len() {
        return Err(Error::Format(format!("{}: ffmpeg returned {} bytes for {} frames of {w}×{h}", path.display(), out.stdout.len(), unique.len())));
    }
    let decoded: Vec<RgbImage> =
        (0..unique.len()).map(|k| RgbImage::new(w, h, out.stdout[k * frame_bytes..(k + 1) * frame_bytes].to_vec())).collect::<Result<_>>()?;
    idx.iter()
        .map(|i| {
            let k = unique.iter().position(|u| u == i).expect("index selected");
            decoded[k].resize_bicubic(size, size)
        })
        .collect()
}

fn probe_size(path: &Path) -> Result<(usize, usize)> {
    let out = tool("ffprobe", path)?
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0:s=x"])
        .arg(path)
        .output()
        .map_err(|e| Error::io(format!("running ffprobe on {}", path.display()), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.trim().split('x').map(|s| s.trim().parse::<usize>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(w), Some(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(Error::Format(format!("{}: cannot read the video's frame size", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_numpy_linspace_round() {
        // np.round(np.linspace(0, 99, 64)).astype(int)[:6] = [0, 2, 3, 5, 6, 8]
        assert_eq!(&frame_indices(100, 64)[..6], &[0, 2, 3, 5, 6, 8]);
        assert_eq!(frame_indices(100, 64)[63], 99);
        // Fewer frames than requested repeat indices, as the official code does.
        assert_eq!(frame_indices(3, 5), vec![0, 0, 1, 2, 2]);
        assert_eq!(frame_indices(1, 4), vec![0, 0, 0, 0]);
    }
}
