//! What the machine was doing around each run, from `/proc`: the load average (so a reader
//! can tell whether something else was running), the whole machine's busy CPU, and the CPU
//! time of the processes on the read path (the server under test, the nodes, nats-server,
//! mariadbd, and wrk), to turn into CPU microseconds per request.

use std::collections::BTreeMap;
use std::time::Instant;

/// `/proc/loadavg`'s 1-, 5- and 15-minute load averages.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadAvg(pub f64, pub f64, pub f64);

impl LoadAvg {
    pub fn now() -> LoadAvg {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut it = text.split_whitespace().map(|x| x.parse::<f64>().unwrap_or(f64::NAN));
        LoadAvg(it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN))
    }
}

impl std::fmt::Display for LoadAvg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} {:.2} {:.2}", self.0, self.1, self.2)
    }
}

/// Clock ticks per second of `/proc`'s CPU times (`getconf CLK_TCK`, 100 when that fails).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system ticks of process `pid` (`None` when it is gone).
fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// User + system ticks of this process's reaped children (fields 16 and 17, cutime and
/// cstime): how wrk's CPU is read once it has exited.
fn children_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    get(13) + get(14)
}

/// The pids of every process whose command name is one of `names`.
pub fn pids_named(names: &[&str]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| names.contains(&c.trim())))
        .collect()
}

/// Busy and total ticks of the whole machine (`/proc/stat`'s `cpu` line).
fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let total: u64 = (0..8).map(get).sum();
    (total - idle, total)
}

/// The groups of processes whose CPU a run accounts, by label.
#[derive(Clone, Debug, Default)]
pub struct Watched {
    pub groups: Vec<(&'static str, Vec<u32>)>,
}

/// CPU ticks per group at one moment, plus the machine's.
#[derive(Clone, Debug)]
pub struct CpuSnapshot {
    at: Instant,
    groups: BTreeMap<&'static str, u64>,
    children: u64,
    machine: (u64, u64),
}

impl Watched {
    pub fn snapshot(&self) -> CpuSnapshot {
        let groups = self
            .groups
            .iter()
            .map(|(label, pids)| (*label, pids.iter().filter_map(|p| proc_ticks(*p)).sum()))
            .collect();
        CpuSnapshot { at: Instant::now(), groups, children: children_ticks(), machine: machine_ticks() }
    }
}

/// CPU used between two snapshots: seconds per group (and `wrk`: this process's reaped
/// children), and the machine's busy fraction of all its CPUs.
#[derive(Clone, Debug, Default)]
pub struct CpuUse {
    pub secs: BTreeMap<&'static str, f64>,
    pub wrk_secs: f64,
    pub machine_busy_secs: f64,
    pub elapsed: f64,
}

impl CpuSnapshot {
    pub fn since(&self, before: &CpuSnapshot, hz: f64) -> CpuUse {
        let secs = self
            .groups
            .iter()
            .map(|(k, v)| (*k, v.saturating_sub(before.groups.get(k).copied().unwrap_or(0)) as f64 / hz))
            .collect();
        let busy = self.machine.0.saturating_sub(before.machine.0);
        CpuUse {
            secs,
            wrk_secs: self.children.saturating_sub(before.children) as f64 / hz,
            machine_busy_secs: busy as f64 / hz,
            elapsed: self.at.duration_since(before.at).as_secs_f64(),
        }
    }
}
