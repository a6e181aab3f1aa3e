//! The partition tooling itself, at the NATS level (no instaface nodes): a mesh of three
//! routed servers (`NatsMesh`, i.e. `compose/partition.sh`), one client on each. A cut
//! between servers 0 and 1 stops delivery from a publisher on 0 to a subscriber on 1 —
//! and only that: the subscriber on 2 keeps receiving and every client stays connected to
//! its server. Healing brings delivery back within seconds. Then server 2 is isolated
//! from both others, and everything healed.
//!
//! Prints how long after the cut delivery stopped and NATS dropped the route, and how
//! long after the heal both came back. Needs root, iproute2 and nats-server; without them
//! it says SKIPPED (and fails under CI=true).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use instaface_bus::config::BusArgs;
use instaface_bus::Bus;
use instaface_testkit::NatsMesh;

/// What a subscriber received: sequence numbers and when they arrived.
#[derive(Default)]
struct Inbox(Mutex<Vec<(u64, Instant)>>);

impl Inbox {
    fn last(&self) -> Option<(u64, Instant)> {
        self.0.lock().unwrap().last().copied()
    }
    /// The first message with a sequence number of at least `seq`.
    fn first_from(&self, seq: u64) -> Option<(u64, Instant)> {
        self.0.lock().unwrap().iter().find(|(s, _)| *s >= seq).copied()
    }
    fn count_from(&self, seq: u64) -> usize {
        self.0.lock().unwrap().iter().filter(|(s, _)| *s >= seq).count()
    }
}

/// Publishes 0, 1, 2, … every 10 ms through one client, remembering when each was sent.
struct Publisher {
    sent: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl Publisher {
    fn start(bus: Bus, subject: String) -> Publisher {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (sent.clone(), stop.clone());
        tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                let seq = {
                    let mut sent = s.lock().unwrap();
                    sent.push(Instant::now());
                    sent.len() as u64 - 1
                };
                bus.publish(subject.clone(), &seq).await.expect("publish");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Publisher { sent, stop }
    }
    /// The sequence number the next message will carry.
    fn next_seq(&self) -> u64 {
        self.sent.lock().unwrap().len() as u64
    }
    fn sent_at(&self, seq: u64) -> Instant {
        self.sent.lock().unwrap()[seq as usize]
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Polls `f` every 10 ms until it returns a value; fails with `what` and the mesh's status
/// after `timeout`.
async fn until<T>(mesh: &NatsMesh, timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}\nserver logs in {}",
                mesh.status(),
                mesh.log_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Milliseconds from `from` to `to`, negative when `to` is earlier.
fn ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}

/// Every client is still on its own server, connected, and never reconnected.
fn assert_clients_stayed(mesh: &NatsMesh, clients: &[Bus], when: &str) {
    for (i, bus) in clients.iter().enumerate() {
        assert!(bus.is_connected(), "{when}: the client on server {i} is not connected\n{}", mesh.status());
        let connects = bus.raw().statistics().connects.load(Ordering::Relaxed);
        assert_eq!(connects, 1, "{when}: the client on server {i} reconnected ({connects} connects)");
        assert_eq!(bus.raw().server_info().server_name, mesh.server_name(i), "{when}: client {i} moved server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_between_two_nats_servers_stops_delivery_between_them_and_only_there() {
    let Some(mut mesh) = NatsMesh::start_or_skip("netsplit", 3) else { return };
    eprintln!("{}", mesh.status());
    let timeout = Duration::from_secs(15);
    let subject = format!("{}.probe", mesh.name());

    // One client on each server, and only on it.
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut args = BusArgs::local(mesh.name());
        args.nats_url = mesh.url(i).to_string();
        let bus = Bus::connect(&args, &format!("netsplit-c{i}")).await.expect("connect");
        until(&mesh, timeout, &format!("client {i} connected"), || bus.is_connected().then_some(())).await;
        clients.push(bus);
    }
    assert_clients_stayed(&mesh, &clients, "at the start");

    // Subscribers on servers 1 and 2, a publisher on server 0.
    let inboxes: Vec<Arc<Inbox>> = (0..3).map(|_| Arc::new(Inbox::default())).collect();
    for i in [1, 2] {
        let mut sub = clients[i].subscribe::<u64>(subject.clone()).await.expect("subscribe");
        clients[i].flush().await.expect("flush");
        let inbox = inboxes[i].clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let seq = msg.payload.expect("a sequence number");
                inbox.0.lock().unwrap().push((seq, Instant::now()));
            }
        });
    }
    let publisher = Publisher::start(clients[0].clone(), subject.clone());
    let ((to1, _), (to2, _)) = until(&mesh, timeout, "delivery from server 0 to servers 1 and 2", || {
        Some((inboxes[1].last()?, inboxes[2].last()?))
    })
    .await;
    eprintln!("before the cut: server 0 → 1 and 0 → 2 deliver (messages #{to1} and #{to2} arrived)");

