//! The bot binary without a cluster: flags are checked with clear errors, and it ends by
//! itself (`--duration`) or on Ctrl-C with its summary even when no leader ever appears.
//! Needs NATS running (`compose/services.sh`), nothing else.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn lonely_prefix(name: &str) -> String {
    format!("t{:08x}.{name}", rand::random::<u32>())
}

#[tokio::test]
async fn a_bad_mix_is_refused_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_instaface-bot"))
        .args(["--mix", "befriend=3,poke=1"])
        .output()
        .await
        .expect("run bot");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown operation \"poke\" (known: create_user"), "{stderr}");
}

#[tokio::test]
async fn without_a_cluster_it_ends_at_its_duration_with_a_summary() {
    let dir = std::env::temp_dir();
    let log = dir.join(format!("instaface-bot-lonely-{}.log", std::process::id()));
    let started = Instant::now();
    let bot = spawn_bot(&lonely_prefix("lonely"), &["--duration", "1s", "--seed", "3", "--json", "--quiet"], &log);
    let summary = summary_of(bot, Duration::from_secs(20), &log).await;
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    assert_eq!(summary["stopped_by"], "duration");
    assert_eq!(u(&summary["seed"]), 3);
    assert_eq!(u(&summary["ops"]), 0, "nothing can run without a leader: {summary}");
    assert_eq!(u(&summary["abandoned"]), 0);
    assert_accounted(&summary);
}

#[tokio::test]
async fn ctrl_c_prints_the_summary() {
    let mut bot = Command::new(env!("CARGO_BIN_EXE_instaface-bot"))
        .args(["--concurrency", "2"])
        .env("INSTAFACE_PREFIX", lonely_prefix("interrupted"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn bot");
    // The first progress line shows it is running (and its signal handler is in place).
    let mut stderr = BufReader::new(bot.stderr.take().expect("stderr")).lines();
    let first = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            if line.contains("ops/s") {
                return line;
            }
        }
        panic!("stderr closed before a progress line");
    })
    .await
    .expect("a progress line within 15 s");
    assert!(first.contains("NO LEADER"), "{first}");
    let pid = bot.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let out = tokio::time::timeout(Duration::from_secs(15), bot.wait_with_output())
        .await
        .expect("the bot ends within 15 s of Ctrl-C")
        .expect("bot output");
    assert!(out.status.success(), "{}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stopped by interrupt"), "{stdout}");
    assert!(stdout.contains("kind") && stdout.contains("read_friends"), "{stdout}");
}
