//! The network benchmark's chart (`network.png`): stall ratio, delivered bitrate over the
//! link rate, and glass-to-glass p50 against the link rate, one line per published mode
//! and round trip (loss averaged), so the ladder and the single rendition sit side by side.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde_json::Value;

use crate::compare::chart::{line_panel, register_font, Series, COLOURS};

pub fn draw(cells: &[Value], path: &Path) -> anyhow::Result<()> {
    register_font()?;
    let mut keys: Vec<(String, u64)> = cells
        .iter()
        .filter_map(|c| Some((c["mode"].as_str()?.to_string(), c["rtt_ms"].as_u64()?)))
        .collect();
    keys.sort();
    keys.dedup();
    let series = |metric: &str, scale: f64| -> Vec<Series> {
        keys.iter()
            .enumerate()
            .map(|(i, (mode, rtt))| {
                let mut rates: Vec<f64> = cells
                    .iter()
                    .filter(|c| c["mode"] == mode.as_str() && c["rtt_ms"] == *rtt)
                    .filter_map(|c| c["rate_mbit"].as_f64())
                    .collect();
                rates.sort_by(f64::total_cmp);
                rates.dedup();
                let points: Vec<(f64, f64)> = rates
                    .iter()
                    .filter_map(|&rate| {
                        let values: Vec<f64> = cells
                            .iter()
                            .filter(|c| {
                                c["mode"] == mode.as_str()
                                    && c["rtt_ms"] == *rtt
                                    && c["rate_mbit"].as_f64() == Some(rate)
                            })
                            .filter_map(|c| c[metric].as_f64())
                            .collect();
                        (!values.is_empty()).then(|| {
                            (
                                rate,
                                values.iter().sum::<f64>() / values.len() as f64 * scale,
                            )
                        })
                    })
                    .collect();
                Series {
                    name: format!("{mode}, {rtt} ms"),
                    colour: shade(COLOURS[usize::from(mode != "ladder") % COLOURS.len()], i),
                    hollow: vec![mode != "ladder"; points.len()],
                    points,
                }
            })
            .collect()
    };
    let root = BitMapBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Viewer in Chromium behind tbf + impairment relay (loss averaged; hollow: one rendition)",
        ("sans-serif", 20),
    )?;
    let panels = root.split_evenly((2, 2));
    let stall = series("stall_ratio", 100.0);
    line_panel(
        &panels[0],
        "Stalled time, % of the window",
        "link Mbit/s",
        "%",
        &stall,
        false,
    )?;
    let delivered = series("delivered_over_link", 1.0);
    line_panel(
        &panels[1],
        "Delivered bitrate / link rate",
        "link Mbit/s",
        "ratio",
        &delivered,
        false,
    )?;
    let g2g = series("g2g_p50_s", 1.0);
    line_panel(
        &panels[2],
        "Glass-to-glass p50, s",
        "link Mbit/s",
        "s",
        &g2g,
        false,
    )?;
    let switches = series("switches_per_min", 1.0);
    line_panel(
        &panels[3],
        "Rendition switches per minute",
        "link Mbit/s",
        "per min",
        &switches,
        false,
    )?;
    root.present().context("cannot write the chart")?;
    Ok(())
}

/// `base` lighter for each further round trip, so one mode's lines read as a family.
fn shade(base: RGBColor, step: usize) -> RGBColor {
    let lift = |c: u8| c.saturating_add(((255 - c as usize) * (step % 3) / 4) as u8);
    RGBColor(lift(base.0), lift(base.1), lift(base.2))
}
