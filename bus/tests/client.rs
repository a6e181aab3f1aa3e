//! The typed NATS client against the real NATS server: publish/subscribe, queue groups,
//! request-reply with timeouts, and decode errors as values.

use std::time::Duration;

use futures::StreamExt;
use instaface_bus::config::BusArgs;
use instaface_bus::messages::Unplug;
use instaface_bus::{Bus, BusError};

async fn bus(name: &str) -> Bus {
    let args = BusArgs::local(&format!("t{}.{name}", rand::random::<u32>()));
    let bus = Bus::connect(&args, "client-test").await.expect("connect");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !bus.is_connected() {
        assert!(tokio::time::Instant::now() < deadline, "nats at 127.0.0.1:4222 did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus
}

#[tokio::test]
async fn publish_and_subscribe_typed_messages() {
    let bus = bus("pubsub").await;
    let subject = bus.subjects().control_unplug();
    let mut sub = bus.subscribe::<Unplug>(subject.clone()).await.unwrap();
    bus.flush().await.unwrap();
    bus.publish(subject.clone(), &Unplug { node: "n1".into(), unplugged: true, clients: false }).await.unwrap();
    // Garbage on the same subject arrives as a decode error value, and the stream goes on.
    bus.raw().publish(subject.clone(), "not msgpack".into()).await.unwrap();
    bus.publish(subject.clone(), &Unplug { node: "n2".into(), unplugged: false, clients: false }).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    assert_eq!(first.payload.unwrap(), Unplug { node: "n1".into(), unplugged: true, clients: false });
    let second = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    assert!(second.payload.is_err());
    let third = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    assert_eq!(third.payload.unwrap().node, "n2");
}

#[tokio::test]
async fn request_reply_timeout_and_no_responders() {
    let bus = bus("req").await;
    let subject = bus.subjects().node("n1", "echo");
    let err = bus
        .request::<_, Unplug>(
            subject.clone(),
            &Unplug { node: "x".into(), unplugged: true, clients: false },
            Duration::from_millis(300),
        )
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, BusError::NoResponders { .. } | BusError::Timeout { .. }), "{err}");

    let mut sub = bus.subscribe::<Unplug>(subject.clone()).await.unwrap();
    bus.flush().await.unwrap();
    let responder = bus.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let (Some(reply), Ok(mut m)) = (msg.reply, msg.payload) {
                m.unplugged = !m.unplugged;
                let _ = responder.publish(reply, &m).await;
            }
        }
    });
    let answer: Unplug = bus
        .request(subject.clone(), &Unplug { node: "x".into(), unplugged: true, clients: false }, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!answer.unplugged);
    // A reply of the wrong type is a decode error, not a panic.
    let wrong = bus
        .request::<_, instaface_bus::messages::Heartbeat>(
            subject,
            &Unplug { node: "x".into(), unplugged: true, clients: false },
            Duration::from_secs(5),
        )
        .await;
    assert!(matches!(wrong, Err(BusError::Decode(_))));
}

#[tokio::test]
async fn queue_group_delivers_each_message_once() {
    let bus = bus("queue").await;
    let subject = bus.subjects().graph_read();
    let mut a = bus.queue_subscribe::<Unplug>(subject.clone(), "readers").await.unwrap();
    let mut b = bus.queue_subscribe::<Unplug>(subject.clone(), "readers").await.unwrap();
    bus.flush().await.unwrap();
    for i in 0..20 {
        bus.publish(subject.clone(), &Unplug { node: format!("n{i}"), unplugged: true, clients: false }).await.unwrap();
    }
    bus.flush().await.unwrap();
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while got < 20 {
        tokio::select! {
            Some(_) = a.next() => got += 1,
            Some(_) = b.next() => got += 1,
            _ = tokio::time::sleep_until(deadline) => panic!("only {got} of 20 delivered"),
        }
    }
    // Nothing more arrives: each message went to exactly one member.
    let extra = tokio::time::timeout(Duration::from_millis(200), async {
        tokio::select! { m = a.next() => m.is_some(), m = b.next() => m.is_some() }
    })
    .await;
    assert!(extra.is_err(), "a message was delivered twice");
}
