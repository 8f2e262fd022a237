//! A network namespace joined to this machine by a veth pair, with a `tc tbf` rate limit
//! on each direction, so a test can put a viewer (the CLI, Chromium, node) behind a slow
//! link. Delay, jitter and loss are not in this kernel's `tc` (no `netem`): put an
//! [`ImpairRelay`](crate::impair::ImpairRelay) on the path with [`NetNs::impair_to`].
//!
//! Everything stays inside this machine: the pair gets unique-local IPv6 addresses
//! (`fd42:5cXX:…::/64`, derived from the process id and a counter, so concurrent tests and
//! test binaries never collide), and the namespace has no other route. Dropping a
//! [`NetNs`] (also while a test panics) stops what runs inside it and removes it.

use std::net::{Ipv6Addr, SocketAddr};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::impair::{ImpairError, ImpairRelay, PathImpairment};

/// Prefix of every namespace this module makes: `stagecast-<pid>-<n>`.
const NS_PREFIX: &str = "stagecast-";

/// A link rate in bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(pub u64);

impl Rate {
    pub fn kbit(kbit: u64) -> Self {
        Self(kbit * 1000)
    }

    pub fn mbit(mbit: f64) -> Self {
        Self((mbit * 1e6) as u64)
    }

    pub fn bits_per_second(self) -> u64 {
        self.0
    }
}

/// A `tbf` rate limit: `rate`, a bucket of `burst` bytes, and a queue that holds
/// `latency` worth of packets at that rate (beyond it, the kernel drops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shaping {
    pub rate: Rate,
    pub burst_bytes: u32,
    pub latency: Duration,
}

impl Shaping {
    /// `rate` with a 16 KiB bucket (or 10 ms at the rate, if more) and a 300 ms queue:
    /// what FACTS.md checked (`tbf rate 2mbit burst 16kb latency 300ms`).
    pub fn rate(rate: Rate) -> Self {
        let ten_ms = (rate.0 / 8 / 100) as u32;
        Self {
            rate,
            burst_bytes: ten_ms.max(16 * 1024),
            latency: Duration::from_millis(300),
        }
    }

    fn tc_args(&self) -> Vec<String> {
        vec![
            "tbf".into(),
            "rate".into(),
            format!("{}bit", self.rate.0.max(8)),
            "burst".into(),
            format!("{}b", self.burst_bytes),
            "latency".into(),
            format!("{}ms", self.latency.as_millis().max(1)),
        ]
    }
}

/// The rate limits of a link: `down` toward the namespace (what a viewer inside
/// downloads), `up` from it. None leaves that direction at veth speed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkSpec {
    pub down: Option<Shaping>,
    pub up: Option<Shaping>,
}

impl LinkSpec {
    /// `rate` down, unlimited up: a viewer's link, where only the download matters.
    pub fn down(rate: Rate) -> Self {
        Self {
            down: Some(Shaping::rate(rate)),
            up: None,
        }
    }

    /// `rate` both ways.
    pub fn symmetric(rate: Rate) -> Self {
        Self {
            down: Some(Shaping::rate(rate)),
            up: Some(Shaping::rate(rate)),
        }
    }
}

/// One direction of the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Toward the namespace (shaped on the host end of the pair).
    Down,
    /// Out of the namespace (shaped on its end).
    Up,
}

/// What a direction's `tbf` counted (`tc -s qdisc show`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QdiscStats {
    pub sent_bytes: u64,
    pub sent_packets: u64,
    pub dropped: u64,
    pub overlimits: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot run `{command}`: {source} (network namespaces need root and iproute2)")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("no qdisc statistics in `tc -s qdisc show` output: {0}")]
    Stats(String),
}

