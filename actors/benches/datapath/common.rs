//! What the parts share: environment knobs, time and percentile helpers, the load runner
//! ([`run_load`]) and the cluster helpers ([`wait_settled`], [`statuses`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use instaface_bus::graph::Attributes;
use instaface_bus::messages::Role;
use instaface_testkit::Cluster;

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn wall_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Nearest-rank percentile of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[derive(Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub mean: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn summary(values: &[f64]) -> Summary {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    Summary {
        n,
        min: v.first().copied().unwrap_or(f64::NAN),
        p50: pct(&v, 50.0),
        mean: if n == 0 { f64::NAN } else { v.iter().sum::<f64>() / n as f64 },
        p99: pct(&v, 99.0),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

/// Formats microseconds as ms with 2 decimals.
pub fn fm(us: f64) -> String {
    if us.is_finite() {
        format!("{:.2}", us / 1000.0)
    } else {
        "-".into()
    }
}

pub fn attrs(v: serde_json::Value) -> Attributes {
    v.as_object().cloned().unwrap_or_default()
}

pub fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rand::random::<u64>() as usize % (i + 1);
        v.swap(i, j);
    }
}

/// The result of a load run: latencies (µs) by operation kind, errors, elapsed time.
pub struct Load {
    pub lat: BTreeMap<&'static str, Vec<f64>>,
    pub errors: BTreeMap<String, usize>,
    pub elapsed: Duration,
}

impl Load {
    pub fn all(&self) -> Vec<f64> {
        self.lat.values().flatten().copied().collect()
    }
    pub fn ops(&self) -> usize {
        self.lat.values().map(|v| v.len()).sum()
    }
    pub fn rate(&self) -> f64 {
        self.ops() as f64 / self.elapsed.as_secs_f64()
    }
    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }
}

/// Runs `op` in `conc` workers for `dur`; `op` returns the operation's kind (or an error).
pub async fn run_load<F, Fut>(label: &str, conc: usize, dur: Duration, op: F) -> Load
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<&'static str, String>> + Send + 'static,
{
    let count = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = t0 + dur;
    let mut workers = Vec::new();
    for _ in 0..conc {
        let op = op.clone();
        let count = count.clone();
        workers.push(tokio::spawn(async move {
            let mut lat: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
            let mut errors: BTreeMap<String, usize> = BTreeMap::new();
            while Instant::now() < deadline {
                let s = Instant::now();
                match op().await {
                    Ok(kind) => lat.entry(kind).or_default().push(us(s.elapsed())),
                    Err(e) => {
                        // Keep error kinds few: the message up to its first digit.
                        let key: String = e.chars().take_while(|c| !c.is_ascii_digit()).take(60).collect();
                        *errors.entry(key).or_default() += 1;
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            (lat, errors)
        }));
    }
    let progress = if dur >= Duration::from_secs(8) {
        let count = count.clone();
        let label = label.to_string();
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                eprintln!(
                    "    {label}: {} ops after {:.0} s",
                    count.load(Ordering::Relaxed),
                    t0.elapsed().as_secs_f64()
                );
            }
        }))
    } else {
        None
    };
    let mut out = Load { lat: BTreeMap::new(), errors: BTreeMap::new(), elapsed: Duration::ZERO };
    for w in workers {
        let (lat, errors) = w.await.expect("worker");
        for (k, v) in lat {
            out.lat.entry(k).or_default().extend(v);
        }
        for (k, v) in errors {
            *out.errors.entry(k).or_default() += v;
        }
    }
    out.elapsed = t0.elapsed();
    if let Some(p) = progress {
        p.abort();
    }
    out
}

/// Waits until every node in `ids` answers, exactly one leads, and every other one follows
/// it in its term holding a read lease (unplugged nodes in `skip` are left out).
pub async fn wait_settled(c: &Cluster, ids: &[String], timeout: Duration) -> Option<(String, u64)> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut st = Vec::new();
        for id in ids {
            if let Some(s) = c.status(id).await {
                st.push(s);
            }
        }
        if st.len() == ids.len() {
            let leaders: Vec<_> = st.iter().filter(|s| s.role == Role::Leader).collect();
            if leaders.len() == 1 {
                let (l, t) = (leaders[0].node.clone(), leaders[0].term);
                if st.iter().all(|s| {
                    s.term == t
                        && (s.node == l
                            || (s.role == Role::Follower && s.leader.as_deref() == Some(l.as_str()) && s.lease_ms > 0))
                }) {
                    return Some((l, t));
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
