//! The wire contract: every message type survives a MessagePack round trip, decodes from a
//! plain map that names its fields (what a client in another language sends), and
//! garbage or truncated payloads are errors, never panics.

use std::collections::BTreeMap;
use std::fmt::Debug;

use instaface_bus::graph::*;
use instaface_bus::messages::*;
use instaface_bus::{decode, encode};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::json;

fn entity(id: u64) -> Entity {
    let mut attributes = Attributes::new();
    attributes.insert("name".into(), json!("Ada"));
    attributes.insert("tags".into(), json!(["a", 1, null, {"x": 2.5}]));
    Entity { id, etype: "user".into(), attributes, created: 1, updated: 2, version: 3 }
}

fn assoc() -> Association {
    Association { from: 1, atype: "likes".into(), to: 2, attributes: Attributes::new(), created: 5 }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(msg: T) {
    let bytes = encode(&msg);
    let back: T = decode(&bytes).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
    assert_eq!(back, msg);
    // Named maps: the first byte is a MessagePack map marker (fixmap, map16 or map32).
    assert!(matches!(bytes[0], 0x80..=0x8f | 0xde | 0xdf), "{msg:?} is not a map");
    for cut in 0..bytes.len() {
        assert!(decode::<T>(&bytes[..cut]).is_err(), "truncated {msg:?} at {cut} decoded");
    }
}

/// What a client in another language sends: a map built from JSON-ish values.
fn foreign<T: DeserializeOwned>(v: serde_json::Value) -> T {
    let bytes = rmp_serde::to_vec_named(&v).expect("encode value");
    decode(&bytes).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn all_cluster_messages() -> Vec<Box<dyn Fn()>> {
    vec![
        Box::new(|| {
            round_trip(Heartbeat {
                term: 7,
                leader: "n1".into(),
                seq: 42,
                floor: 40,
                invalidations: vec![InvalidationEntry { seq: 41, keys: vec!["e:1".into()] }],
                hb: 9,
                members: vec!["n1".into(), "n2".into()],
            })
        }),
        Box::new(|| round_trip(VoteRequest { term: 3, candidate: "n2".into(), pre_vote: true, transfer: false })),
        Box::new(|| round_trip(VoteReply { term: 3, voter: "n3".into(), granted: true, pre_vote: true })),
        Box::new(|| round_trip(Ack { term: 3, node: "n3".into(), ack: 17, hb: 4, applied_seq: 99 })),
        Box::new(|| round_trip(AckConfirm { term: 3, leader: "n1".into(), ack: 17, confirmed: true })),
        Box::new(|| round_trip(TimeoutNow { term: 3, leader: "n1".into() })),
        Box::new(|| {
            round_trip(Invalidate { term: 3, leader: "n1".into(), seq: 5, prev_seq: 4, keys: vec!["a:1:likes".into()] })
        }),
        Box::new(|| round_trip(Unplug { node: "n2".into(), unplugged: true, clients: false })),
    ]
}

#[test]
fn cluster_messages_round_trip() {
    for check in all_cluster_messages() {
        check();
    }
}

#[test]
fn every_event_kind_round_trips_as_one_flat_map() {
    let kinds = vec![
        EventKind::Leader { members: vec!["n1".into()] },
        EventKind::Follower { leader: Some("n1".into()) },
        EventKind::Follower { leader: None },
        EventKind::Candidacy { state: CandidacyState::Started, pre_vote: true },
        EventKind::Reachable { peer: "n2".into(), reachable: false },
        EventKind::Cache { hits: 1, misses: 2, entries: 3, fills: 4, applied_seq: 5 },
        EventKind::Unplugged { unplugged: true, clients: false },
        EventKind::Invalidation { seq: 4, acked_by: vec!["n2".into()] },
        EventKind::Write { seq: 4, op: "create_entity".into(), keys: vec!["e:1".into()] },
    ];
    for kind in kinds {
        let event = Event { node: "n1".into(), term: 2, ts: 1000, shard: 0, kind };
        let bytes = encode(&event);
        let back: Event = decode(&bytes).expect("event decodes");
        assert_eq!(back, event);
        // A generic MessagePack decoder (no serde, no Rust types) sees a flat map.
        let value = rmpv::decode::read_value(&mut &bytes[..]).expect("valid msgpack");
        let as_map: BTreeMap<String, rmpv::Value> = value
            .as_map()
            .expect("a map")
            .iter()
            .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.clone()))
            .collect();
        assert_eq!(as_map.get("type").and_then(|v| v.as_str()), Some(event.type_name()));
        assert!(as_map.contains_key("node") && as_map.contains_key("term"));
    }
}

