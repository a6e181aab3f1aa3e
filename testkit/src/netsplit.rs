//! Real network partitions between NATS servers: a [`NatsMesh`] is a routed cluster of
//! `nats-server`s, each in a network namespace of its own, whose links to each other can be
//! cut and healed while every process in the root namespace (instaface nodes, the test's
//! clients, MariaDB, Redis) keeps reaching every server.
//!
//! The topology and the cuts live in one place, `compose/partition.sh` (which people use
//! by hand too); this module runs it. A cut makes each side silently drop the packets of
//! the other (no RST, no ICMP): messages across it are lost at once, and the route between
//! the two servers dies as in a real partition — missed PINGs, or TCP giving up on
//! unacknowledged data — about 1.5 s later with the script's settings. Once healed,
//! nats-server reconnects the route by itself, typically within 0.1–2 s;
//! [`NatsMesh::wait_routes`] waits for the routes to match the cuts either way.
//!
//! Needs root, iproute2 and `nats-server`. [`NatsMesh::start`] says why it cannot run;
//! [`NatsMesh::start_or_skip`] turns that into a loud skip, or a failure under `CI=true`.
//!
//! Every method other than `start` shells out synchronously for a few milliseconds; the
//! ones that change the network panic if the script fails (they are test helpers).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{bin_dir, NodeEnv};

/// The script that builds and cuts the mesh (`INSTAFACE_PARTITION_SCRIPT` to override).
pub fn partition_script() -> PathBuf {
    if let Ok(path) = std::env::var("INSTAFACE_PARTITION_SCRIPT") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/partition.sh")
}

/// A running mesh of NATS servers `0..len()`. Dropping it kills the servers and removes
/// their namespaces, links and bridge (the logs stay in [`NatsMesh::log_dir`]).
pub struct NatsMesh {
    name: String,
    script: PathBuf,
    urls: Vec<String>,
    log_dir: PathBuf,
    up: bool,
}

