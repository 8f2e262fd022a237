//! The ffmpeg command that makes a broadcast's rungs, and the process at the edge: one
//! ffmpeg per transcoded broadcast reads the source's init segment and video chunks on
//! stdin and writes one fragmented MP4 with a video track per rung on stdout (a ladder in
//! one file, as README's "A ladder from one ffmpeg process" publishes).
//!
//! The recipe keeps the source's timeline and keyframes when fed a broadcast joined
//! mid-stream: `-copyts` with `frag_discont` (without them the output restarts at time 0),
//! `-force_key_frames source` with scene cuts off and a `-g` past any GOP (a keyframe only
//! where the source has one, so every output group has a source group at its time).
//! B-frames are off (`-tune zerolatency`): the output's decode times are its presentation
//! times, and it adds no reordering delay at the live edge.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::ladder::Rung;

/// Longest ffmpeg error line logged (a broken input can make long ones).
const MAX_LOG_LINE: usize = 400;

/// ffmpeg's arguments for `rungs` (highest first): output track `i` is `rungs[i]`.
pub fn arguments(rungs: &[Rung]) -> Vec<OsString> {
    let mut args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-copyts",
        "-f",
        "mp4",
        "-i",
        "pipe:0",
    ]
    .map(String::from)
    .to_vec();
    let split: String = (0..rungs.len()).map(|i| format!("[s{i}]")).collect();
    let scales: Vec<String> = rungs
        .iter()
        .enumerate()
        .map(|(i, rung)| format!("[s{i}]scale=-2:{}[v{i}]", rung.height))
        .collect();
    args.push("-filter_complex".into());
    args.push(format!(
        "[0:v]split={}{split};{}",
        rungs.len(),
        scales.join(";")
    ));
    for i in 0..rungs.len() {
        args.push("-map".into());
        args.push(format!("[v{i}]"));
    }
    args.extend(
        [
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
            "-force_key_frames",
            "source",
            "-sc_threshold",
            "0",
            "-g",
            "1000",
        ]
        .map(String::from),
    );
    for (i, rung) in rungs.iter().enumerate() {
        // A constrained rate: `-maxrate` is what the btrt box (and so the catalog's
        // bitrate) declares, and a player picks rungs by it.
        let kbit = (rung.bitrate / 1000).max(1);
        args.extend([
            format!("-b:v:{i}"),
            format!("{kbit}k"),
            format!("-maxrate:v:{i}"),
            format!("{kbit}k"),
            format!("-bufsize:v:{i}"),
            format!("{}k", kbit * 2),
        ]);
    }
    args.extend(
        [
            "-f",
            "mp4",
            "-movflags",
            "cmaf+empty_moov+frag_keyframe+default_base_moof+frag_discont",
            "pipe:1",
        ]
        .map(String::from),
    );
    args.into_iter().map(OsString::from).collect()
}

/// Starts `ffmpeg` for `rungs` with piped stdin and stdout; its error lines are logged
/// under `broadcast`. Killed when the handle is dropped, so a transcode that stops (its
/// broadcast ended, the origin shuts down) leaves no process behind.
pub fn spawn(ffmpeg: &Path, rungs: &[Rung], broadcast: &str) -> std::io::Result<Child> {
    let mut child = Command::new(ffmpeg)
        .args(arguments(rungs))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(stderr) = child.stderr.take() {
        let broadcast = broadcast.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line: String = line.chars().take(MAX_LOG_LINE).collect();
                tracing::warn!(%broadcast, "transcoder: {line}");
            }
        });
    }
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_output_track_per_rung_with_its_rate() {
        let rungs = [
            Rung {
                height: 240,
                bitrate: 400_000,
            },
            Rung {
                height: 144,
                bitrate: 150_000,
            },
        ];
        let args: Vec<String> = arguments(&rungs)
            .into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("-copyts -f mp4 -i pipe:0"));
        assert!(joined.contains(
            "[0:v]split=2[s0][s1];[s0]scale=-2:240[v0];[s1]scale=-2:144[v1] -map [v0] -map [v1]"
        ));
        assert!(joined.contains("-b:v:0 400k -maxrate:v:0 400k -bufsize:v:0 800k"));
        assert!(joined.contains("-b:v:1 150k -maxrate:v:1 150k"));
        assert!(joined.contains("-force_key_frames source -sc_threshold 0 -g 1000"));
        assert!(joined.ends_with("frag_keyframe+default_base_moof+frag_discont pipe:1"));
    }
}
