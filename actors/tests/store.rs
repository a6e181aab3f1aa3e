//! The graph store against a real MySQL/MariaDB (`INSTAFACE_TEST_MYSQL`, default
//! `mysql://root@127.0.0.1:3306`). Each test works in a database of its own,
//! `instaface_t_<random hex>`, dropped when the test ends, passed or failed.

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use serde_json::json;

use instaface_actors::store::{CommittedWrite, GraphStore, Op, StoreError, SCHEMA_VERSION};
use instaface_bus::graph::{
    Attributes, CacheKey, CacheValue, Entity, EntityId, ErrorBody, ErrorCode, WriteRequest, WriteResult,
};
use instaface_testkit::wait_until;

const TERM: u64 = 1;

/// A database of the test's own, dropped on drop (also when the test panics).
struct TestDb {
    server: String,
    name: String,
}

impl TestDb {
    fn new() -> TestDb {
        let server =
            std::env::var("INSTAFACE_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_string());
        TestDb { server, name: format!("instaface_t_{:016x}", rand::random::<u64>()) }
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    async fn store(&self) -> GraphStore {
        GraphStore::connect(&self.url()).await.expect("connect to the test database")
    }

    /// A plain connection to the test database, for looking behind the store's back.
    async fn raw(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.url()).await.expect("raw connection")
    }

    async fn exists(&self) -> bool {
        let mut conn = mysql_async::Conn::from_url(&self.server).await.unwrap();
        let found: Option<String> = conn
            .exec_first("SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?", (&self.name,))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        found.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop cannot await, and may run inside the test's runtime: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut conn = mysql_async::Conn::from_url(&server).await?;
                conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await?;
                conn.disconnect().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

fn attrs(value: serde_json::Value) -> Attributes {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn key_strings(w: &CommittedWrite) -> Vec<String> {
    w.keys.iter().map(ToString::to_string).collect()
}

async fn create(store: &GraphStore, etype: &str, attributes: serde_json::Value) -> Entity {
    let req = WriteRequest::CreateEntity { etype: etype.into(), attributes: attrs(attributes) };
    match store.write(TERM, "n1", &req).await.unwrap().outcome.result {
        WriteResult::Entity { entity } => entity,
        other => panic!("create gave {other:?}"),
    }
}

async fn add(store: &GraphStore, from: EntityId, atype: &str, to: EntityId) -> CommittedWrite {
    let req = WriteRequest::AddAssoc { from, atype: atype.into(), to, attributes: Attributes::new() };
    store.write(TERM, "n1", &req).await.unwrap()
}

async fn remove(store: &GraphStore, from: EntityId, atype: &str, to: EntityId) -> CommittedWrite {
    let req = WriteRequest::RemoveAssoc { from, atype: atype.into(), to };
    store.write(TERM, "n1", &req).await.unwrap()
}

/// The `to` ids of a list, newest first, and its count.
async fn list(store: &GraphStore, from: EntityId, atype: &str) -> (u64, Vec<EntityId>) {
    let (count, items) = store.list_assocs(from, atype, 100, 0).await.unwrap();
    (count, items.into_iter().map(|a| a.to).collect())
}

#[tokio::test]
async fn entities_are_created_read_patched_and_deleted() {
    let db = TestDb::new();
    let store = db.store().await;

    let alice = create(&store, "user", json!({"name": "Alice", "age": 30, "tags": {"a": 1}})).await;
    assert_eq!((alice.etype.as_str(), alice.version), ("user", 1));
    assert_eq!(alice.created, alice.updated);
    assert_eq!(store.get_entities(&[alice.id]).await.unwrap(), vec![alice.clone()]);

    let patch = json!({"name": "Alicia", "age": null, "tags": {"b": 2, "a": null}, "x": [1]});
    let req = WriteRequest::UpdateEntity { id: alice.id, patch };
    let written = store.write(TERM, "n1", &req).await.unwrap();
    assert_eq!(key_strings(&written), [format!("e:{}", alice.id)]);
    let WriteResult::Entity { entity: patched } = written.outcome.result else { panic!() };
    assert_eq!(patched.attributes, attrs(json!({"name": "Alicia", "tags": {"b": 2}, "x": [1]})));
    assert_eq!(patched.version, 2);
    assert!(patched.updated >= alice.updated);
    assert_eq!(patched.created, alice.created);
    assert_eq!(store.get_entities(&[alice.id]).await.unwrap(), vec![patched.clone()]);

    let empty_patch = WriteRequest::UpdateEntity { id: alice.id, patch: json!({}) };
    let again = store.write(TERM, "n1", &empty_patch).await.unwrap();
    let WriteResult::Entity { entity } = again.outcome.result else { panic!() };
    assert_eq!(entity.version, 3);

    let bad_patch = WriteRequest::UpdateEntity { id: alice.id, patch: json!([1]) };
    assert!(matches!(store.write(TERM, "n1", &bad_patch).await, Err(StoreError::Invalid(_))));
    let missing = WriteRequest::UpdateEntity { id: alice.id + 1000, patch: json!({}) };
    let err = store.write(TERM, "n1", &missing).await.unwrap_err();
    assert!(matches!(&err, StoreError::NotFound(m) if m.contains(&(alice.id + 1000).to_string())));
    assert_eq!(ErrorBody::from(err).code, ErrorCode::NotFound);
    let bad_type = WriteRequest::CreateEntity { etype: "Bad-Type".into(), attributes: Attributes::new() };
    assert!(matches!(store.write(TERM, "n1", &bad_type).await, Err(StoreError::Invalid(_))));

    let deleted = store.write(TERM, "n1", &WriteRequest::DeleteEntity { id: alice.id }).await.unwrap();
    assert_eq!(deleted.outcome.result, WriteResult::Deleted { found: true });
    assert_eq!(key_strings(&deleted), [format!("e:{}", alice.id)]);
    assert!(store.get_entities(&[alice.id]).await.unwrap().is_empty());

    // A delete that finds nothing changes nothing: no outbox row, the latest seq.
    let noop = store.write(TERM, "n1", &WriteRequest::DeleteEntity { id: alice.id }).await.unwrap();
    assert_eq!(noop.outcome.result, WriteResult::Deleted { found: false });
    assert!(noop.keys.is_empty());
    assert_eq!(noop.outcome.seq, deleted.outcome.seq);
    assert_eq!(store.outbox_latest().await.unwrap(), deleted.outcome.seq);
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn get_entities_keeps_the_order_asked_and_skips_the_missing() {
    let db = TestDb::new();
    let store = db.store().await;
    let a = create(&store, "user", json!({"n": 1})).await;
    let b = create(&store, "status", json!({"text": "héllo ✓"})).await;
    let found = store.get_entities(&[b.id, 999_999, a.id]).await.unwrap();
    assert_eq!(found, vec![b.clone(), a.clone()]);
    assert!(store.get_entities(&[]).await.unwrap().is_empty());
    assert_eq!(store.count_entities(None).await.unwrap(), 2);
    assert_eq!(store.count_entities(Some("user")).await.unwrap(), 1);
    assert_eq!(store.count_entities(Some("group")).await.unwrap(), 0);
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn inverse_associations_appear_and_vanish_together() {
    let db = TestDb::new();
    let store = db.store().await;
    let a = create(&store, "user", json!({})).await.id;
    let b = create(&store, "user", json!({})).await.id;
    let s = create(&store, "status", json!({})).await.id;

    let w = add(&store, a, "friend", b).await;
    assert_eq!(key_strings(&w), [format!("a:{a}:friend"), format!("a:{b}:friend")]);
    assert_eq!(list(&store, a, "friend").await, (1, vec![b]));
    assert_eq!(list(&store, b, "friend").await, (1, vec![a]));

    add(&store, a, "likes", s).await;
    assert_eq!(list(&store, s, "likedby").await, (1, vec![a]));
    add(&store, a, "posted", s).await;
    assert_eq!(list(&store, s, "postedby").await, (1, vec![a]));
    // Adding from the inverse side makes the forward one too.
    add(&store, s, "likedby", b).await;
    assert_eq!(list(&store, b, "likes").await, (1, vec![s]));

    let before = store.count_assocs().await.unwrap();
    assert_eq!(before, 8);
    let w = add(&store, a, "follows", b).await;
    assert_eq!(key_strings(&w), [format!("a:{a}:follows")]);
    assert_eq!(store.count_assocs().await.unwrap(), before + 1);
    assert_eq!(list(&store, b, "follows").await, (0, vec![]));

    let w = remove(&store, b, "friend", a).await;
    assert_eq!(w.outcome.result, WriteResult::Deleted { found: true });
    assert_eq!(key_strings(&w), [format!("a:{b}:friend"), format!("a:{a}:friend")]);
    assert_eq!(list(&store, a, "friend").await, (0, vec![]));
    assert_eq!(list(&store, b, "friend").await, (0, vec![]));

    remove(&store, s, "likedby", a).await;
    assert_eq!(list(&store, a, "likes").await, (0, vec![]));
    remove(&store, a, "posted", s).await;
    assert_eq!(list(&store, s, "postedby").await, (0, vec![]));
    remove(&store, a, "follows", b).await;

    let latest = store.outbox_latest().await.unwrap();
    let noop = remove(&store, a, "likes", s).await;
    assert_eq!(noop.outcome.result, WriteResult::Deleted { found: false });
    assert!(noop.keys.is_empty());
    assert_eq!(noop.outcome.seq, latest);
    assert_eq!(store.count_assocs().await.unwrap(), 2); // b likes s, s likedby b
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn adding_checks_the_ends_and_re_adding_keeps_created() {
    let db = TestDb::new();
    let store = db.store().await;
    let a = create(&store, "user", json!({})).await.id;
    let b = create(&store, "user", json!({})).await.id;

    let missing = 4242;
    let req = WriteRequest::AddAssoc { from: a, atype: "friend".into(), to: missing, attributes: Attributes::new() };
    let err = store.write(TERM, "n1", &req).await.unwrap_err();
    assert!(matches!(&err, StoreError::NotFound(m) if m.contains("4242")), "{err}");
    let req = WriteRequest::AddAssoc { from: a, atype: "friend".into(), to: a, attributes: Attributes::new() };
    assert!(matches!(store.write(TERM, "n1", &req).await, Err(StoreError::Invalid(_))));
    let req = WriteRequest::AddAssoc { from: a, atype: "No Way".into(), to: b, attributes: Attributes::new() };
    assert!(matches!(store.write(TERM, "n1", &req).await, Err(StoreError::Invalid(_))));
    assert_eq!(store.count_assocs().await.unwrap(), 0);
    assert_eq!(store.outbox_latest().await.unwrap(), 2, "only the two creates wrote");

    let first =
        WriteRequest::AddAssoc { from: a, atype: "friend".into(), to: b, attributes: attrs(json!({"since": 2001})) };
    let WriteResult::Assoc { association: one } = store.write(TERM, "n1", &first).await.unwrap().outcome.result else {
        panic!()
    };
    // The re-add must come at a later millisecond, so a `created` it kept is visible.
    instaface_testkit::wait_until(Duration::from_secs(1), "the millisecond clock to tick", || {
        instaface_bus::now_ms() > one.created
    })
    .await;
    let second =
        WriteRequest::AddAssoc { from: a, atype: "friend".into(), to: b, attributes: attrs(json!({"since": 1999})) };
    let WriteResult::Assoc { association: two } = store.write(TERM, "n1", &second).await.unwrap().outcome.result else {
        panic!()
    };
    assert_eq!(two.created, one.created);
    assert_eq!(two.attributes, attrs(json!({"since": 1999})));
    let (_, back) = store.list_assocs(b, "friend", 10, 0).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].to, back[0].created), (a, one.created));
    assert_eq!(back[0].attributes, two.attributes);
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn deleting_an_entity_removes_its_associations_both_ways() {
    let db = TestDb::new();
    let store = db.store().await;
    let a = create(&store, "user", json!({})).await.id;
    let b = create(&store, "user", json!({})).await.id;
    let c = create(&store, "user", json!({})).await.id;
    let s = create(&store, "status", json!({})).await.id;
    add(&store, a, "friend", b).await;
    add(&store, c, "follows", a).await;
    add(&store, a, "posted", s).await;
    add(&store, b, "likes", s).await;
    add(&store, a, "follows", c).await;

    let w = store.write(TERM, "n1", &WriteRequest::DeleteEntity { id: a }).await.unwrap();
    assert_eq!(w.outcome.result, WriteResult::Deleted { found: true });
    let mut expected = vec![
        format!("a:{a}:follows"),
        format!("a:{a}:friend"),
        format!("a:{a}:posted"),
        format!("a:{b}:friend"),
        format!("a:{c}:follows"),
        format!("a:{s}:postedby"),
    ];
    expected.sort_by_key(|k| k.parse::<CacheKey>().unwrap());
    expected.insert(0, format!("e:{a}"));
    assert_eq!(key_strings(&w), expected);

    assert_eq!(list(&store, b, "friend").await, (0, vec![]));
    assert_eq!(list(&store, c, "follows").await, (0, vec![]));
    assert_eq!(list(&store, s, "postedby").await, (0, vec![]));
    assert_eq!(list(&store, s, "likedby").await, (1, vec![b]));
    assert_eq!(store.count_assocs().await.unwrap(), 2);
    let since = store.outbox_since(w.outcome.seq - 1, 10).await.unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].keys, expected);
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn lists_are_newest_first_with_counts_limits_and_offsets() {
    let db = TestDb::new();
    let store = db.store().await;
    let a = create(&store, "user", json!({})).await.id;
    let mut targets = Vec::new();
    for _ in 0..5 {
        let t = create(&store, "user", json!({})).await.id;
        add(&store, a, "follows", t).await;
        targets.push(t);
    }
    let newest_first: Vec<EntityId> = targets.iter().rev().copied().collect();

    let (count, items) = store.list_assocs(a, "follows", 10, 0).await.unwrap();
    assert_eq!(count, 5);
    assert_eq!(items.iter().map(|x| x.to).collect::<Vec<_>>(), newest_first);
    assert!(items.windows(2).all(|w| (w[0].created, w[0].to) > (w[1].created, w[1].to)));
    assert!(items.iter().all(|x| x.from == a && x.atype == "follows"));

    let (count, items) = store.list_assocs(a, "follows", 2, 1).await.unwrap();
    assert_eq!(count, 5);
    assert_eq!(items.iter().map(|x| x.to).collect::<Vec<_>>(), newest_first[1..3]);
    let (count, items) = store.list_assocs(a, "follows", 10, 4).await.unwrap();
    assert_eq!((count, items.len()), (5, 1));
    let (count, items) = store.list_assocs(a, "follows", 10, 9).await.unwrap();
    assert_eq!((count, items.len()), (5, 0));
    let (count, items) = store.list_assocs(a, "follows", 0, 0).await.unwrap();
    assert_eq!((count, items.len()), (5, 0));
    assert_eq!(store.list_assocs(a, "friend", 10, 0).await.unwrap(), (0, vec![]));
    assert!(matches!(store.list_assocs(a, "Bad", 10, 0).await, Err(StoreError::Invalid(_))));
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_stale_term_is_fenced_off_and_changes_nothing() {
    let db = TestDb::new();
    let store = db.store().await;
    assert_eq!(store.fence_term().await.unwrap(), 0);
    let a = create(&store, "user", json!({})).await.id;
    let b = create(&store, "user", json!({})).await.id;

    assert_eq!(store.raise_fence(5, "n1").await.unwrap(), 5);
    assert_eq!(store.fence_term().await.unwrap(), 5);
    assert!(matches!(store.raise_fence(3, "n1").await, Err(StoreError::Fenced { stored: 5, mine: 3 })));
    assert_eq!(store.raise_fence(5, "n1").await.unwrap(), 5, "raising to the same term is fine");
    assert_eq!(store.fence_term().await.unwrap(), 5);

    let entities = store.count_entities(None).await.unwrap();
    let latest = store.outbox_latest().await.unwrap();
    let stale = [
        WriteRequest::CreateEntity { etype: "user".into(), attributes: Attributes::new() },
        WriteRequest::UpdateEntity { id: a, patch: json!({"x": 1}) },
        WriteRequest::DeleteEntity { id: a },
        WriteRequest::AddAssoc { from: a, atype: "friend".into(), to: b, attributes: Attributes::new() },
        WriteRequest::RemoveAssoc { from: a, atype: "friend".into(), to: b },
    ];
    for req in &stale {
        let err = store.write(4, "n1", req).await.unwrap_err();
        assert!(matches!(err, StoreError::Fenced { stored: 5, mine: 4 }), "{req:?}: {err}");
        assert_eq!(ErrorBody::from(err).code, ErrorCode::NotLeader);
    }
    assert_eq!(store.count_entities(None).await.unwrap(), entities);
    assert_eq!(store.count_assocs().await.unwrap(), 0);
    assert_eq!(store.outbox_latest().await.unwrap(), latest);
    assert_eq!(store.get_entities(&[a]).await.unwrap()[0].version, 1);

    // The current term and later ones may write.
    store.write(5, "n1", &stale[1]).await.unwrap();
    store.write(6, "n1", &stale[3]).await.unwrap();
    assert_eq!(store.fence_term().await.unwrap(), 5, "writing does not raise the fence");
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn the_outbox_grows_in_order_and_keeps_its_newest_row() {
    let db = TestDb::new();
    let store = db.store().await;
    assert_eq!(store.outbox_latest().await.unwrap(), 0);
    assert_eq!(store.outbox_oldest().await.unwrap(), None);
    assert_eq!(store.outbox_delete_through(10).await.unwrap(), 0);

    let mut written = Vec::new();
    for i in 0..5 {
        let req = WriteRequest::CreateEntity { etype: "user".into(), attributes: attrs(json!({"i": i})) };
        written.push(store.write(TERM, "n1", &req).await.unwrap());
    }
    let seqs: Vec<u64> = written.iter().map(|w| w.outcome.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(store.outbox_latest().await.unwrap(), seqs[4]);
    assert_eq!(store.outbox_oldest().await.unwrap(), Some(seqs[0]));

    let all = store.outbox_since(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    for (entry, w) in all.iter().zip(&written) {
        assert_eq!(entry.keys, key_strings(w));
    }
    let some = store.outbox_since(seqs[1], 2).await.unwrap();
    assert_eq!(some.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[2..4]);
    assert!(store.outbox_since(seqs[4], 10).await.unwrap().is_empty());
    // A new leader replays the newest rows, oldest first, never the oldest ones.
    let newest = store.outbox_newest(2).await.unwrap();
    assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[3..5]);
    assert_eq!(store.outbox_newest(100).await.unwrap().len(), 5);

    assert_eq!(store.outbox_delete_through(seqs[1]).await.unwrap(), 2);
    assert_eq!(store.outbox_oldest().await.unwrap(), Some(seqs[2]));
    // Everything acknowledged: the newest row still stays.
    assert_eq!(store.outbox_delete_through(u64::MAX).await.unwrap(), 2);
    assert_eq!(store.outbox_oldest().await.unwrap(), Some(seqs[4]));
    assert_eq!(store.outbox_latest().await.unwrap(), seqs[4]);
    assert_eq!(store.outbox_delete_through(u64::MAX).await.unwrap(), 0);

    let next = create(&store, "user", json!({})).await;
    let entries = store.outbox_since(seqs[4], 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].keys, [format!("e:{}", next.id)]);
    assert!(entries[0].seq > seqs[4]);
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn connect_creates_the_database_and_migrates_only_once() {
    let db = TestDb::new();
    assert!(!db.exists().await);
    let store = db.store().await;
    assert!(db.exists().await);
    let a = create(&store, "user", json!({"keep": true})).await;
    store.raise_fence(3, "n1").await.unwrap();
    store.disconnect().await.unwrap();

    let mut raw = db.raw().await;
    let versions = "SELECT version, applied FROM schema_version ORDER BY version";
    let before: Vec<(u32, u64)> = raw.query(versions).await.unwrap();
    assert_eq!(before.iter().map(|v| v.0).collect::<Vec<_>>(), (1..=SCHEMA_VERSION).collect::<Vec<_>>());

    // Until the clock has moved past every `applied` time, so that a second migration
    // would show in them.
    let latest = before.iter().map(|v| v.1).max().unwrap_or(0);
    wait_until(Duration::from_secs(2), "the clock to pass the migrations' times", || instaface_bus::now_ms() > latest)
        .await;
    let store = db.store().await;
    let after: Vec<(u32, u64)> = raw.query(versions).await.unwrap();
    assert_eq!(after, before, "a database at the latest version is left alone");
    assert_eq!(store.get_entities(&[a.id]).await.unwrap(), vec![a.clone()]);
    assert_eq!(store.fence_term().await.unwrap(), 3);
    store.disconnect().await.unwrap();

    // A database behind (here: at version 0, its fence table lost) is migrated forward,
    // keeping its data.
    raw.query_drop("DELETE FROM schema_version").await.unwrap();
    raw.query_drop("DROP TABLE fence").await.unwrap();
    let store = db.store().await;
    let after: Vec<(u32, u64)> = raw.query(versions).await.unwrap();
    assert_eq!(after.len(), SCHEMA_VERSION as usize);
    assert_eq!(store.fence_term().await.unwrap(), 0);
    assert_eq!(store.get_entities(&[a.id]).await.unwrap(), vec![a]);
    raw.disconnect().await.unwrap();
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn fetch_answers_every_key_in_order() {
    let db = TestDb::new();
    let store = db.store().await;
    let a = create(&store, "user", json!({"name": "a"})).await;
    let b = create(&store, "user", json!({"name": "b"})).await;
    let mut followed = Vec::new();
    for _ in 0..3 {
        let t = create(&store, "user", json!({})).await.id;
        add(&store, a.id, "follows", t).await;
        followed.push(t);
    }
    add(&store, a.id, "friend", b.id).await;

    let keys = vec![
        CacheKey::Assocs { from: a.id, atype: "follows".into() },
        CacheKey::Entity(b.id),
        CacheKey::Entity(987_654),
        CacheKey::Assocs { from: b.id, atype: "friend".into() },
        CacheKey::Assocs { from: b.id, atype: "likes".into() },
        CacheKey::Entity(a.id),
        CacheKey::Assocs { from: a.id, atype: "follows".into() },
    ];
    let (seq, values) = store.fetch_with_seq(&keys, 2).await.unwrap();
    assert_eq!(seq, store.outbox_latest().await.unwrap());
    assert_eq!(values.len(), keys.len());

    let CacheValue::Assocs { count, items, complete } = &values[0] else { panic!("{:?}", values[0]) };
    assert_eq!((*count, *complete), (3, false));
    assert_eq!(items.iter().map(|x| x.to).collect::<Vec<_>>(), [followed[2], followed[1]]);
    assert_eq!(values[1], CacheValue::Entity { entity: Some(b.clone()) });
    assert_eq!(values[2], CacheValue::Entity { entity: None });
    let CacheValue::Assocs { count, items, complete } = &values[3] else { panic!() };
    assert_eq!((*count, *complete), (1, true));
    assert_eq!(items[0].to, a.id);
    assert_eq!(values[4], CacheValue::Assocs { count: 0, items: vec![], complete: true });
    assert_eq!(values[5], CacheValue::Entity { entity: Some(a.clone()) });
    assert_eq!(values[6], values[0]);

    let wide = store.fetch(&keys[..1], 10).await.unwrap();
    let CacheValue::Assocs { count, items, complete } = &wide[0] else { panic!() };
    assert_eq!((*count, items.len(), *complete), (3, 3, true));
    let narrow = store.fetch(&keys[..1], 0).await.unwrap();
    assert_eq!(narrow[0], CacheValue::Assocs { count: 3, items: vec![], complete: false });
    assert!(store.fetch(&[], 10).await.unwrap().is_empty());
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn random_ids_are_distinct_ids_of_the_type() {
    let db = TestDb::new();
    let store = db.store().await;
    let mut users = Vec::new();
    for i in 0..40 {
        users.push(create(&store, "user", json!({})).await.id);
        if i % 8 == 0 {
            create(&store, "status", json!({})).await;
        }
    }
    let picked = store.random_ids("user", 10).await.unwrap();
    assert_eq!(picked.len(), 10);
    let distinct: std::collections::HashSet<_> = picked.iter().collect();
    assert_eq!(distinct.len(), 10);
    assert!(picked.iter().all(|id| users.contains(id)));

    let statuses = store.random_ids("status", 10).await.unwrap();
    assert_eq!(statuses.len(), 5);
    let found = store.get_entities(&statuses).await.unwrap();
    assert!(found.iter().all(|e| e.etype == "status") && found.len() == 5);
    assert_eq!(store.random_ids("user", 100).await.unwrap().len(), 40);
    assert!(store.random_ids("group", 3).await.unwrap().is_empty());
    assert!(store.random_ids("user", 0).await.unwrap().is_empty());
    assert!(matches!(store.random_ids("Nope!", 3).await, Err(StoreError::Invalid(_))));
    store.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_commit_with_distinct_increasing_seqs() {
    let db = TestDb::new();
    let store = db.store().await;
    let hub = create(&store, "user", json!({})).await.id;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                for i in 0..10 {
                    let req = WriteRequest::CreateEntity {
                        etype: "user".into(),
                        attributes: attrs(json!({"task": t, "i": i})),
                    };
                    let w = store.write(TERM, "n1", &req).await.unwrap();
                    let WriteResult::Entity { entity } = &w.outcome.result else { panic!() };
                    add(&store, entity.id, "friend", hub).await;
                    done.push((w.outcome.seq, entity.id));
                }
                done
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let done = task.await.unwrap();
        assert!(done.windows(2).all(|w| w[0].0 < w[1].0), "a task's seqs grow: {done:?}");
        all.extend(done);
    }
    all.sort();
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "seqs are distinct");
    // Ids are assigned under the fence lock too: seq order is id order.
    assert!(all.windows(2).all(|w| w[0].1 < w[1].1), "seq order is commit order");

    let entries = store.outbox_since(0, 1000).await.unwrap();
    assert_eq!(entries.len(), 1 + 8 * 10 * 2);
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.count_entities(Some("user")).await.unwrap(), 81);
    assert_eq!(store.list_assocs(hub, "friend", 0, 0).await.unwrap().0, 80);
    assert_eq!(store.count_assocs().await.unwrap(), 160);
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_errors_not_panics() {
    let started = Instant::now();
    for url in ["not a url", "postgres://root@127.0.0.1:3306/x", "mysql://root@127.0.0.1:3306/?x=1"] {
        assert!(GraphStore::connect(url).await.is_err(), "{url}");
    }
    for url in ["mysql://root@127.0.0.1:3306/bad-name", "mysql://root@127.0.0.1:3306"] {
        let err = GraphStore::connect(url).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{url}: {err}");
    }
    // Nothing listens on port 1.
    let err = GraphStore::connect("mysql://root@127.0.0.1:1/instaface_t_nothing").await.unwrap_err();
    assert!(matches!(err, StoreError::Mysql(_)), "{err}");
    assert_eq!(ErrorBody::from(err).code, ErrorCode::Internal);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_second_leader_of_the_same_term_fences_off_the_first() {
    // Nodes keep no disk state, so a restarted voter may help elect a second leader of a
    // term whose first leader is frozen: the first must not write when it resumes.
    let db = TestDb::new();
    let store = db.store().await;
    store.raise_fence(7, "n1").await.unwrap();
    create_as(&store, 7, "n1").await.unwrap();
    store.raise_fence(7, "n2").await.unwrap();
    let before = store.outbox_latest().await.unwrap();
    let err = create_as(&store, 7, "n1").await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { stored: 7, mine: 7 }), "{err}");
    assert_eq!(store.outbox_latest().await.unwrap(), before);
    create_as(&store, 7, "n2").await.unwrap();
    store.disconnect().await.unwrap();
}

async fn create_as(store: &GraphStore, term: u64, leader: &str) -> Result<CommittedWrite, StoreError> {
    let req = WriteRequest::CreateEntity { etype: "user".into(), attributes: Attributes::new() };
    store.write(term, leader, &req).await
}

#[tokio::test]
async fn a_batch_commits_together_and_a_refused_write_is_rolled_back_alone() {
    let db = TestDb::new();
    let store = db.store().await;
    let a = create(&store, "user", json!({})).await.id;
    let b = create(&store, "user", json!({})).await.id;
    store.raise_fence(TERM, "n1").await.unwrap();
    let before = store.outbox_latest().await.unwrap();
    let batch = [
        WriteRequest::UpdateEntity { id: a, patch: json!({"x": 1}) },
        // Refused on its own terms: the entity does not exist.
        WriteRequest::UpdateEntity { id: EntityId::MAX / 2, patch: json!({"x": 1}) },
        WriteRequest::AddAssoc { from: a, atype: "friend".into(), to: b, attributes: Attributes::new() },
        // Changes nothing: it observed the batch's own earlier rows.
        WriteRequest::RemoveAssoc { from: b, atype: "follows".into(), to: a },
    ];
    let results = store.write_batch(TERM, "n1", &ops(&batch)).await.unwrap();
    assert_eq!(results.len(), 4);
    let first = results[0].as_ref().expect("the update commits");
    let err = results[1].as_ref().expect_err("the missing entity is refused");
    assert_eq!(err.code(), ErrorCode::NotFound);
    let added = results[2].as_ref().expect("the association commits");
    let nothing = results[3].as_ref().expect("the removal of nothing is answered");
    assert!(before < first.outcome.seq && first.outcome.seq < added.outcome.seq);
    assert!(nothing.keys.is_empty());
    assert_eq!(nothing.outcome.seq, added.outcome.seq, "it saw its batch mates");
    assert_eq!(store.outbox_latest().await.unwrap(), added.outcome.seq);
    let rows = store.outbox_since(before, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [first.outcome.seq, added.outcome.seq],
        "one outbox row per changed write, none for the refused one"
    );
    assert_eq!(store.get_entities(&[a]).await.unwrap()[0].version, 2);
    assert_eq!(list(&store, a, "friend").await.0, 1);

    // A fenced batch runs none of its writes.
    store.raise_fence(TERM + 1, "n2").await.unwrap();
    let err = store.write_batch(TERM, "n1", &ops(&batch)).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert_eq!(store.get_entities(&[a]).await.unwrap()[0].version, 2);
    assert_eq!(store.outbox_latest().await.unwrap(), added.outcome.seq);
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_batch_of_creates_gets_distinct_ids_and_seqs() {
    // Creates go in multi-row INSERTs (chunks of powers of two: 37 = 32 + 4 + 1) and the
    // outbox rows in one more; every id and seq must be the row's own.
    let db = TestDb::new();
    let store = db.store().await;
    let a = create(&store, "user", json!({})).await.id;
    store.raise_fence(TERM, "n1").await.unwrap();
    let before = store.outbox_latest().await.unwrap();
    let mut batch = vec![WriteRequest::RemoveAssoc { from: a, atype: "friend".into(), to: a }];
    batch.extend((0..37).map(|i| WriteRequest::CreateEntity {
        etype: if i % 2 == 0 { "user".into() } else { "post".into() },
        attributes: attrs(json!({ "i": i })),
    }));
    batch.push(WriteRequest::UpdateEntity { id: a, patch: json!({"x": 1}) });
    batch.push(WriteRequest::RemoveAssoc { from: a, atype: "friend".into(), to: a });
    batch.extend(
        (37..40).map(|i| WriteRequest::CreateEntity { etype: "user".into(), attributes: attrs(json!({ "i": i })) }),
    );
    let results: Vec<CommittedWrite> =
        store.write_batch(TERM, "n1", &ops(&batch)).await.unwrap().into_iter().map(Result::unwrap).collect();
    assert_eq!(results.len(), batch.len());

    // The batch is applied by kind (updates, the others in order, creates): a removal of
    // nothing answers the latest seq it observed.
    let update = &results[38];
    assert_eq!(results[0].outcome.seq, update.outcome.seq, "it saw the update applied before it");
    assert_eq!(results[39].outcome.seq, update.outcome.seq, "it saw the update applied before it");
    let changed: Vec<&CommittedWrite> = results.iter().filter(|w| !w.keys.is_empty()).collect();
    let mut seqs: Vec<u64> = changed.iter().map(|w| w.outcome.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (before + 1..=before + changed.len() as u64).collect::<Vec<_>>(), "one seq each, no gap");

    let mut ids = Vec::new();
    for (i, w) in results.iter().enumerate() {
        if let WriteResult::Entity { entity } = &w.outcome.result {
            if !matches!(batch[i], WriteRequest::CreateEntity { .. }) {
                continue;
            }
            assert_eq!(key_strings(w), [CacheKey::Entity(entity.id).to_string()]);
            ids.push((entity.id, entity.etype.clone(), entity.attributes.clone()));
        }
    }
    assert_eq!(ids.len(), 40);
    let stored = store.get_entities(&ids.iter().map(|(id, _, _)| *id).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(stored.len(), 40, "every id names a stored entity");
    for ((id, etype, attributes), e) in ids.iter().zip(&stored) {
        assert_eq!((&e.id, &e.etype, &e.attributes), (id, etype, attributes), "each id is its own row");
    }
    let rows = store.outbox_since(before, 100).await.unwrap();
    assert_eq!(rows.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    for w in &changed {
        let row = rows.iter().find(|r| r.seq == w.outcome.seq).expect("its outbox row");
        assert_eq!(row.keys, key_strings(w), "each outbox row holds its own write's keys");
    }
    store.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_batch_of_updates_applies_each_patch_in_order_and_answers_each_version() {
    // Updates go in one locking SELECT and one upsert; several of one entity chain.
    let db = TestDb::new();
    let store = db.store().await;
    let a = create(&store, "user", json!({"n": 0, "keep": true})).await.id;
    let b = create(&store, "post", json!({"text": "x"})).await.id;
    store.raise_fence(TERM, "n1").await.unwrap();
    let before = store.outbox_latest().await.unwrap();
    let batch = vec![
        WriteRequest::UpdateEntity { id: a, patch: json!({"n": 1}) },
        WriteRequest::CreateEntity { etype: "user".into(), attributes: attrs(json!({"new": true})) },
        WriteRequest::UpdateEntity { id: b, patch: json!({"text": "y"}) },
        WriteRequest::UpdateEntity { id: a, patch: json!({"n": 2, "keep": null}) },
    ];
    let results: Vec<CommittedWrite> =
        store.write_batch(TERM, "n1", &ops(&batch)).await.unwrap().into_iter().map(Result::unwrap).collect();
    let entity = |w: &CommittedWrite| match &w.outcome.result {
        WriteResult::Entity { entity } => entity.clone(),
        other => panic!("{other:?}"),
    };
    let (a1, b1, a2) = (entity(&results[0]), entity(&results[2]), entity(&results[3]));
    assert_eq!((a1.version, a1.attributes.clone()), (2, attrs(json!({"n": 1, "keep": true}))));
    assert_eq!((a2.version, a2.attributes.clone()), (3, attrs(json!({"n": 2}))));
    assert_eq!((b1.version, b1.attributes.clone()), (2, attrs(json!({"text": "y"}))));
    let stored = store.get_entities(&[a, b]).await.unwrap();
    assert_eq!(stored[0], a2, "the last update of a is stored");
    assert_eq!(stored[1], b1);
    assert!(results[0].outcome.seq < results[3].outcome.seq, "a's updates in order");
    assert_eq!(store.outbox_latest().await.unwrap(), before + 4);

    // A missing entity among them: the grouped run is refused whole and the batch runs
    // again one by one; the others commit.
    let batch = vec![
        WriteRequest::UpdateEntity { id: a, patch: json!({"n": 3}) },
        WriteRequest::UpdateEntity { id: EntityId::MAX / 2, patch: json!({"n": 3}) },
        WriteRequest::UpdateEntity { id: b, patch: json!("not an object") },
    ];
    let results = store.write_batch(TERM, "n1", &ops(&batch)).await.unwrap();
    assert_eq!(entity(results[0].as_ref().expect("the update of a commits")).version, 4);
    assert_eq!(results[1].as_ref().expect_err("missing").code(), ErrorCode::NotFound);
    assert_eq!(results[2].as_ref().expect_err("not an object").code(), ErrorCode::Invalid);
    assert_eq!(store.get_entities(&[b]).await.unwrap()[0].version, 2, "b unchanged");
    store.disconnect().await.unwrap();
}

/// A database claimed for shard 1 hands out shard 1's ids, keeps its claim, never hands an
/// id out twice (the start is moved once, not after its rows are deleted), and refuses to
/// be shard 0's; a database holding shard 0's rows is refused to shard 1 without being
/// claimed, so fixing the order of `SHARD_MYSQL_URLS` is enough.
#[tokio::test]
async fn a_database_holds_one_shard_and_its_ids_name_it() {
    use instaface_bus::shards::{first_id, shard_of};
    let db = TestDb::new();
    let store = GraphStore::connect_shard(&db.url(), 1, two_shards()).await.expect("claim for shard 1");
    let a = create(&store, "user", json!({})).await;
    assert_eq!(a.id, first_id(1));
    let req = WriteRequest::DeleteEntity { id: a.id };
    store.write(TERM, "n1", &req).await.unwrap();
    store.disconnect().await.unwrap();
    let store = GraphStore::connect_shard(&db.url(), 1, two_shards()).await.expect("shard 1 again");
    let b = create(&store, "user", json!({})).await;
    assert!(b.id > a.id && shard_of(b.id) == 1, "{} after {}", b.id, a.id);
    store.disconnect().await.unwrap();
    let err = GraphStore::connect_shard(&db.url(), 0, two_shards()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid(m) if m.contains("holds shard 1")), "{err}");

    let old = TestDb::new();
    let store = old.store().await;
    let c = create(&store, "user", json!({})).await;
    store.disconnect().await.unwrap();
    assert_eq!(c.id, 1);
    // As a database from before shards: rows, no claim.
    old.raw().await.query_drop("DELETE FROM shard").await.unwrap();
    let err = GraphStore::connect_shard(&old.url(), 1, two_shards()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid(m) if m.contains("of shard 0")), "{err}");
    let store = GraphStore::connect_shard(&old.url(), 0, two_shards()).await.expect("still shard 0's");
    assert_eq!(create(&store, "user", json!({})).await.id, 2);
    store.disconnect().await.unwrap();
}

/// A batch of client writes as the store runs them.
fn ops(batch: &[WriteRequest]) -> Vec<Op> {
    batch.iter().cloned().map(Op::from).collect()
}

fn two_shards() -> instaface_bus::shards::Shards {
    instaface_bus::shards::Shards::new(2).expect("two shards")
}

/// Hands every undelivered intent of `from` (shard `from_shard`) to `to` as its leader
/// would, answering each as the delivery task does (marking it), and returns what each did.
/// With `newest_first`, in the reverse of the order they were committed.
async fn deliver_all(
    from: &GraphStore,
    from_shard: u32,
    to: &GraphStore,
    newest_first: bool,
) -> Vec<Result<CommittedWrite, StoreError>> {
    use instaface_actors::store::IntentOutcome;
    use instaface_bus::intents::IntentDelivery;
    let mut results = Vec::new();
    let mut pending = from.undelivered_intents(100).await.unwrap();
    if newest_first {
        pending.reverse();
    }
    for p in pending {
        let op = Op::Apply(IntentDelivery { from_shard, intent_id: p.id, op: p.op });
        let r = to.write_batch(TERM, "n2", &[op]).await.unwrap().pop().unwrap();
        let outcome = if r.is_ok() { IntentOutcome::Applied } else { IntentOutcome::Refused };
        from.mark_intents(&[p.id], outcome).await.unwrap();
        results.push(r);
    }
    results
}

/// A cross-shard association: the owner's shard writes its row and an intent in one
/// transaction; the other shard applies the intent once (a redelivery changes nothing),
/// never lets an older intent undo a newer one, drops every association to an entity of
/// another shard when told it was deleted (and refuses new ones), and refuses a row from
/// one of its own entities that is gone.
#[tokio::test]
async fn cross_shard_associations_go_through_intents_applied_once_and_in_order() {
    use instaface_bus::intents::{IntentDelivery, InverseOp};
    use instaface_bus::shards::owner_of;
    let (db0, db1) = (TestDb::new(), TestDb::new());
    let s0 = GraphStore::connect_shard(&db0.url(), 0, two_shards()).await.unwrap();
    let s1 = GraphStore::connect_shard(&db1.url(), 1, two_shards()).await.unwrap();
    let a = create(&s0, "user", json!({})).await.id;
    // Every other id skipped, so that b's and c's have a's parity: shard 0 owns both
    // pairs (owner_of: the smaller id when the parities match), and only the owner may
    // write a pair.
    create(&s1, "user", json!({})).await;
    let b = create(&s1, "user", json!({})).await.id;
    create(&s1, "user", json!({})).await;
    let c = create(&s1, "user", json!({})).await.id;
    assert_eq!(owner_of(a, "friend", b), a);
    assert_eq!(owner_of(c, "likes", a), a);

    // Only the owner writes a pair: shard 1, which holds b, refuses to add or remove it.
    for req in [
        WriteRequest::AddAssoc { from: b, atype: "friend".into(), to: a, attributes: Attributes::new() },
        WriteRequest::RemoveAssoc { from: b, atype: "friend".into(), to: a },
    ] {
        let refused = s1.write(TERM, "n2", &req).await;
        assert!(matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("not owned")), "{refused:?}");
    }

    // Shard 0 owns the pair (a < b): its row at once, shard 1's through an intent.
    add(&s0, b, "friend", a).await;
    assert_eq!(s0.list_assocs(a, "friend", 10, 0).await.unwrap().0, 1);
    assert_eq!(s1.list_assocs(b, "friend", 10, 0).await.unwrap().0, 0);
    let pending = s0.undelivered_intents(100).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(matches!(&pending[0].op, InverseOp::Put { from, to, .. } if (*from, *to) == (b, a)));
    let put = pending[0].clone();
    assert!(deliver_all(&s0, 0, &s1, false).await[0].is_ok());
    let (count, items) = s1.list_assocs(b, "friend", 10, 0).await.unwrap();
    assert_eq!((count, items[0].to), (1, a));
    assert_eq!(s0.count_undelivered_intents().await.unwrap(), 0);

    // A redelivery changes nothing (no outbox row, no second application).
    let again = Op::Apply(IntentDelivery { from_shard: 0, intent_id: put.id, op: put.op.clone() });
    let r = s1.write_batch(TERM, "n2", &[again]).await.unwrap().pop().unwrap().unwrap();
    assert!(r.keys.is_empty(), "{r:?}");

    // Removed, added and removed again, delivered newest first: the older ones arriving
    // late change nothing, so the last one stands.
    remove(&s0, a, "friend", b).await;
    add(&s0, a, "friend", b).await;
    remove(&s0, b, "friend", a).await;
    let results = deliver_all(&s0, 0, &s1, true).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(s1.list_assocs(b, "friend", 10, 0).await.unwrap().0, 0, "an older intent undid a newer one");
    add(&s0, a, "friend", b).await;
    deliver_all(&s0, 0, &s1, true).await;
    assert_eq!(s1.list_assocs(b, "friend", 10, 0).await.unwrap().0, 1);

    // Shard 1 deletes c: shard 0 drops every association to it and refuses new ones.
    add(&s0, c, "likes", a).await;
    deliver_all(&s0, 0, &s1, false).await;
    assert_eq!(s1.list_assocs(c, "likes", 10, 0).await.unwrap().0, 1);
    s1.write(TERM, "n2", &WriteRequest::DeleteEntity { id: c }).await.unwrap();
    assert!(deliver_all(&s1, 1, &s0, false).await[0].is_ok());
    assert_eq!(s0.list_assocs(a, "likedby", 10, 0).await.unwrap().0, 0);
    let again = WriteRequest::AddAssoc { from: a, atype: "friend".into(), to: c, attributes: Default::default() };
    assert!(matches!(s0.write(TERM, "n1", &again).await, Err(StoreError::NotFound(_))));

    // A put for a row from an entity that is gone is refused (the sender then removes its own).
    let stale = Op::Apply(IntentDelivery {
        from_shard: 0,
        intent_id: 1_000,
        op: InverseOp::Put { from: c, atype: "friend".into(), to: a, attributes: Default::default(), created: 1 },
    });
    let r = s1.write_batch(TERM, "n2", &[stale]).await.unwrap().pop().unwrap();
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");

    // A one-way row to an entity of the other shard is checked there: one that does not
    // exist is refused (the delivery task then removes the row); one that does, passes.
    let ghost = instaface_bus::shards::first_id(1) + 999;
    add(&s0, a, "follows", ghost).await;
    add(&s0, a, "follows", b).await;
    let results = deliver_all(&s0, 0, &s1, false).await;
    assert!(matches!(results[0], Err(StoreError::NotFound(_))), "{results:?}");
    assert!(results[1].is_ok(), "{results:?}");

    // The record: every intent of shard 0 applied once in shard 1.
    let applied: Vec<(u32, u64)> =
        db1.raw().await.query("SELECT from_shard, intent_id FROM applied_intents ORDER BY intent_id").await.unwrap();
    let sent: Vec<u64> =
        db0.raw().await.query("SELECT id FROM intents WHERE outcome = 'applied' ORDER BY id").await.unwrap();
    let expected: Vec<(u32, u64)> = sent.into_iter().map(|id| (0, id)).collect();
    assert_eq!(applied, expected);

    // Pruning takes delivered intents and applied records, never an undelivered intent.
    add(&s0, a, "likes", b).await;
    assert!(s0.prune_intents(u64::MAX).await.unwrap() > 0);
    assert!(s1.prune_intents(u64::MAX).await.unwrap() > 0);
    assert_eq!(s0.undelivered_intents(100).await.unwrap().len(), 1);
    let left: Option<u64> = db1.raw().await.query_first("SELECT COUNT(*) FROM applied_intents").await.unwrap();
    assert_eq!(left, Some(0));
    for s in [s0, s1] {
        s.disconnect().await.unwrap();
    }
}
