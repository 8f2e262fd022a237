//! Keeps the relay and the load generator on separate CPUs (with util-linux `taskset`), so
//! the relay's CPU time is its own and the two do not steal each other's core.

use std::process::Command;

/// The CPU the relay runs on.
pub const RELAY_CPU: u32 = 0;
/// The CPU this process (publisher and subscribers) runs on.
pub const LOAD_CPU: u32 = 1;

/// Whether the processes were pinned, said in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// Relay on [`RELAY_CPU`], load generator on [`LOAD_CPU`].
    Pinned,
    /// Not pinned, and why.
    Unpinned(String),
    /// Turned off with `--no-pin`.
    Off,
}

impl Pinning {
    pub fn is_pinned(&self) -> bool {
        *self == Pinning::Pinned
    }

    pub fn describe(&self) -> String {
        match self {
            Pinning::Pinned => {
                format!("relay pinned to CPU {RELAY_CPU}, load generator to CPU {LOAD_CPU}")
            }
            Pinning::Unpinned(why) => format!("not pinned: {why}"),
            Pinning::Off => "not pinned (--no-pin)".to_string(),
        }
    }
}

/// Pins this process's current thread (and so the threads it starts later) to `cpu`.
pub fn pin_self(cpu: u32) -> Pinning {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The relay's CPU is 0, always present; `cpu` must exist too.
    if cpus <= cpu as usize {
        return Pinning::Unpinned(format!("only {cpus} CPU(s) available"));
    }
    let pid = std::process::id().to_string();
    match Command::new("taskset")
        .args(["-cp", &cpu.to_string(), &pid])
        .output()
    {
        Ok(out) if out.status.success() => Pinning::Pinned,
        Ok(out) => Pinning::Unpinned(format!(
            "taskset failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Pinning::Unpinned(format!("taskset not available ({err})")),
    }
}

/// The command that starts `program` on the relay's CPU when pinning is on.
pub fn relay_command(program: &std::path::Path, pinning: &Pinning) -> Command {
    if pinning.is_pinned() {
        let mut command = Command::new("taskset");
        command.arg("-c").arg(RELAY_CPU.to_string()).arg(program);
        command
    } else {
        Command::new(program)
    }
}