/// A namespace, its veth pair and their rate limits; removed when dropped.
pub struct NetNs {
    name: String,
    host_if: String,
    ns_if: String,
    host_addr: Ipv6Addr,
    ns_addr: Ipv6Addr,
    /// The limits in force, per direction.
    shaping: Mutex<LinkSpec>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(command: &mut Command) -> Result<Output, NetnsError> {
    let shown = format!("{command:?}").replace('"', "");
    let output = command.output().map_err(|source| NetnsError::Spawn {
        command: shown.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(NetnsError::Failed {
            command: shown,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

fn ip(args: &[&str]) -> Result<Output, NetnsError> {
    run(Command::new("ip").args(args))
}

impl NetNs {
    /// Makes a namespace with a veth pair to this machine and `spec`'s rate limits.
    /// Fails with the failing command and its error (not root, no iproute2...).
    pub fn new(spec: LinkSpec) -> Result<NetNs, NetnsError> {
        remove_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Interface names have 15 bytes at most: "sc" + 6 + 4 hex digits + "h"/"n".
        let tag = format!("{:06x}{:04x}", pid & 0xFF_FFFF, n & 0xFFFF);
        // fd42:5cPP:PPPP:nnnn::/64, unique per process and link.
        let prefix = [
            0xfd42,
            0x5c00 | ((pid >> 16) & 0xFF) as u16,
            (pid & 0xFFFF) as u16,
            (n & 0xFFFF) as u16,
        ];
        let addr =
            |host: u16| Ipv6Addr::new(prefix[0], prefix[1], prefix[2], prefix[3], 0, 0, 0, host);
        let ns = NetNs {
            name: format!("{NS_PREFIX}{pid}-{n}"),
            host_if: format!("sc{tag}h"),
            ns_if: format!("sc{tag}n"),
            host_addr: addr(1),
            ns_addr: addr(2),
            shaping: Mutex::new(LinkSpec::default()),
        };
        // From here on, Drop removes whatever part was made.
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_if,
            "netns",
            &ns.name,
        ])?;
        let host_cidr = format!("{}/64", ns.host_addr);
        let ns_cidr = format!("{}/64", ns.ns_addr);
        // nodad: the addresses work at once, without waiting for duplicate detection.
        ip(&["addr", "add", &host_cidr, "dev", &ns.host_if, "nodad"])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ns.ip_inside(&["addr", "add", &ns_cidr, "dev", &ns.ns_if, "nodad"])?;
        ns.ip_inside(&["link", "set", &ns.ns_if, "up"])?;
        ns.ip_inside(&["link", "set", "lo", "up"])?;
        ns.shape(Direction::Down, spec.down)?;
        ns.shape(Direction::Up, spec.up)?;
        Ok(ns)
    }

    fn ip_inside(&self, args: &[&str]) -> Result<Output, NetnsError> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name, "ip"])
            .args(args))
    }

    /// The namespace's name (for `ip netns exec NAME ...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of this machine's end of the pair (where `down` is shaped).
    pub fn host_interface(&self) -> &str {
        &self.host_if
    }

    /// This machine's end of the pair: what processes inside reach this machine at
    /// (a server bound to `[::]` answers there, through the rate limits).
    pub fn host_addr(&self) -> Ipv6Addr {
        self.host_addr
    }

    /// The namespace's end of the pair.
    pub fn ns_addr(&self) -> Ipv6Addr {
        self.ns_addr
    }

    /// `scheme://[host end]:port`, for instance the `moqt://` URL of a node bound to
    /// `[::]`, as seen from inside.
    pub fn host_url(&self, scheme: &str, port: u16) -> String {
        format!("{scheme}://[{}]:{port}", self.host_addr)
    }