impl NatsMesh {
    /// Starts `n` routed servers as instance `<name>-<random>` (so parallel runs do not
    /// collide) and waits until each routes to every other. `Err` says why it could not
    /// (not root, no network namespaces, no nats-server, …); nothing is left behind then.
    pub fn start(name: &str, n: usize) -> Result<NatsMesh, String> {
        if name.is_empty()
            || name.len() > 24
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("mesh name {name:?}: use 1-24 letters, digits, '-' or '_'"));
        }
        let script = partition_script();
        if !script.exists() {
            return Err(format!("{} is missing", script.display()));
        }
        let instance = format!("{name}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let log_dir = bin_dir().join("../test-logs").join(&instance);
        let mut mesh = NatsMesh { name: instance, script, urls: Vec::new(), log_dir, up: false };
        // Instances left by test processes that died without dropping theirs.
        let _ = mesh.run(&["prune"]);
        if let Err(e) = mesh.run(&["--log-dir", &mesh.log_dir.display().to_string(), "up", &n.to_string()]) {
            let _ = mesh.run(&["down"]); // `up` cleans up after itself; this is belt and braces
            return Err(e);
        }
        mesh.up = true;
        mesh.urls = mesh.run(&["urls"])?.lines().map(str::to_string).collect();
        if mesh.urls.len() != n {
            return Err(format!("partition.sh urls listed {} servers, not {n}", mesh.urls.len()));
        }
        Ok(mesh)
    }

    /// [`NatsMesh::start`], or `None` after printing a loud SKIPPED line when the mesh
    /// cannot run here; in CI (`CI=true`) that fails the test instead
    /// ([`crate::skip_or_fail_in_ci`]), so CI cannot skip it unnoticed.
    #[track_caller]
    pub fn start_or_skip(test: &str, n: usize) -> Option<NatsMesh> {
        match NatsMesh::start(test, n) {
            Ok(mesh) => Some(mesh),
            Err(why) => {
                crate::skip_or_fail_in_ci(
                    test,
                    &format!("the NATS mesh cannot start here (needs root, iproute2, nats-server): {why}"),
                );
                None
            }
        }
    }

    /// The instance name (`compose/partition.sh --name NAME …` works on it by hand).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many servers.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Server `i`'s client URL (`nats://10.77.K.<i+1>:4222`).
    pub fn url(&self, i: usize) -> &str {
        &self.urls[i]
    }

    /// Every server's client URL, comma-separated (as `NATS_URL`).
    pub fn urls(&self) -> String {
        self.urls.join(",")
    }

    /// Server `i`'s monitoring base URL (`http://10.77.K.<i+1>:8222`).
    pub fn monitor_url(&self, i: usize) -> String {
        self.urls[i].replacen("nats://", "http://", 1).replace(":4222", ":8222")
    }

    /// The server's name as it reports it (`INFO`'s `server_name`): `<name>-s<i>`.
    pub fn server_name(&self, i: usize) -> String {
        format!("{}-s{i}", self.name)
    }

    /// Where the servers' logs are (`s<i>.log`).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Environment placing node `n<k+1>` on server `k % len()` only (its `NATS_URL`), for
    /// [`crate::Cluster::start_placed`]: n1 on server 0, n2 on server 1, …
    pub fn node_env(&self, nodes: usize) -> NodeEnv {
        (0..nodes)
            .map(|k| (format!("n{}", k + 1), vec![("NATS_URL".to_string(), self.urls[k % self.len()].clone())]))
            .collect()
    }

    /// Cuts the network between servers `a` and `b`, both ways: each silently drops the
    /// other's packets. Clients keep reaching both.
    #[track_caller]
    pub fn cut(&self, a: usize, b: usize) {
        self.must(&["cut", &a.to_string(), &b.to_string()]);
    }

    /// Cuts server `a` from every other server (clients still reach it).
    #[track_caller]
    pub fn isolate(&self, a: usize) {
        self.must(&["isolate", &a.to_string()]);
    }

    /// Undoes the cut between `a` and `b`.
    #[track_caller]
    pub fn heal(&self, a: usize, b: usize) {
        self.must(&["heal", &a.to_string(), &b.to_string()]);
    }

    /// Undoes every cut.
    #[track_caller]
    pub fn heal_all(&self) {
        self.must(&["heal"]);
    }

    /// Kills server `i` (its namespace and address stay); [`NatsMesh::start_server`]
    /// starts it again.
    #[track_caller]
    pub fn stop_server(&self, i: usize) {
        self.must(&["stop", &i.to_string()]);
    }

    /// Starts server `i` again after [`NatsMesh::stop_server`].
    #[track_caller]
    pub fn start_server(&self, i: usize) {
        self.must(&["start", &i.to_string()]);
    }

    /// The servers that server `i` has a route to right now (from its `/routez`), or
    /// `None` if it does not answer.
    pub fn routes(&self, i: usize) -> Option<Vec<usize>> {
        let out = self.run(&["routes", &i.to_string()]).ok()?;
        Some(out.split_whitespace().filter_map(|s| s.parse().ok()).collect())
    }

    /// Waits (at most `timeout`, whole seconds) until every running server routes to
    /// exactly the servers it is not cut from.
    pub fn wait_routes(&self, timeout: Duration) -> Result<(), String> {
        let secs = timeout.as_secs_f64().ceil().max(1.0) as u64;
        self.run(&["wait", &secs.to_string()]).map(|_| ())
    }

    /// The script's `status` table: pids, URLs, routes and cuts.
    pub fn status(&self) -> String {
        self.run(&["status"]).unwrap_or_else(|e| e)
    }

    /// Tears the mesh down now (Drop does it otherwise).
    pub fn down(&mut self) {
        if std::mem::take(&mut self.up) {
            if let Err(e) = self.run(&["down"]) {
                eprintln!("netsplit: tearing down {}: {e}", self.name);
            }
        }
    }

    #[track_caller]
    fn must(&self, args: &[&str]) {
        if let Err(e) = self.run(args) {
            panic!("{e}");
        }
    }

    /// Runs the script on this instance; its stdout, or a message with its stderr.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(["--name", &self.name])
            .args(args)
            .env("PARTITION_OWNER_PID", std::process::id().to_string())
            .output()
            .map_err(|e| format!("running bash {}: {e}", self.script.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "partition.sh --name {} {} failed ({}): {}{}",
                self.name,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                if out.stdout.is_empty() {
                    String::new()
                } else {
                    format!(" [stdout: {}]", String::from_utf8_lossy(&out.stdout).trim())
                }
            ))
        }
    }
}

impl Drop for NatsMesh {
    fn drop(&mut self) {
        self.down();
    }
}
