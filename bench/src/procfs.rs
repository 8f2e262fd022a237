//! CPU time and resident memory of a process, read from Linux's `/proc`.

use anyhow::{anyhow, Context};

/// One reading of a process's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessSample {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s CPU times (`getconf CLK_TCK`;
/// 100 on every common Linux).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// Reads `pid`'s CPU time and RSS.
pub fn sample(pid: u32) -> anyhow::Result<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    Ok(ProcessSample {
        cpu_ticks: cpu_ticks(&stat)?,
        rss_kib: rss_kib(&status)?,
    })
}

/// utime + stime (fields 14 and 15 of `stat`). The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("unexpected /proc stat line"))?;
    // after_name starts at field 3 (state): utime is field 14, so index 11 here.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("unexpected /proc stat line"))
    };
    Ok(field(11)? + field(12)?)
}

fn rss_kib(status: &str) -> anyhow::Result<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc status"))
}

/// The system's UDP counters (`/proc/net/snmp`): all sockets, so on a quiet machine
/// they are the benchmark's loopback traffic.
#[derive(Clone, Copy, Debug, Default)]
pub struct UdpCounters {
    /// Datagrams dropped because a socket's receive buffer was full.
    pub receive_buffer_errors: u64,
    /// Datagrams not sent because a socket's send buffer was full.
    pub send_buffer_errors: u64,
}

pub fn udp_counters() -> UdpCounters {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = text.lines().filter(|line| line.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return UdpCounters::default();
    };
    let field = |name: &str| {
        names
            .split_whitespace()
            .position(|n| n == name)
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    UdpCounters {
        receive_buffer_errors: field("RcvbufErrors"),
        send_buffer_errors: field("SndbufErrors"),
    }
}

/// Datagrams dropped so far by the UDP sockets bound to `port` and by all other UDP sockets
/// (`drops`, the last column of `/proc/net/udp` and `/proc/net/udp6`), to tell the relay's
/// socket from the load generator's.
pub fn udp_drops_by_port(port: u16) -> (u64, u64) {
    let (mut on_port, mut others) = (0, 0);
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|addr| addr.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            let drops: u64 = fields.last().and_then(|d| d.parse().ok()).unwrap_or(0);
            if local_port == Some(port) {
                on_port += drops;
            } else {
                others += drops;
            }
        }
    }
    (on_port, others)
}

/// Whether some socket is bound to UDP `port` (from `/proc/net/udp` and `udp6`).
pub fn udp_port_bound(port: u16) -> bool {
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                line.split_whitespace()
                    .nth(1)
                    .and_then(|addr| addr.rsplit_once(':'))
                    .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
                    == Some(port)
            })
        })
    })
}

/// A UDP port free on 127.0.0.1 now, for a relay that cannot report the port it bound.
pub fn free_udp_port() -> anyhow::Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").context("cannot bind a UDP socket")?;
    Ok(socket.local_addr()?.port())
}

/// The machine's memory (`MemTotal` of `/proc/meminfo`), in KiB.
pub fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// How many threads process `pid` has now (`Threads` of `/proc/<pid>/status`).
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// The one-minute load average: other work on the machine shows here.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The machine's CPU count (all of them, whatever this process is pinned to) and model
/// name, from `/proc/cpuinfo`.
pub fn cpus() -> (usize, String) {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let count = text
        .lines()
        .filter(|line| line.starts_with("processor"))
        .count();
    let model = text
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or_else(|| "unknown".to_string(), |(_, m)| m.trim().to_string());
    (count.max(1), model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let stat = "1234 (a b) c)) S 1 1 1 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 1 2 3";
        assert_eq!(cpu_ticks(stat).unwrap(), 325);
    }

    #[test]
    fn parses_rss() {
        let status = "Name:\tx\nVmPeak:\t 9 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        assert_eq!(rss_kib(status).unwrap(), 20480);
    }

    #[test]
    fn reads_own_process() {
        let own = sample(std::process::id()).unwrap();
        assert!(own.rss_kib > 0);
    }
}
