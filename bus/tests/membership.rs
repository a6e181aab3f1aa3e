//! Redis membership against the real Redis, each test under a prefix of its own.

use instaface_bus::membership::{MemberInfo, Membership};
use instaface_bus::Subjects;

fn unique_prefix(name: &str) -> String {
    format!("t{}.{name}", rand::random::<u32>())
}

async fn membership(name: &str) -> Membership {
    let subjects = Subjects::new(unique_prefix(name));
    Membership::connect("redis://127.0.0.1:6379", &subjects).await.expect("redis at 127.0.0.1:6379")
}

#[tokio::test]
async fn register_list_remove() {
    let m = membership("reg").await;
    assert!(m.list().await.unwrap().is_empty());
    m.register("n1", &MemberInfo { registered: 5, by: "self".into() }).await.unwrap();
    m.register("n2", &MemberInfo::default()).await.unwrap();
    let members = m.list().await.unwrap();
    assert_eq!(members.keys().cloned().collect::<Vec<_>>(), vec!["n1", "n2"]);
    assert_eq!(members["n1"].registered, 5);
    assert!(m.remove("n1").await.unwrap());
    assert!(!m.remove("n1").await.unwrap());
    assert_eq!(m.list().await.unwrap().len(), 1);
    m.clear().await.unwrap();
}

#[tokio::test]
async fn ensure_keeps_existing_entries_and_adds_missing_ones() {
    let m = membership("ensure").await;
    m.register("n1", &MemberInfo { registered: 1, by: "self".into() }).await.unwrap();
    m.ensure(&["n1".into(), "n2".into(), "n3".into()], "launcher").await.unwrap();
    let members = m.list().await.unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members["n1"].by, "self");
    assert_eq!(members["n2"].by, "launcher");
    m.clear().await.unwrap();
}

#[tokio::test]
async fn prefixes_do_not_see_each_other() {
    let a = membership("a").await;
    let b = membership("b").await;
    a.register("n1", &MemberInfo::default()).await.unwrap();
    assert!(b.list().await.unwrap().is_empty());
    a.clear().await.unwrap();
}

#[tokio::test]
async fn invalid_ids_are_refused() {
    let m = membership("bad").await;
    assert!(m.register("a.b", &MemberInfo::default()).await.is_err());
    assert!(m.register("", &MemberInfo::default()).await.is_err());
    assert!(m.ensure(&["x y".into()], "t").await.is_err());
    assert!(m.list().await.unwrap().is_empty());
}