    // Cut 0–1.
    mesh.cut(0, 1);
    let cut_at = Instant::now();
    let seq_at_cut = publisher.next_seq();
    let route_gone = until(&mesh, timeout, "servers 0 and 1 dropping their route", || {
        let (r0, r1) = (mesh.routes(0)?, mesh.routes(1)?);
        (!r0.contains(&1) && !r1.contains(&0)).then(Instant::now)
    })
    .await;
    // Server 2 keeps receiving well after the route is gone; server 1 gets nothing sent
    // after the cut.
    let seq_after_route_gone = publisher.next_seq();
    until(&mesh, timeout, "20 more deliveries to server 2 during the cut", || {
        (inboxes[2].count_from(seq_after_route_gone) >= 20).then_some(())
    })
    .await;
    let late = inboxes[1].first_from(seq_at_cut);
    assert!(
        late.is_none(),
        "server 1 received message {late:?}, sent after the cut (first seq after the cut: {seq_at_cut})"
    );
    let (last_seq, last_at) = inboxes[1].last().expect("server 1 received before the cut");
    eprintln!(
        "cut 0–1: delivery to server 1 stopped at once (its last message, #{last_seq}, was sent {:+.0} ms and received {:+.0} ms \
         relative to the cut); NATS dropped the 0–1 route {:.0} ms after the cut; server 2 still received {} messages sent after that",
        ms(cut_at, publisher.sent_at(last_seq)),
        ms(cut_at, last_at),
        ms(cut_at, route_gone),
        inboxes[2].count_from(seq_after_route_gone),
    );
    assert_clients_stayed(&mesh, &clients, "during the cut");

    // Heal 0–1: the route comes back by itself, and delivery with it.
    mesh.heal(0, 1);
    let healed_at = Instant::now();
    let seq_at_heal = publisher.next_seq();
    let mut route_back = None;
    let (resumed_seq, resumed_at) = until(&mesh, timeout, "delivery to server 1 after the heal", || {
        if route_back.is_none() && mesh.routes(0).is_some_and(|r| r.contains(&1)) {
            route_back = Some(Instant::now());
        }
        inboxes[1].first_from(seq_at_heal)
    })
    .await;
    let route_back = route_back.unwrap_or_else(Instant::now);
    eprintln!(
        "heal 0–1: delivery to server 1 resumed {:.0} ms after the heal (message #{resumed_seq}); server 0 listed the route again after about {:.0} ms",
        ms(healed_at, resumed_at),
        ms(healed_at, route_back),
    );
    mesh.wait_routes(timeout).unwrap_or_else(|e| panic!("{e}"));
    assert_clients_stayed(&mesh, &clients, "after the heal");

    // Isolate server 2: it loses both routes; server 1 keeps receiving, server 2 does not.
    mesh.isolate(2);
    let isolated_at = Instant::now();
    let seq_at_isolate = publisher.next_seq();
    mesh.wait_routes(timeout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mesh.routes(2), Some(vec![]), "an isolated server has no routes");
    eprintln!("isolate 2: its routes were gone after {:.0} ms", ms(isolated_at, Instant::now()));
    let seq_after_isolated = publisher.next_seq();
    until(&mesh, timeout, "20 more deliveries to server 1 while 2 is isolated", || {
        (inboxes[1].count_from(seq_after_isolated) >= 20).then_some(())
    })
    .await;
    let late = inboxes[2].first_from(seq_at_isolate);
    assert!(late.is_none(), "isolated server 2 received message {late:?}, sent after the isolation");
    assert_clients_stayed(&mesh, &clients, "while server 2 is isolated");

    mesh.heal_all();
    let healed_at = Instant::now();
    let seq_at_heal = publisher.next_seq();
    let (_, resumed_at) =
        until(&mesh, timeout, "delivery to server 2 after heal_all", || inboxes[2].first_from(seq_at_heal)).await;
    eprintln!("heal all: delivery to server 2 resumed {:.0} ms after the heal", ms(healed_at, resumed_at));
    mesh.wait_routes(timeout).unwrap_or_else(|e| panic!("{e}"));
    assert_clients_stayed(&mesh, &clients, "at the end");
    drop(publisher);

    // Tearing down leaves no namespace behind.
    let name = mesh.name().to_string();
    mesh.down();
    let netns = std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.contains(&name), "namespaces of {name} left behind:\n{netns}");
}