#[test]
fn graph_messages_round_trip() {
    let mut template = Template::default();
    template.0.insert("likes".into(), Template::default());
    round_trip(ReadRequest { consistency: Consistency::Eventual, query: ReadQuery::Entities { ids: vec![1, 2] } });
    round_trip(ReadRequest {
        consistency: Consistency::MinSeq { min_seq: 9 },
        query: ReadQuery::Assocs { from: 1, atype: "friend".into(), limit: 10, offset: 0 },
    });
    round_trip(ReadRequest {
        consistency: Consistency::Strong,
        query: ReadQuery::Query { entities: vec![1], template },
    });
    round_trip(ReadRequest { consistency: Consistency::Eventual, query: ReadQuery::Timeline { user: 1, limit: 20 } });
    round_trip(ReadRequest {
        consistency: Consistency::Eventual,
        query: ReadQuery::Random { etype: "user".into(), count: 3 },
    });
    round_trip(Reply::<ReadResult>::Ok(ReadResult::Entities { entities: vec![entity(1)] }));
    round_trip(Reply::<ReadResult>::Ok(ReadResult::Assocs { count: 1, items: vec![assoc()] }));
    round_trip(Reply::<ReadResult>::Ok(ReadResult::Random { ids: vec![1, 2] }));
    round_trip(Reply::<ReadResult>::Error(ErrorBody::new(ErrorCode::NotFound, "no entity 3")));
    round_trip(WriteRequest::CreateEntity { etype: "user".into(), attributes: entity(1).attributes });
    round_trip(WriteRequest::UpdateEntity { id: 1, patch: json!({"name": null, "x": {"y": 1}}) });
    round_trip(WriteRequest::DeleteEntity { id: 1 });
    round_trip(WriteRequest::AddAssoc { from: 1, atype: "likes".into(), to: 2, attributes: Attributes::new() });
    round_trip(WriteRequest::RemoveAssoc { from: 1, atype: "likes".into(), to: 2 });
    round_trip(Reply::Ok(WriteOutcome { seq: 3, result: WriteResult::Entity { entity: entity(1) } }));
    round_trip(Reply::Ok(WriteOutcome { seq: 3, result: WriteResult::Assoc { association: assoc() } }));
    round_trip(Reply::Ok(WriteOutcome { seq: 3, result: WriteResult::Deleted { found: true } }));
    round_trip(FillRequest { term: 2, node: "n2".into(), keys: vec![CacheKey::Entity(1)] });
    round_trip(FillReply {
        term: 2,
        seq: 8,
        values: vec![
            CacheValue::Entity { entity: None },
            CacheValue::Assocs { count: 1, items: vec![assoc()], complete: true },
        ],
    });
}