    /// The limits in force.
    pub fn shaping(&self) -> LinkSpec {
        *self.shaping.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets (or with None removes) the rate limit of a direction, also while traffic
    /// flows: `tc qdisc replace` changes the rate without resetting the link.
    pub fn shape(&self, direction: Direction, shaping: Option<Shaping>) -> Result<(), NetnsError> {
        let mut tc = self.tc(direction);
        let current = self.shaping();
        let had = match direction {
            Direction::Down => current.down.is_some(),
            Direction::Up => current.up.is_some(),
        };
        match shaping {
            Some(s) => {
                tc.args(["qdisc", "replace", "dev", self.dev(direction), "root"]);
                tc.args(s.tc_args());
            }
            None if had => {
                tc.args(["qdisc", "del", "dev", self.dev(direction), "root"]);
            }
            None => return Ok(()),
        }
        run(&mut tc)?;
        let mut now = self.shaping.lock().unwrap_or_else(|p| p.into_inner());
        match direction {
            Direction::Down => now.down = shaping,
            Direction::Up => now.up = shaping,
        }
        Ok(())
    }

    /// Changes a direction's rate, keeping its bucket and queue (or the defaults of
    /// [`Shaping::rate`] when it had none).
    pub fn set_rate(&self, direction: Direction, rate: Rate) -> Result<(), NetnsError> {
        let current = match direction {
            Direction::Down => self.shaping().down,
            Direction::Up => self.shaping().up,
        };
        let shaping = match current {
            Some(s) => Shaping {
                rate,
                burst_bytes: s.burst_bytes.max(Shaping::rate(rate).burst_bytes),
                ..s
            },
            None => Shaping::rate(rate),
        };
        self.shape(direction, Some(shaping))
    }

    /// What a direction's `tbf` sent and dropped so far.
    pub fn qdisc_stats(&self, direction: Direction) -> Result<QdiscStats, NetnsError> {
        let mut tc = self.tc(direction);
        tc.args(["-s", "qdisc", "show", "dev", self.dev(direction)]);
        let output = run(&mut tc)?;
        parse_qdisc_stats(&String::from_utf8_lossy(&output.stdout))
    }

    fn dev(&self, direction: Direction) -> &str {
        match direction {
            Direction::Down => &self.host_if,
            Direction::Up => &self.ns_if,
        }
    }

    /// `tc`, run where the direction's interface is.
    fn tc(&self, direction: Direction) -> Command {
        match direction {
            Direction::Down => Command::new("tc"),
            Direction::Up => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &self.name, "tc"]);
                cmd
            }
        }
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which execs
    /// it: the child's id is the program's). Children it starts (Chromium from node or
    /// playwright) are inside too.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// An impairment relay on this machine's end of the pair, forwarding to `target`
    /// (for instance an origin's QUIC port on `[::1]`): a client inside sends to
    /// [`ImpairRelay::addr`] and its datagrams cross the rate limits and the relay's
    /// delay and loss both ways.
    pub fn impair_to(
        &self,
        target: SocketAddr,
        path: PathImpairment,
        seed: u64,
    ) -> Result<ImpairRelay, ImpairError> {
        ImpairRelay::start(
            SocketAddr::new(self.host_addr.into(), 0),
            target,
            path,
            seed,
        )
    }

    /// The Chromium flag that makes a page served from this machine's end
    /// (`http://[host]:http_port`) a secure context, so it may use WebTransport.
    pub fn chromium_secure_origin_flag(&self, http_port: u16) -> String {
        format!(
            "--unsafely-treat-insecure-origin-as-secure=http://[{}]:{http_port}",
            self.host_addr
        )
    }

    /// Ids of the processes running inside.
    pub fn pids(&self) -> Vec<u32> {
        ip(&["netns", "pids", &self.name])
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Whatever still runs inside was started through this namespace by the test.
        for pid in self.pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
        }
        // Deleting one end of a veth pair deletes both; the namespace then goes.
        let _ = ip(&["link", "del", &self.host_if]);
        if let Err(err) = ip(&["netns", "del", &self.name]) {
            eprintln!("netns {}: cannot remove it: {err}", self.name);
        }
    }
}

/// Removes namespaces left by test processes that no longer exist (killed before their
/// Drop ran). Processes still inside are left alone: they are no one's to kill.
fn remove_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// The first `Sent ... (dropped ..., overlimits ...)` line of `tc -s qdisc show`.
fn parse_qdisc_stats(text: &str) -> Result<QdiscStats, NetnsError> {
    let bad = || NetnsError::Stats(text.trim().to_string());
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Sent "))
        .ok_or_else(bad)?;
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let after = |key: &str| -> Option<u64> {
        let i = words.iter().position(|w| *w == key)?;
        words.get(i + 1)?.parse().ok()
    };
    let number_before = |key: &str| -> Option<u64> {
        let i = words.iter().position(|w| *w == key)?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    };
    Ok(QdiscStats {
        sent_bytes: number_before("bytes").ok_or_else(bad)?,
        sent_packets: number_before("pkt").ok_or_else(bad)?,
        dropped: after("dropped").ok_or_else(bad)?,
        overlimits: after("overlimits").ok_or_else(bad)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qdisc_statistics_are_read_from_tc_output() {
        let text = "qdisc tbf 8001: root refcnt 3 rate 2Mbit burst 16Kb lat 300ms \n \
                    Sent 123456 bytes 789 pkt (dropped 12, overlimits 345 requeues 0) \n \
                    backlog 0b 0p requeues 0\n";
        assert_eq!(
            parse_qdisc_stats(text).unwrap(),
            QdiscStats {
                sent_bytes: 123456,
                sent_packets: 789,
                dropped: 12,
                overlimits: 345
            }
        );
        assert!(parse_qdisc_stats("qdisc noqueue 0: root").is_err());
    }

    #[test]
    fn shaping_has_a_bucket_of_at_least_16_kib_and_10_ms() {
        assert_eq!(Shaping::rate(Rate::mbit(2.0)).burst_bytes, 16 * 1024);
        assert_eq!(Shaping::rate(Rate::mbit(100.0)).burst_bytes, 125_000);
        assert_eq!(
            Shaping::rate(Rate::kbit(1500)).tc_args().join(" "),
            "tbf rate 1500000bit burst 16384b latency 300ms"
        );
    }
}
