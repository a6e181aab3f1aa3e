//! The load generator: `wrk` (Debian's `wrk` package), keep-alive connections, with a Lua
//! script written here that cycles through a file of paths (each wrk thread from its own
//! offset), counts every answer that is not a 2xx (wrk itself counts only statuses ≥ 400),
//! and prints one machine-readable line from `done()`: requests, duration, the socket errors
//! (connect, read, write, timeout), the non-2xx count and the latency percentiles in µs.
//! That line is what is parsed; wrk's own text report goes to stderr with the progress.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Lua script. Arguments after `--`: the paths file.
const SCRIPT: &str = r#"-- Written by gateway/benches/reads (wrk.rs). Cycles through the paths file given after
-- `--`, each thread from its own offset; counts non-2xx answers; prints one BENCH line.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests = {}
local n = 0
local i = 0
non2xx = 0

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      requests[n] = wrk.format("GET", line)
    end
  end
  f:close()
  assert(n > 0, "no paths in " .. args[1])
  i = math.floor((tid or 0) * n / (nthreads or 1)) % n
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return requests[i]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d non2xx=%d mean_us=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout, bad,
    latency.mean, latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0),
    latency:percentile(99.9), latency.max))
end
"#;

/// Writes the script into `dir`, with the thread count it divides the paths by.
pub fn write_script(dir: &Path, threads: usize) -> std::io::Result<PathBuf> {
    let file = dir.join("reads.lua");
    std::fs::write(&file, format!("nthreads = {threads}\n{SCRIPT}"))?;
    Ok(file)
}

/// Whether `wrk` is on the PATH.
pub fn available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// One wrk run's figures.
#[derive(Clone, Debug, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub duration: Duration,
    pub bytes: u64,
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    /// Answers with a status ≥ 400 (wrk's own count).
    pub status: u64,
    /// Answers that were not 2xx (the script's count).
    pub non2xx: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl WrkResult {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    pub fn socket_errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }

    /// Every request that did not end in a 2xx answer.
    pub fn errors(&self) -> u64 {
        self.socket_errors() + self.non2xx.max(self.status)
    }

    /// "0", or the total with its parts.
    pub fn errors_text(&self) -> String {
        if self.errors() == 0 {
            return "0".into();
        }
        let mut parts = Vec::new();
        for (name, n) in [
            ("non-2xx", self.non2xx.max(self.status)),
            ("connect", self.connect),
            ("read", self.read),
            ("write", self.write),
            ("timeout", self.timeout),
        ] {
            if n > 0 {
                parts.push(format!("{name} {n}"));
            }
        }
        format!("**{}** ({})", self.errors(), parts.join(", "))
    }

    fn parse(line: &str) -> Option<WrkResult> {
        let mut r = WrkResult::default();
        for kv in line.strip_prefix("BENCH ")?.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let f: f64 = v.parse().ok()?;
            let u = f as u64;
            match k {
                "requests" => r.requests = u,
                "duration_us" => r.duration = Duration::from_micros(u),
                "bytes" => r.bytes = u,
                "connect" => r.connect = u,
                "read" => r.read = u,
                "write" => r.write = u,
                "status" => r.status = u,
                "timeout" => r.timeout = u,
                "non2xx" => r.non2xx = u,
                "mean_us" => r.mean_us = f,
                "p50_us" => r.p50_us = f,
                "p90_us" => r.p90_us = f,
                "p99_us" => r.p99_us = f,
                "p999_us" => r.p999_us = f,
                "max_us" => r.max_us = f,
                _ => {}
            }
        }
        Some(r)
    }
}

/// How to run wrk.
#[derive(Clone, Debug)]
pub struct WrkArgs {
    pub threads: usize,
    pub connections: usize,
    pub duration: Duration,
    pub script: PathBuf,
}

/// Runs wrk against `base` (`http://127.0.0.1:port`) with the paths in `paths`; its text
/// report goes to stderr.
pub async fn run(args: &WrkArgs, base: &str, paths: &Path) -> Result<WrkResult, String> {
    let out = tokio::process::Command::new("wrk")
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration.as_secs().max(1)))
        .arg("--latency")
        .arg("--timeout")
        .arg("5s")
        .arg("-s")
        .arg(&args.script)
        .arg(base)
        .arg("--")
        .arg(paths)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout.lines().filter(|l| !l.starts_with("BENCH ")) {
        eprintln!("      | {line}");
    }
    for line in stderr.lines() {
        eprintln!("      ! {line}");
    }
    if !out.status.success() {
        return Err(format!("wrk exited with {}: {}", out.status, stderr.trim()));
    }
    let line = stdout.lines().find(|l| l.starts_with("BENCH ")).ok_or("wrk printed no BENCH line")?;
    WrkResult::parse(line).ok_or_else(|| format!("cannot parse wrk's line {line:?}"))
}
