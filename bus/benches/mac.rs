//! What authenticating a cluster message costs: HMAC-SHA256 over the subject and the
//! MessagePack payload, to sign (sender) and to verify (each receiver), for the messages
//! a node sends most — an ack, a heartbeat with no invalidations, with 16, and with a
//! full window of 512 — beside the cost of encoding the same message, measured in the
//! same run. Prints a Markdown table; asserts nothing.
//!
//! ```text
//! cargo bench -p instaface-bus --bench mac
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use instaface_bus::auth::ClusterKey;
use instaface_bus::encode;
use instaface_bus::messages::{Ack, Heartbeat, InvalidationEntry};

/// Nanoseconds per call of `f`, over about `budget`.
fn per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut n = 0u64;
    let started = Instant::now();
    while started.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

fn heartbeat(invalidations: usize) -> Heartbeat {
    Heartbeat {
        term: 7,
        leader: "n1".into(),
        seq: 10_000 + invalidations as u64,
        floor: 10_000,
        invalidations: (0..invalidations)
            .map(|i| InvalidationEntry {
                seq: 10_001 + i as u64,
                keys: vec![format!("e:{}", 1000 + i), format!("a:{}:friend", 1000 + i)],
            })
            .collect(),
        hb: 4242,
        members: vec!["n1".into(), "n2".into(), "n3".into()],
    }
}

fn main() {
    let key = ClusterKey::parse(&"k".repeat(64)).expect("a key");
    let ack = Ack { term: 7, node: "n2".into(), ack: 1 << 60, hb: 4242, applied_seq: 10_512 };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ack", encode(&ack)),
        ("heartbeat, 0 invalidations", encode(&heartbeat(0))),
        ("heartbeat, 16 invalidations", encode(&heartbeat(16))),
        ("heartbeat, 512 invalidations", encode(&heartbeat(512))),
    ];
    let budget = Duration::from_millis(400);
    println!("| message | bytes | encode (ns) | sign (ns) | verify (ns) | sign + verify / encode |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, payload) in &cases {
        let subject = "instaface.heartbeat";
        let mac = key.sign(subject, payload);
        let encode_ns = match *name {
            "ack" => per_call(budget, || {
                black_box(encode(black_box(&ack)));
            }),
            _ => {
                let hb = heartbeat(match *name {
                    "heartbeat, 16 invalidations" => 16,
                    "heartbeat, 512 invalidations" => 512,
                    _ => 0,
                });
                per_call(budget, || {
                    black_box(encode(black_box(&hb)));
                })
            }
        };
        let sign_ns = per_call(budget, || {
            black_box(key.sign(black_box(subject), black_box(payload)));
        });
        let verify_ns = per_call(budget, || {
            black_box(key.verify(black_box(subject), black_box(payload), black_box(&mac)));
        });
        println!(
            "| {name} | {} | {encode_ns:.0} | {sign_ns:.0} | {verify_ns:.0} | {:.2} |",
            payload.len(),
            (sign_ns + verify_ns) / encode_ns
        );
    }
}
