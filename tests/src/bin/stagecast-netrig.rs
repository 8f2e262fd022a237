//! `stagecast-netrig`: the network rig (tests/src/netns.rs, impair.rs) as a process, for
//! tests that are not Rust (the browser tests in node): it builds a namespace behind a
//! rate-limited link and, with `--target`, an impairment relay toward a node, prints one
//! JSON line saying where everything is, then obeys commands on stdin until stdin ends or
//! it gets SIGTERM/SIGINT, and removes it all.
//!
//! ```text
//! stagecast-netrig --down 1.5mbit [--up 10mbit] [--target [::1]:PORT --rtt 100ms
//!                  --loss 0.02 --jitter 0ms --seed 1]
//! {"namespace":"stagecast-…","hostInterface":"sc…h","hostAddr":"fd42:…::1","nsAddr":"fd42:…::2",
//!  "relay":"[fd42:…::1]:PORT","chromium":"/tmp/…/chromium"}
//! commands:  rate down|up <rate>|off      impair <rtt> <loss> [<jitter>]      stats
//! ```
//! Each command is answered by one line: `ok`, a JSON object (stats) or `error: …`.
//! `chromium` is a wrapper script that runs /usr/bin/chromium inside the namespace
//! (playwright's `executablePath`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use stagecast_tests::impair::{ImpairRelay, Impairment, PathImpairment};
use stagecast_tests::netns::{Direction, LinkSpec, NetNs, Rate, Shaping};
use tokio::io::{AsyncBufReadExt, BufReader};

const USAGE: &str = "\
usage: stagecast-netrig [--down RATE] [--up RATE] [--target [::1]:PORT --rtt 100ms \
--loss 0.02 --jitter 0ms --seed 1]
prints {namespace, hostInterface, hostAddr, nsAddr, relay, chromium} as one JSON line, then reads commands:
  rate down|up RATE|off        change a direction's tbf rate (1.5mbit, 500kbit)
  impair RTT LOSS [JITTER]     the relay's round trip, loss per direction, jitter
  stats                        tbf and relay counts as JSON
and removes everything when stdin ends or on SIGTERM.";

/// `1.5mbit`, `500kbit`, `2000000` (bit/s).
fn parse_rate(text: &str) -> anyhow::Result<Rate> {
    let t = text.trim().to_ascii_lowercase();
    let (number, scale) = if let Some(n) = t.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = t.strip_suffix("kbit") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix("bit") {
        (n, 1.0)
    } else {
        (t.as_str(), 1.0)
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a rate (1.5mbit, 500kbit, 2000000)"))?;
    if value.is_nan() || value <= 0.0 {
        bail!("{text:?}: a rate must be positive");
    }
    Ok(Rate((value * scale) as u64))
}

/// `100ms`, `0.1s`, `100` (ms).
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1e-3)
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration (100ms, 0.1s)"))?;
    if value.is_nan() || value < 0.0 || value > 60.0 / scale {
        bail!("{text:?}: a duration from 0 to 60 s");
    }
    Ok(Duration::from_secs_f64(value * scale))
}

fn parse_loss(text: &str) -> anyhow::Result<f64> {
    let loss: f64 = text
        .trim()
        .parse()
        .with_context(|| format!("{text:?} is not a loss ratio (0.02 for 2%)"))?;
    if !(0.0..=1.0).contains(&loss) {
        bail!("{text:?}: a loss ratio from 0 to 1");
    }
    Ok(loss)
}

struct Args {
    down: Option<Rate>,
    up: Option<Rate>,
    target: Option<SocketAddr>,
    rtt: Duration,
    loss: f64,
    jitter: Duration,
    seed: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        down: None,
        up: None,
        target: None,
        rtt: Duration::ZERO,
        loss: 0.0,
        jitter: Duration::ZERO,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--down" => args.down = Some(parse_rate(&value()?)?),
            "--up" => args.up = Some(parse_rate(&value()?)?),
            "--target" => {
                let v = value()?;
                args.target = Some(v.parse().with_context(|| format!("--target {v}"))?);
            }
            "--rtt" => args.rtt = parse_duration(&value()?)?,
            "--loss" => args.loss = parse_loss(&value()?)?,
            "--jitter" => args.jitter = parse_duration(&value()?)?,
            "--seed" => args.seed = value()?.parse().context("--seed")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(args)
}

