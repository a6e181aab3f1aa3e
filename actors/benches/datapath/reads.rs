//! (a) Follower cache hits: entity reads addressed to one follower after warming every key,
//! beside a NATS request-reply echo measured in the same run.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use instaface_bus::graph::{Consistency, EntityId, ReadQuery, ReadRequest, ReadResult, Reply};
use instaface_testkit::Cluster;

use crate::common::{fm, run_load, summary, wait_settled};

/// (a): follower cache hits beside a NATS echo.
pub async fn run_hits(c: &Cluster, entities: Arc<Vec<(EntityId, bool)>>, secs: Duration, conc: usize) -> Vec<String> {
    let Some((leader, _)) = wait_settled(c, &c.ids, Duration::from_secs(30)).await else {
        eprintln!("(a) skipped: the cluster did not settle");
        return Vec::new();
    };
    let f = c.ids.iter().find(|i| **i != leader).cloned().expect("a follower");
    eprintln!("(a) follower hits at {f}: warming {} entity keys", entities.len());
    let subject = c.bus.subjects().read_at(&f);
    let warm: Vec<_> = futures::stream::iter(entities.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .map(|id| {
            let bus = c.bus.clone();
            let subject = subject.clone();
            async move {
                let req =
                    ReadRequest { consistency: Consistency::Eventual, query: ReadQuery::Entities { ids: vec![id] } };
                bus.request::<_, Reply<ReadResult>>(subject, &req, Duration::from_secs(5)).await.is_ok()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    eprintln!("  warmed: {}/{} ok", warm.iter().filter(|x| **x).count(), warm.len());

    // The echo responder: its own NATS connection, answering inline.
    let echo_subject = format!("{}.bench.echo", c.bus.subjects().prefix());
    let nc = async_nats::connect("nats://127.0.0.1:4222").await.expect("echo connection");
    let mut sub = nc.subscribe(echo_subject.clone()).await.expect("echo subscribe");
    nc.flush().await.expect("flush");
    let responder = {
        let nc = nc.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(reply) = m.reply {
                    let _ = nc.publish(reply, m.payload).await;
                }
            }
        })
    };

    let before = c.status(&f).await.map(|s| s.cache).unwrap_or_default();
    let ents = entities.clone();
    let read_op = {
        let bus = c.bus.clone();
        let subject = subject.clone();
        move || {
            let bus = bus.clone();
            let subject = subject.clone();
            let ents = ents.clone();
            async move {
                let id = ents[rand::random::<u64>() as usize % ents.len()].0;
                let req =
                    ReadRequest { consistency: Consistency::Eventual, query: ReadQuery::Entities { ids: vec![id] } };
                match bus.request::<_, Reply<ReadResult>>(subject, &req, Duration::from_secs(5)).await {
                    Ok(Reply::Ok(ReadResult::Entities { entities })) if !entities.is_empty() => Ok("read"),
                    Ok(other) => Err(format!("unexpected {other:?}")),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    };
    let ents = entities.clone();
    let echo_op = {
        let bus = c.bus.clone();
        let subject = echo_subject.clone();
        move || {
            let bus = bus.clone();
            let subject = subject.clone();
            let ents = ents.clone();
            async move {
                let id = ents[rand::random::<u64>() as usize % ents.len()].0;
                // The same request payload, echoed back and decoded as such.
                let req =
                    ReadRequest { consistency: Consistency::Eventual, query: ReadQuery::Entities { ids: vec![id] } };
                bus.request::<_, ReadRequest>(subject, &req, Duration::from_secs(5))
                    .await
                    .map(|_| "echo")
                    .map_err(|e| e.to_string())
            }
        }
    };
    let mut rows = Vec::new();
    for k in [1, conc] {
        eprintln!("  echo, concurrency {k}, {secs:?}");
        let e = run_load("echo", k, secs, echo_op.clone()).await;
        eprintln!("    {:.0} req/s", e.rate());
        eprintln!("  follower reads, concurrency {k}, {secs:?}");
        let r = run_load("follower reads", k, secs, read_op.clone()).await;
        eprintln!("    {:.0} req/s", r.rate());
        rows.push((format!("NATS echo (own responder), concurrency {k}"), e));
        rows.push((format!("follower cache hit (`P.node.{f}.read`, one entity), concurrency {k}"), r));
    }
    let after = c.status(&f).await.map(|s| s.cache).unwrap_or_default();
    responder.abort();
    let mut r = Vec::new();
    r.push("## (a) Follower reads (cache hits) beside a NATS request-reply echo".to_string());
    r.push(String::new());
    r.push(format!(
        "{} entity keys warmed at {f} first; then one entity per request, chosen uniformly, addressed to {f}; each run {secs:?}. \
         The echo is a responder task in the bench process on its own NATS connection, echoing the same request payload.",
        entities.len()
    ));
    r.push(String::new());
    r.push("| what | requests/s | n | errors | p50 ms | p99 ms | max ms |".into());
    r.push("| --- | --- | --- | --- | --- | --- | --- |".into());
    for (label, l) in &rows {
        let s = summary(&l.all());
        r.push(format!(
            "| {label} | {:.0} | {} | {} | {} | {} | {} |",
            l.rate(),
            s.n,
            l.error_count(),
            fm(s.p50),
            fm(s.p99),
            fm(s.max)
        ));
    }
    r.push(String::new());
    r.push(format!(
        "{f}'s cache during the runs: {} hits, {} misses, {} fills.",
        after.hits.saturating_sub(before.hits),
        after.misses.saturating_sub(before.misses),
        after.fills.saturating_sub(before.fills)
    ));
    r.push(String::new());
    eprintln!("{}", r.join("\n"));
    r
}
