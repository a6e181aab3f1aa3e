//! The bot against a real 3-node cluster (testkit): its JSON summary reconciles with what
//! reached MySQL, in a healthy run and across a leader kill.
//!
//! Needs NATS, MariaDB and Redis (`compose/services.sh`) and a built `instaface-node`
//! (`cargo build --workspace --bins`; the README's test command does both).

mod support;

use std::time::Duration;

use instaface_testkit::{Cluster, ClusterOpts};
use support::*;

/// Heavy on writes of every kind, so a few hundred operations touch everything.
const WRITE_HEAVY: &str = "create_user=8,befriend=14,post=10,like=14,edit_status=4,rename_user=3,\
                           unlike=6,unfriend=5,delete_status=4,read_timeline=16,read_friends=16";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_run_matches_mysql_exactly() {
    let cluster = Cluster::start("bot_exact", ClusterOpts::default()).await;
    cluster.wait_leader(Duration::from_secs(30), None, 0).await;
    let log = cluster.log_dir().join("bot.log");
    let bot = spawn_bot(
        &cluster.prefix,
        &["--ops", "300", "--concurrency", "4", "--seed", "42", "--mix", WRITE_HEAVY, "--json", "--quiet"],
        &log,
    );
    let summary = summary_of(bot, Duration::from_secs(180), &log).await;
    eprintln!("summary: {summary}");

    assert_eq!(summary["stopped_by"], "ops");
    assert_eq!(u(&summary["ops"]), 300);
    assert_eq!(u(&summary["cancelled"]) + u(&summary["abandoned"]), 0);
    assert_accounted(&summary);
    let totals = &summary["totals"];
    assert_eq!(
        (u(&totals["failed"]), u(&totals["outcome_unknown"])),
        (0, 0),
        "a healthy run has every outcome known and nothing failing: {}",
        summary["kinds"]
    );
    for kind in ["create_user", "befriend", "post", "like", "unlike", "unfriend", "delete_status", "read_friends"] {
        assert!(u(&summary["kinds"][kind]["succeeded"]) > 0, "{kind} never ran: {}", summary["kinds"]);
    }

    let bounds = expected_bounds(&summary);
    let mysql = mysql_counts(&mut cluster.mysql().await).await;
    eprintln!("MySQL: {mysql:?}");
    for (key, (least, most)) in &bounds {
        assert_eq!(least, most, "{key}: no unknown outcome, so one exact count");
        assert_eq!(mysql.get(key).copied().unwrap_or(0), *least, "{key}\nMySQL: {mysql:?}\nsummary: {summary}");
    }
    assert_within(&bounds, &mysql, &summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_across_a_leader_kill_accounts_for_every_operation() {
    let mut cluster = Cluster::start("bot_kill", ClusterOpts::default()).await;
    let (old, term) = cluster.wait_leader(Duration::from_secs(30), None, 0).await;
    let log = cluster.log_dir().join("bot.log");
    let ops = 900;
    let args = "--ops 900 --rate 60 --concurrency 4 --seed 7 --json --max-leader-wait 60s";
    let args: Vec<&str> = args.split_whitespace().chain(["--mix", WRITE_HEAVY]).collect();
    let mut bot = spawn_bot(&cluster.prefix, &args, &log);

    // The middle of the run: once the bot has written a fair part of its entities. The
    // database and its tables appear when the leader first connects to MySQL.
    let what = format!("the bot to write 40 entities; log {}", log.display());
    instaface_testkit::poll_until(Duration::from_secs(60), &what, || async {
        match entity_rows(&cluster.database).await {
            n if n >= 40 => Ok(()),
            n => Err(format!("{n} so far")),
        }
    })
    .await;
    assert!(bot.try_wait().expect("bot status").is_none(), "the bot ended before the kill; log {}", log.display());
    cluster.kill9(&old);
    let (new, new_term) = cluster.wait_leader(Duration::from_secs(30), Some(&old), term).await;
    eprintln!("killed leader {old} (term {term}); {new} leads in term {new_term}");

    let summary = summary_of(bot, Duration::from_secs(300), &log).await;
    eprintln!("summary: {summary}");
    assert_eq!(summary["stopped_by"], "ops");
    assert_eq!(u(&summary["ops"]), ops, "every operation ran to an outcome");
    assert_eq!(u(&summary["cancelled"]) + u(&summary["abandoned"]), 0);
    assert_accounted(&summary);
    assert!(
        u(&summary["totals"]["succeeded"]) > ops / 2,
        "the bot went on after the new leader took office: {}",
        summary["totals"]
    );

    let bounds = expected_bounds(&summary);
    let mysql = mysql_counts(&mut cluster.mysql().await).await;
    eprintln!("MySQL: {mysql:?}\nbounds: {bounds:?}");
    assert_within(&bounds, &mysql, &summary);
}
