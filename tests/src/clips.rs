//! Pre-encoded clips at a given bitrate, made once and kept under `tests/output/clips/`:
//! on two cores a live x264 encode beside the nodes (or Chromium) starves both, and a
//! network test needs media whose bitrate is known, not whatever a test pattern costs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::media::Layout;

/// A clip of constant bitrate: `width`x`height` at 30 fps, one-second groups (a keyframe
/// every 30 frames exactly, no scene cuts), video at `video_kbit` kbit/s CBR (x264 pads
/// with filler data up to it), 64 kbit/s AAC, in `layout`. Made on first use; later calls
/// (also from other tests running at once) reuse the same file.
pub fn cbr_clip(seconds: u32, width: u32, height: u32, video_kbit: u32, layout: Layout) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("output")
        .join("clips");
    std::fs::create_dir_all(&dir).expect("create the clip cache");
    let name = format!("cbr-{width}x{height}-{video_kbit}k-{seconds}s-{layout:?}.mp4");
    let path = dir.join(&name);
    if path.exists() {
        return path;
    }
    // Encoded beside its final name and renamed: a concurrent test sees no half file.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let partial = dir.join(format!(
        "{name}.{}-{}.part",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let rate = format!("{video_kbit}k");
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size={width}x{height}:rate=30:duration={seconds}"
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-x264-params",
            "keyint=30:min-keyint=30:scenecut=0:nal-hrd=cbr",
        ])
        .args(["-b:v", &rate, "-minrate", &rate, "-maxrate", &rate])
        .args([
            "-bufsize",
            &format!("{}k", video_kbit / 3),
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "mp4", "-movflags"])
        .arg(layout.movflags())
        .arg(&partial)
        .output()
        .expect("ffmpeg is installed");
    assert!(
        output.status.success(),
        "encoding {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &path).expect("move the clip into the cache");
    path
}

/// A file's overall bitrate in bits per second, per ffprobe.
pub fn bitrate(path: &Path) -> u64 {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=bit_rate",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}
