//! The local launcher (`compose/run-local.sh`, the README's first command), end to end: on
//! a prefix, database and ports of its own, with three nodes and the debug binaries, it
//! must start a NATS server of its own with a user per role (passwords made into a private
//! secrets file it names), run every process as its role's user with its role's inbox
//! prefix, bring up a cluster whose gateway reports a leader, run the bot (entities appear
//! and keep appearing), print the URL, and on SIGINT stop everything and exit 0, leaving no
//! process of its prefix behind (nor the NATS configuration it wrote).
//!
//! Needs the workspace binaries built (`cargo build --workspace --bins`, as
//! the README's test command does), NATS, MariaDB and Redis.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use instaface_testkit::{bin_dir, binary, free_port, wait_until_async};
use serde_json::Value;

/// Pids of the processes whose environment has `INSTAFACE_PREFIX=<prefix>`, with their
/// command names.
fn processes_of(prefix: &str) -> Vec<(u32, String)> {
    let needle = format!("INSTAFACE_PREFIX={prefix}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|&b| b == 0).any(|var| var == needle.as_bytes()) {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_string();
            found.push((pid, comm));
        }
    }
    found
}

/// The environment of process `pid`.
fn environ_of(pid: u32) -> BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|&b| b == 0)
        .filter_map(|var| {
            let var = String::from_utf8_lossy(var);
            var.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Cleans up whatever the launcher left, even when the test fails: SIGKILL to every
/// process of the prefix (all started by this test), the database, the Redis membership.
struct Leftovers {
    prefix: String,
    database: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for (pid, _) in processes_of(&self.prefix) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let _ = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e", &format!("DROP DATABASE IF EXISTS `{}`", self.database)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "DEL", &format!("{}:members", self.prefix)])
            .stdout(Stdio::null())
            .status();
    }
}

fn tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launcher_runs_the_stack_and_stops_it_cleanly() {
    for bin in ["instaface-node", "instaface-gateway", "instaface-bot"] {
        binary(bin); // fails early, with the fix, when one is missing
    }
    let tag = format!("{:08x}", rand::random::<u32>());
    let prefix = format!("t{tag}.launcher");
    let database = format!("instaface_t{tag}");
    let _leftovers = Leftovers { prefix: prefix.clone(), database: database.clone() };
    let addr = format!("127.0.0.1:{}", free_port());
    let log_dir = bin_dir().join("../test-logs").join(&prefix);
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let log_path = log_dir.join("launcher.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let nats_port = free_port();
    let secrets = log_dir.join("secrets.env");
    // Node i serves the API on base + i: three ports free right now.
    let node_gateways = loop {
        let base = free_port() - 1;
        if (1..=3).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            break base;
        }
    };

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/run-local.sh");
    let mut launcher = Command::new("bash")
        .arg(&script)
        .env("INSTAFACE_PREFIX", &prefix)
        .env("LISTEN_ADDR", &addr)
        .env("NODES", "3")
        .env("PROFILE", "debug")
        .env("BUILD", "0")
        .env("BOT_RATE", "10")
        .env("METRICS_PORT_BASE", "0")
        .env("NODE_GATEWAY_PORT_BASE", node_gateways.to_string())
        .env("MYSQL_URL", format!("mysql://root@127.0.0.1:3306/{database}"))
        .env("SERVICES_QUIET", "1")
        .env("NO_COLOR", "1")
        .env("NATS_PORT", nats_port.to_string())
        .env("NATS_SECRETS", &secrets)
        .env_remove("NATS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start compose/run-local.sh");
    let pid = launcher.id();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().expect("http client");
    let get = |path: &str| {
        let req = http.get(format!("http://{addr}{path}"));
        async move {
            let resp = req.send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            resp.json::<Value>().await.ok()
        }
    };

    // Up: the gateway reports a leader of three members.
    let deadline = Instant::now() + Duration::from_secs(90);
    let cluster = loop {
        if let Ok(Some(status)) = launcher.try_wait() {
            panic!("the launcher exited early ({status}):\n{}", tail(&log_path));
        }
        if let Some(c) = get("/api/cluster").await {
            if c["leader"].is_string() {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "no leader reported by the gateway within 90 s:\n{}", tail(&log_path));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let members: Vec<&str> = cluster["members"].as_array().expect("members").iter().filter_map(Value::as_str).collect();
    assert_eq!(members, ["n1", "n2", "n3"], "{cluster}");

    // Each node serves the API too (as the gateway's NATS role): n3's reports the cluster.
    let n3 = format!("http://127.0.0.1:{}", node_gateways + 3);
    wait_until_async(Duration::from_secs(30), &format!("n3's gateway at {n3} to report a leader"), || async {
        let answer = async { http.get(format!("{n3}/api/cluster")).send().await.ok()?.json::<Value>().await.ok() };
        answer.await.is_some_and(|c| c["leader"].is_string())
    })
    .await;

    // The bot: users appear in this fresh database, and keep appearing.
    let users = |v: Option<Value>| v.and_then(|v| v["ids"].as_array().map(Vec::len)).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let n = users(get("/api/random/user?count=1000").await);
        if n >= 2 {
            break n;
        }
        assert!(Instant::now() < deadline, "the bot created no users within 60 s:\n{}", tail(&log_path));
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    loop {
        let n = users(get("/api/random/user?count=1000").await);
        if n > first {
            break;
        }
        assert!(Instant::now() < deadline, "the bot stopped creating users (still {first}):\n{}", tail(&log_path));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(text.contains(&format!("http://{addr}/")), "the launcher did not print its URL:\n{}", tail(&log_path));

    // Everything it started carries the prefix: its NATS server, three nodes, the gateway,
    // the bot.
    let running = processes_of(&prefix);
    for (name, count) in [("nats-server", 1), ("instaface-node", 3), ("instaface-gatew", 1), ("instaface-bot", 1)] {
        let n = running.iter().filter(|(_, comm)| comm.starts_with(name)).count();
        assert_eq!(n, count, "{name} processes of the prefix: {running:?}");
    }

    // The NATS passwords: made into the secrets file (private), named at the start.
    assert!(
        text.contains(&format!("passwords are in {} (made now", secrets.display())),
        "the launcher did not name the secrets file:\n{}",
        tail(&log_path)
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secrets).expect("the secrets file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the secrets file is readable by others");
    }
    let secret_text = std::fs::read_to_string(&secrets).expect("secrets");
    let password = |role: &str| {
        let key = format!("NATS_{}_PASSWORD=", role.to_uppercase());
        secret_text
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .unwrap_or_else(|| panic!("no {key} in the secrets file"))
            .to_string()
    };
    assert!(!text.contains(&password("observer")), "the launcher printed a password");
    // Each process connects to the launcher's server as its role's user, with its role's
    // inbox prefix; nothing of it is on a command line.
    for (pid, comm) in &running {
        let role = match comm.as_str() {
            c if c.starts_with("instaface-node") => "node",
            c if c.starts_with("instaface-gatew") => "gateway",
            c if c.starts_with("instaface-bot") => "bot",
            _ => continue,
        };
        let env = environ_of(*pid);
        assert_eq!(
            env.get("NATS_URL").map(String::as_str),
            Some(format!("nats://{role}:{}@127.0.0.1:{nats_port}", password(role)).as_str()),
            "{comm} ({pid}) is not on its role's NATS user"
        );
        assert_eq!(
            env.get("NATS_INBOX_PREFIX").map(String::as_str),
            Some(format!("_INBOX_{role}").as_str()),
            "{comm} ({pid})"
        );
        // A node serves a gateway inside (`GATEWAY_LISTEN`), which connects as the gateway
        // role: that URL is the one place another role's password may be.
        if role == "node" {
            assert_eq!(
                env.get("GATEWAY_NATS_URL").map(String::as_str),
                Some(format!("nats://gateway:{}@127.0.0.1:{nats_port}", password("gateway")).as_str()),
                "{comm} ({pid})'s gateway is not on the gateway's NATS user"
            );
            assert_eq!(env.get("GATEWAY_NATS_INBOX_PREFIX").map(String::as_str), Some("_INBOX_gateway"));
        }
        for other in ["node", "gateway", "bot", "observer"].iter().filter(|r| **r != role) {
            let holds = env
                .iter()
                .filter(|(k, _)| !(role == "node" && *other == "gateway" && k.as_str() == "GATEWAY_NATS_URL"))
                .any(|(_, v)| v.contains(&password(other)));
            assert!(!holds, "{comm} ({pid}) holds the {other} password");
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&password(role)),
            "{comm} has its password on its command line"
        );
    }
    let conf = log_dir.join(format!("instaface-nats.{nats_port}.conf"));
    assert!(conf.exists(), "no NATS configuration at {}", conf.display());

    // Ctrl-C: everything stops, the launcher exits 0, nothing of the prefix is left.
    let status = Command::new("kill").args(["-INT", &pid.to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = launcher.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the launcher did not exit within 60 s of SIGINT:\n{}", tail(&log_path));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "the launcher exited with {status}:\n{}", tail(&log_path));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = processes_of(&prefix);
    assert!(left.is_empty(), "left behind: {left:?}\n{}", tail(&log_path));
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(text.contains("launcher: stopped"), "{}", tail(&log_path));
    assert!(!conf.exists(), "the launcher left its NATS configuration (with the passwords) behind");
    assert!(secrets.exists(), "the launcher removed the secrets file");
    assert!(!text.contains("did not stop within"), "something had to be killed:\n{}", tail(&log_path));
    // The bot printed its summary on the way out (it was stopped, not killed).
    assert!(text.contains("[bot] total"), "no bot summary:\n{}", tail(&log_path));
}
