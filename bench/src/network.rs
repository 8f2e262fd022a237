//! `stagecast-bench network`: Stagecast's viewer in Chromium behind real slow, distant
//! and lossy links, over a grid of link rate x round trip x loss, with a three-rung
//! ladder and with one rendition side by side. Each cell is one run of
//! `bench/network/cell.mjs` (an origin publishing a pre-encoded clip, the page in a
//! network namespace behind `tbf`, its WebTransport through the userspace impairment
//! relay: docs/testing.md); this command makes the clips, runs the cells, and writes
//! `network.json` and `network.png`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde_json::Value;

#[derive(clap::Args, Debug, Clone)]
pub struct NetworkArgs {
    /// Link rates toward the viewer, Mbit/s (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.5,1,2,4,8")]
    pub rates: Vec<f64>,
    /// Round trips added by the impairment relay, ms.
    #[arg(long, value_delimiter = ',', default_value = "20,100,200")]
    pub rtts: Vec<u64>,
    /// Loss per direction, as a fraction (0.01 for 1%).
    #[arg(long, value_delimiter = ',', default_value = "0,0.01,0.03")]
    pub losses: Vec<f64>,
    /// What is published: `ladder` (2.5/1.2/0.4 Mbit/s) and/or `single` (3 Mbit/s).
    #[arg(long, value_delimiter = ',', default_value = "ladder,single")]
    pub modes: Vec<String>,
    /// Seconds measured per cell, after the settling time.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Seconds from the start of playback before measuring.
    #[arg(long, default_value_t = 10)]
    pub settle: u64,
    /// Accepted for symmetry with the other benchmarks: the cells pin nothing.
    #[arg(long)]
    pub no_pin: bool,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out_dir: PathBuf,
}

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const CLIP_SECONDS: &str = "20";

pub fn run(args: NetworkArgs) -> anyhow::Result<()> {
    let dir = args.out_dir.join("network");
    std::fs::create_dir_all(dir.join("clips"))?;
    let mut cells = Vec::new();
    println!("mode    rate  rtt  loss   startup  stall  delivered/link  switches/min  g2g p50/p95 s  renditions");
    for mode in &args.modes {
        let clip = clip(&dir.join("clips"), mode)?;
        for &rate in &args.rates {
            for &rtt in &args.rtts {
                for &loss in &args.losses {
                    let name = format!("{mode}-{rate}-{rtt}-{loss}");
                    let mut cell = run_cell(&clip, rate, rtt, loss, &args, &dir.join(&name))
                        .with_context(|| format!("cell {name}"))?;
                    cell["mode"] = Value::from(mode.as_str());
                    print_cell(&cell);
                    cells.push(cell);
                }
            }
        }
    }
    let results = serde_json::json!({
        "command": crate::report::command_line(),
        "machine": crate::report::Machine::now().describe(),
        "cells": cells,
    });
    let json = args.out_dir.join("network.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&results)?)?;
    let png = args.out_dir.join("network.png");
    crate::network_chart::draw(&cells, &png)?;
    println!("results: {} and {}", json.display(), png.display());
    Ok(())
}

fn run_cell(
    clip: &Path,
    rate: f64,
    rtt: u64,
    loss: f64,
    args: &NetworkArgs,
    out: &Path,
) -> anyhow::Result<Value> {
    let output = Command::new("node")
        .current_dir(WORKSPACE)
        .arg("bench/network/cell.mjs")
        .arg("--clip")
        .arg(clip)
        .args(["--rate", &rate.to_string(), "--rtt", &rtt.to_string()])
        .args(["--loss", &loss.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--settle", &args.settle.to_string(), "--out"])
        .arg(out)
        .output()
        .context("node (apt-get install nodejs; npm ci in tests/browser)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
        bail!(
            "the cell printed no result (exit {}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    Ok(serde_json::from_str(line)?)
}

fn print_cell(cell: &Value) {
    let num = |key: &str| cell[key].as_f64().unwrap_or(f64::NAN);
    let renditions = cell["on_rendition"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {:.0}%", v.as_f64().unwrap_or(0.0) * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    println!(
        "{:<6} {:>5} {:>4} {:>5}  {:>7.2}  {:>5.1}%  {:>14.2}  {:>12.1}  {:>6.2} / {:<5.2}  {renditions}",
        cell["mode"].as_str().unwrap_or(""),
        num("rate_mbit"),
        num("rtt_ms"),
        num("loss"),
        num("startup_s"),
        num("stall_ratio") * 100.0,
        num("delivered_over_link"),
        num("switches_per_min"),
        num("g2g_p50_s"),
        num("g2g_p95_s"),
    );
}

/// The pre-encoded clip for `mode` (made once): live encoding beside Chromium's decoding
/// would starve both on two cores. One fragment per frame, 2 s GOPs aligned across rungs.
fn clip(dir: &Path, mode: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{mode}.mp4"));
    if path.is_file() {
        return Ok(path);
    }
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]);
    ffmpeg.args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"]);
    ffmpeg.args([
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        CLIP_SECONDS,
    ]);
    match mode {
        "ladder" => {
            ffmpeg.args([
                "-filter_complex",
                "[0:v]split=3[a][b][c];[b]scale=854:480[b2];[c]scale=426:240[c2]",
            ]);
            ffmpeg.args(["-map", "[a]", "-map", "[b2]", "-map", "[c2]", "-map", "1:a"]);
            for (i, rate) in ["2500k", "1200k", "400k"].iter().enumerate() {
                for key in ["b", "maxrate", "bufsize"] {
                    ffmpeg.args([&format!("-{key}:v:{i}"), *rate]);
                }
            }
        }
        "single" => {
            ffmpeg.args(["-map", "0:v", "-map", "1:a"]);
            ffmpeg.args(["-b:v", "3000k", "-maxrate", "3000k", "-bufsize", "3000k"]);
        }
        other => bail!("unknown mode {other:?}: ladder or single"),
    }
    ffmpeg.args([
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
    ]);
    ffmpeg.args([
        "-pix_fmt",
        "yuv420p",
        "-g",
        "60",
        "-keyint_min",
        "60",
        "-sc_threshold",
        "0",
    ]);
    ffmpeg.args(["-c:a", "aac", "-b:a", "64k", "-f", "mp4", "-movflags"]);
    ffmpeg.arg("cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame");
    ffmpeg.arg(&path);
    let status = ffmpeg.status().context("ffmpeg (apt-get install ffmpeg)")?;
    if !status.success() {
        bail!("ffmpeg failed making {}", path.display());
    }
    Ok(path)
}
