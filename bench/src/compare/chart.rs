//! The comparison chart (`compare.png`): four panels, one colour per relay — fan-out
//! efficiency and latency against N, latency through chains of 1..3 relays, and join time.
//!
//! Text is drawn with a system TrueType font (DejaVu Sans or Liberation Sans, which
//! Debian's chromium and ffmpeg bring along) registered with plotters' `ab_glyph` backend.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use plotters::prelude::*;

use super::CompareResults;

const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
];
pub(crate) const COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// One relay's points in one panel.
pub(crate) struct Series {
    pub name: String,
    pub colour: RGBColor,
    pub points: Vec<(f64, f64)>,
    /// Per point: whether it is drawn hollow (a fan-out step the relay fell behind at).
    pub hollow: Vec<bool>,
}

pub(crate) fn register_font() -> anyhow::Result<()> {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            // plotters keeps fonts for the process's life; one chart per run.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| anyhow!("{path} is not a usable font"));
        }
    }
    bail!("no TrueType font found for the chart's text (looked for {FONTS:?}); install fonts-dejavu-core")
}

fn number(value: &serde_json::Value, pointer: &str) -> Option<f64> {
    value.pointer(pointer).and_then(serde_json::Value::as_f64)
}

pub fn draw(results: &CompareResults, path: &Path) -> anyhow::Result<()> {
    register_font()?;
    let colour = |i: usize| COLOURS[i % COLOURS.len()];
    // `steps`: the points are the relay's fan-out steps, hollow where it fell behind.
    let series =
        |f: &dyn Fn(&super::RelayResults) -> Vec<(f64, f64)>, steps: bool| -> Vec<Series> {
            results
                .relays
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let points = f(r);
                    let hollow = if steps && points.len() == r.fanout.len() {
                        r.fanout.iter().map(|step| !step.keeps_up).collect()
                    } else {
                        vec![false; points.len()]
                    };
                    Series {
                        name: r.relay.clone(),
                        colour: colour(i),
                        points,
                        hollow,
                    }
                })
                .collect()
        };
    let fanout = |pointer: &'static str| {
        move |r: &super::RelayResults| -> Vec<(f64, f64)> {
            r.fanout
                .iter()
                .filter_map(|step| {
                    Some((
                        number(&step.result, "/subscribers")?,
                        number(&step.result, pointer)?,
                    ))
                })
                .collect()
        }
    };
    let efficiency = series(&fanout("/delivered_gbit_per_cpu_second"), true);
    let latency = series(&fanout("/delivery/latency_ms/p99"), true);
    let chain = series(
        &|r| {
            r.chain
                .iter()
                .map(|c| (c.relays as f64, c.latency_p50_ms))
                .collect()
        },
        false,
    );
    let join = series(
        &|r| {
            r.join
                .iter()
                .filter_map(|j| Some((number(j, "/join_ms/p50")?, number(j, "/join_ms/p90")?)))
                .collect()
        },
        false,
    );

    let root = BitMapBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let machine = &results.machine;
    let title = format!(
        "Relays side by side: 30 fps, {:.1} Mbit/s, 1 s groups; {} CPUs ({}), load average {:.2} at start; {}",
        number(&results.workload, "/fps").unwrap_or(30.0)
            * number(&results.workload, "/object_bytes").unwrap_or(0.0)
            * 8.0
            / 1e6,
        number(machine, "/cpus").unwrap_or(0.0),
        machine.pointer("/cpu_model").and_then(|v| v.as_str()).unwrap_or("?"),
        number(machine, "/load_average_at_start").unwrap_or(0.0),
        machine.pointer("/revision").and_then(|v| v.as_str()).unwrap_or("?"),
    );
    let root = root.titled(&title, ("sans-serif", 20))?;
    let panels = root.split_evenly((2, 2));
    line_panel(
        &panels[0],
        "Fan-out: payload Gbit/s per relay CPU core (higher is better; hollow: fell behind)",
        "subscribers",
        "Gbit/s per core",
        &efficiency,
        false,
    )?;
    line_panel(
        &panels[1],
        "Fan-out: end-to-end latency p99, ms (log scale; hollow: fell behind)",
        "subscribers",
        "ms",
        &latency,
        true,
    )?;
    line_panel(
        &panels[2],
        "Chain: end-to-end latency p50 through 1..3 relays, ms",
        "relays in the chain",
        "ms",
        &chain,
        false,
    )?;
    join_panel(&panels[3], &join)?;
    root.present().context("cannot write the chart")?;
    Ok(())
}

pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

pub(crate) fn line_panel(
    area: &Area<'_>,
    caption: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> anyhow::Result<()> {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::MAX, 0.0f64);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_max = y_max.max(y);
        y_min = y_min.min(y);
    }
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let x_range = 0.0..x_max * 1.05;
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60);
    if log_y {
        let y_min = if y_min.is_finite() && y_min > 0.0 {
            y_min / 2.0
        } else {
            0.1
        };
        let mut chart = builder.build_cartesian_2d(x_range, (y_min..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()?;
        draw_series(&mut chart, series)?;
    } else {
        let mut chart = builder.build_cartesian_2d(x_range, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()?;
        draw_series(&mut chart, series)?;
    }
    Ok(())
}

fn draw_series<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for s in series {
        let colour = s.colour;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
            });
        chart.draw_series(s.points.iter().zip(&s.hollow).map(|(&(x, y), &hollow)| {
            let style = if hollow {
                colour.stroke_width(2)
            } else {
                colour.filled()
            };
            Circle::new((x, y), if hollow { 6 } else { 4 }, style)
        }))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// Join time per relay: a bar to p50 and a thin mark at p90.
fn join_panel(area: &Area<'_>, series: &[Series]) -> anyhow::Result<()> {
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(_, p90)| p90))
        .fold(1.0f64, f64::max)
        * 1.2;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Join (warm cache): SUBSCRIBE to a group's first object, ms: bar p50, line p90",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..series.len().max(1) as f64, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ms")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let x = i as f64;
        if let Some(&(p50, p90)) = s.points.first() {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, p50)],
                s.colour.filled(),
            )))?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x + 0.15, p90), (x + 0.85, p90)],
                BLACK.stroke_width(2),
            )))?;
        }
        chart.draw_series(std::iter::once(Text::new(
            s.name.clone(),
            (x + 0.2, y_max * 0.95),
            ("sans-serif", 14),
        )))?;
    }
    Ok(())
}