#[test]
fn messages_decode_from_maps_that_name_their_fields() {
    let hb: Heartbeat =
        foreign(json!({"term": 4, "leader": "n1", "seq": 10, "invalidations": [{"seq": 10, "keys": ["e:5"]}]}));
    assert_eq!((hb.term, hb.leader.as_str(), hb.seq, hb.floor), (4, "n1", 10, 0));
    let vote: VoteRequest = foreign(json!({"term": 5, "candidate": "n2", "pre_vote": false}));
    assert!(!vote.transfer);
    let _: VoteReply = foreign(json!({"term": 5, "voter": "n3", "granted": true}));
    let ack: Ack = foreign(json!({"term": 5, "node": "n3", "ack": 1, "applied_seq": 10}));
    assert_eq!(ack.hb, 0);
    let inv: Invalidate = foreign(json!({"term": 5, "leader": "n1", "seq": 11, "keys": ["a:1:friend"]}));
    assert_eq!(inv.keys, vec!["a:1:friend".to_string()]);
    let unplug: Unplug = foreign(json!({"node": "n2", "unplugged": true}));
    assert!(unplug.unplugged);
    let ev: Event =
        foreign(json!({"type": "candidacy", "node": "n2", "term": 3, "ts": 1, "state": "started", "pre_vote": true}));
    assert_eq!(ev.kind, EventKind::Candidacy { state: CandidacyState::Started, pre_vote: true });
    let read: ReadRequest = foreign(json!({"query": {"kind": "entities", "ids": [1, 2]}}));
    assert_eq!(read.consistency, Consistency::Eventual);
    let read: ReadRequest = foreign(
        json!({"consistency": {"mode": "min_seq", "min_seq": 7}, "query": {"kind": "random", "etype": "user", "count": 2}}),
    );
    assert_eq!(read.consistency, Consistency::MinSeq { min_seq: 7 });
    let write: WriteRequest =
        foreign(json!({"op": "add_assoc", "from": 1, "atype": "friend", "to": 2, "attributes": {}}));
    assert_eq!(write.op_name(), "add_assoc");
    let fill: FillRequest = foreign(json!({"term": 1, "node": "n2", "keys": ["e:1", "a:1:friend"]}));
    assert_eq!(fill.keys[1], CacheKey::Assocs { from: 1, atype: "friend".into() });
}

#[test]
fn wrong_shapes_are_errors() {
    assert!(decode::<Heartbeat>(&encode(&json!({"term": "seven", "leader": "n1", "seq": 1}))).is_err());
    assert!(decode::<Heartbeat>(&encode(&json!({"leader": "n1"}))).is_err());
    assert!(decode::<FillRequest>(&encode(&json!({"term": 1, "node": "n", "keys": ["zz"]}))).is_err());
    assert!(decode::<WriteRequest>(&encode(&json!({"op": "drop_table"}))).is_err());
    assert!(decode::<Event>(&encode(&json!({"type": "nonsense", "node": "n", "term": 1, "ts": 1}))).is_err());
    let err = decode::<Ack>(b"\xc1garbage").expect_err("garbage");
    assert!(err.to_string().contains("Ack"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<Heartbeat>(&bytes);
        let _ = decode::<VoteRequest>(&bytes);
        let _ = decode::<VoteReply>(&bytes);
        let _ = decode::<Ack>(&bytes);
        let _ = decode::<AckConfirm>(&bytes);
        let _ = decode::<Invalidate>(&bytes);
        let _ = decode::<Unplug>(&bytes);
        let _ = decode::<Event>(&bytes);
        let _ = decode::<ReadRequest>(&bytes);
        let _ = decode::<Reply<ReadResult>>(&bytes);
        let _ = decode::<WriteRequest>(&bytes);
        let _ = decode::<Reply<WriteOutcome>>(&bytes);
        let _ = decode::<FillRequest>(&bytes);
        let _ = decode::<FillReply>(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(pos in 0usize..64, byte in any::<u8>()) {
        let mut bytes = encode(&Heartbeat {
            term: 7, leader: "n1".into(), seq: 42, floor: 40,
            invalidations: vec![InvalidationEntry { seq: 41, keys: vec!["e:1".into()] }],
            hb: 9, members: vec!["n1".into()],
        });
        let i = pos % bytes.len();
        bytes[i] = byte;
        let _ = decode::<Heartbeat>(&bytes);
        let _ = decode::<Event>(&bytes);
    }
}
