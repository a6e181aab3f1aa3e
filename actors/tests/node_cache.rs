//! The node's shared cache (`NodeCache`) on a real NATS connection, with this test standing
//! in for the leader that fills it: it serves only while it may, a hit costs no fill, an
//! invalidation makes the next read fill again, a fill whose task dies does not hold up
//! the next read of its keys, and a reset (the supervision tree restarting) answers a read
//! waiting on a fill at once instead of leaving it to time out.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use instaface_actors::node::metrics::Metrics;
use instaface_actors::node::net::Net;
use instaface_actors::node::node_cache::NodeCache;
use instaface_bus::config::BusArgs;
use instaface_bus::graph::{CacheKey, CacheValue, ErrorCode, FillReply, FillRequest, Reply};
use instaface_bus::messages::Role;
use instaface_bus::Bus;

/// A stand-in leader on `n1`'s fill subject: counts fill requests, and answers each (every
/// key "no such entity") unless told to stay silent.
struct Leader {
    fills: Arc<AtomicUsize>,
    silent: Arc<AtomicBool>,
}

async fn stand_in_leader(bus: &Bus) -> Leader {
    let fills = Arc::new(AtomicUsize::new(0));
    let silent = Arc::new(AtomicBool::new(false));
    let mut sub = bus.subscribe::<FillRequest>(bus.subjects().fill(&"n1".to_string())).await.expect("subscribe");
    let (bus, counted, quiet) = (bus.clone(), fills.clone(), silent.clone());
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let (Some(reply), Ok(req)) = (msg.reply, msg.payload) else { continue };
            if quiet.load(Ordering::SeqCst) {
                continue;
            }
            let values = req.keys.iter().map(|_| CacheValue::Entity { entity: None }).collect();
            let answer: Reply<FillReply> = Reply::Ok(FillReply { term: req.term, seq: 0, values });
            let _ = bus.publish(reply, &answer).await;
        }
    });
    Leader { fills, silent }
}

#[tokio::test]
async fn the_shared_cache_serves_under_its_lease_refills_after_an_invalidation_and_answers_waiters_on_reset() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("t{:x}.nodecache", nanos & 0xffff_ffff);
    let bus = Bus::connect(&BusArgs::local(&prefix), "node-cache-test").await.expect("nats");
    instaface_testkit::wait_until(Duration::from_secs(10), "the NATS connection", || bus.is_connected()).await;
    let leader = stand_in_leader(&bus).await;
    let metrics = Metrics::new("n2", None);
    let net = Net::new(bus.clone(), "n2".to_string(), metrics.clone());
    let cache = NodeCache::new(100, net, "n2/store".to_string(), metrics);
    let one = vec![CacheKey::Entity(1)];

    // Not serving yet: refused, and nothing is filled.
    let refused = cache.get(one.clone()).await.expect_err("no lease yet");
    assert_eq!(refused.code, ErrorCode::Unavailable, "{refused:?}");
    assert_eq!(leader.fills.load(Ordering::SeqCst), 0);

    // Serving as a follower of n1: a miss fills from n1, the next read is a hit.
    let until = Instant::now() + Duration::from_secs(60);
    cache.set_serving(Some(until), Role::Follower, 1, Some("n1".to_string()));
    let values = cache.get(one.clone()).await.expect("filled");
    assert_eq!(values, vec![(CacheKey::Entity(1), CacheValue::Entity { entity: None })]);
    cache.get(one.clone()).await.expect("a hit");
    assert_eq!(leader.fills.load(Ordering::SeqCst), 1, "the second read was a hit");
    assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));

    // An invalidation (wire form) drops the key: the next read fills again.
    cache.invalidate(&[CacheKey::Entity(1).to_string()]);
    cache.get(one.clone()).await.expect("filled again");
    assert_eq!(leader.fills.load(Ordering::SeqCst), 2, "the invalidated key was filled again");

    // A big lookup is taken in parts under the lock, its misses in one fill: each key
    // answered once, in the order first asked, duplicates included in the asking.
    let many: Vec<CacheKey> = (100..300).chain(100..110).map(CacheKey::Entity).collect();
    let got = cache.get(many).await.expect("a big lookup");
    assert_eq!(
        got.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        (100..300).map(CacheKey::Entity).collect::<Vec<_>>()
    );
    assert_eq!(leader.fills.load(Ordering::SeqCst), 3, "the big lookup's misses went out as one fill");

    // A fill whose task ends without completing (here its runtime shuts down under it; a
    // panic in the fill ends it the same way) fails its fetch as it goes: the next read of
    // the key fills anew at once instead of joining a fetch that will never end.
    leader.silent.store(true, Ordering::SeqCst);
    let fills = leader.fills.clone();
    let (doomed, seven) = (cache.clone(), vec![CacheKey::Entity(7)]);
    let asked = seven.clone();
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        rt.spawn(async move { doomed.get(asked).await });
        let deadline = Instant::now() + Duration::from_secs(5);
        while fills.load(Ordering::SeqCst) < 4 {
            assert!(Instant::now() < deadline, "the doomed fill was never asked for");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(rt);
    })
    .await
    .expect("the doomed runtime's thread");
    leader.silent.store(false, Ordering::SeqCst);
    let again_at = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), cache.get(seven))
        .await
        .expect("not left waiting on the dropped fill")
        .expect("filled anew");
    assert_eq!(leader.fills.load(Ordering::SeqCst), 5, "a fill of its own");
    assert!(again_at.elapsed() < Duration::from_secs(2));
    let fills_so_far = leader.fills.load(Ordering::SeqCst);

    // A read waiting on a fill that does not come back: a reset answers it at once.
    leader.silent.store(true, Ordering::SeqCst);
    let waiting = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get(vec![CacheKey::Entity(2)]).await }
    });
    instaface_testkit::wait_until(Duration::from_secs(5), "the fill request", || {
        leader.fills.load(Ordering::SeqCst) == fills_so_far + 1
    })
    .await;
    let reset_at = Instant::now();
    cache.reset();
    let answer = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("answered before the fill's timeout")
        .expect("the read's task");
    let restarted = answer.expect_err("the cache restarted under it");
    assert!(restarted.message.contains("restarted"), "{restarted:?}");
    assert!(reset_at.elapsed() < Duration::from_secs(1));

    // After a reset the cache is empty and serves nothing until it is told it may.
    let refused = cache.get(one.clone()).await.expect_err("no lease after a reset");
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert_eq!(cache.stats().entries, 0);

    // A lease that has run out serves nothing either.
    cache.set_serving(Some(Instant::now()), Role::Follower, 1, Some("n1".to_string()));
    assert!(cache.get(one).await.is_err(), "an expired lease serves nothing");
}