fn path_impairment(rtt: Duration, loss: f64, jitter: Duration) -> PathImpairment {
    PathImpairment::symmetric(Impairment {
        jitter: jitter / 2,
        ..Impairment::one_way(rtt, loss)
    })
}

/// Removes its directory (the Chromium wrapper) when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chromium_wrapper(ns: &NetNs) -> anyhow::Result<(TempDir, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("{}-chromium", ns.name()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("chromium");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# Chromium inside {0}.\nexec ip netns exec {0} /usr/bin/chromium \"$@\"\n",
            ns.name()
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok((TempDir(dir), script))
}

fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Answers one command line.
fn command(line: &str, ns: &NetNs, relay: Option<&ImpairRelay>) -> anyhow::Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["rate", dir, rate] => {
            let direction = match *dir {
                "down" => Direction::Down,
                "up" => Direction::Up,
                other => bail!("{other:?}: down or up"),
            };
            if *rate == "off" {
                ns.shape(direction, None)?;
            } else {
                ns.set_rate(direction, parse_rate(rate)?)?;
            }
            Ok("ok".into())
        }
        ["impair", rtt, loss, rest @ ..] if rest.len() <= 1 => {
            let relay = relay.ok_or_else(|| anyhow!("no impairment relay (start with --target)"))?;
            let jitter = rest.first().map(|j| parse_duration(j)).transpose()?;
            relay.set(path_impairment(
                parse_duration(rtt)?,
                parse_loss(loss)?,
                jitter.unwrap_or_default(),
            ));
            Ok("ok".into())
        }
        ["stats"] => {
            let down = ns.qdisc_stats(Direction::Down).ok();
            let relay = relay.map(|r| r.stats());
            Ok(format!(
                "{{\"downSentBytes\":{},\"downDropped\":{},\"relayDownPackets\":{},\
                 \"relayDownDropped\":{},\"relayUpPackets\":{},\"relayUpDropped\":{}}}",
                down.map_or(0, |d| d.sent_bytes),
                down.map_or(0, |d| d.dropped),
                relay.map_or(0, |r| r.down.packets),
                relay.map_or(0, |r| r.down.dropped()),
                relay.map_or(0, |r| r.up.packets),
                relay.map_or(0, |r| r.up.dropped()),
            ))
        }
        _ => bail!("unknown command {line:?}: rate down|up <rate>|off, impair <rtt> <loss> [<jitter>], stats"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let spec = LinkSpec {
        down: args.down.map(Shaping::rate),
        up: args.up.map(Shaping::rate),
    };
    let ns = NetNs::new(spec).context("building the network namespace (needs root)")?;
    let relay = match args.target {
        Some(target) => Some(
            ImpairRelay::bind(
                SocketAddr::new(ns.host_addr().into(), 0),
                target,
                path_impairment(args.rtt, args.loss, args.jitter),
                args.seed,
            )
            .await?,
        ),
        None => None,
    };
    let (_wrapper_dir, wrapper) = chromium_wrapper(&ns)?;
    println!(
        "{{\"namespace\":{},\"hostInterface\":{},\"hostAddr\":{},\"nsAddr\":{},\"relay\":{},\"chromium\":{}}}",
        json_str(ns.name()),
        json_str(ns.host_interface()),
        json_str(&ns.host_addr().to_string()),
        json_str(&ns.ns_addr().to_string()),
        relay
            .as_ref()
            .map_or("null".to_string(), |r| json_str(&r.addr().to_string())),
        json_str(&wrapper.display().to_string()),
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => match command(&line, &ns, relay.as_ref()) {
                    Ok(answer) => println!("{answer}"),
                    Err(err) => println!("error: {err:#}"),
                },
                // Stdin ended: the test that started the rig is done (or gone).
                _ => break,
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Dropping `relay` and `ns` (in that order) stops the relay and removes the link.
    drop(relay);
    drop(ns);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_durations_and_losses_parse() {
        assert_eq!(parse_rate("1.5mbit").unwrap(), Rate(1_500_000));
        assert_eq!(parse_rate("500kbit").unwrap(), Rate(500_000));
        assert_eq!(parse_rate("2000000").unwrap(), Rate(2_000_000));
        assert!(parse_rate("0").is_err() && parse_rate("fast").is_err());
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("0.2s").unwrap(), Duration::from_millis(200));
        assert!(parse_duration("-1").is_err() && parse_duration("1h").is_err());
        assert_eq!(parse_loss("0.02").unwrap(), 0.02);
        assert!(parse_loss("2").is_err());
    }
}
