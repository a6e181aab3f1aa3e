//! A small typed client over async-nats: every payload goes through [`crate::codec`], and
//! decode failures, timeouts and lost connections come back as [`BusError`] values.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde::{de::DeserializeOwned, Serialize};

use crate::auth::{ClusterKey, MAC_HEADER};
use crate::codec::{decode, encode, DecodeError};
use crate::config::BusArgs;
use crate::Subjects;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("nats connect: {0}")]
    Connect(String),
    #[error("nats publish to {subject}: {reason}")]
    Publish { subject: String, reason: String },
    #[error("nats subscribe to {subject}: {reason}")]
    Subscribe { subject: String, reason: String },
    #[error("no reply from {subject} within {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    #[error("no responders on {subject}")]
    NoResponders { subject: String },
    #[error("request to {subject}: {reason}")]
    Request { subject: String, reason: String },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the reply from {subject} is not authenticated by the cluster key")]
    Unauthenticated { subject: String },
}

/// The typed client. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    subjects: Subjects,
    key: Option<Arc<ClusterKey>>,
}

impl Bus {
    /// Connects with the cluster connect options of [`BusArgs::nats_options`]. Returns at
    /// once even if NATS is down; the client keeps trying in the background.
    pub async fn connect(args: &BusArgs, name: &str) -> Result<Bus, BusError> {
        let opts = args.nats_options(name).await.map_err(BusError::Config)?;
        let servers = args.nats_servers().map_err(BusError::Config)?;
        let client = opts.connect(servers).await.map_err(|e| BusError::Connect(e.to_string()))?;
        let key = args.cluster_key.clone().map(Arc::new);
        Ok(Bus { client, subjects: Subjects::new(args.prefix.clone()), key })
    }

    /// The same connection, addressing shard `k`'s leader group.
    pub fn for_shard(&self, k: crate::shards::ShardId, shards: crate::shards::Shards) -> Bus {
        Bus { client: self.client.clone(), subjects: self.subjects.for_shard(k, shards), key: self.key.clone() }
    }

    pub fn from_client(client: async_nats::Client, subjects: Subjects) -> Bus {
        Bus { client, subjects, key: None }
    }

    /// Whether cluster messages are authenticated (a cluster key is set).
    pub fn authenticates(&self) -> bool {
        self.key.is_some()
    }

    /// The MAC header for a message, when a cluster key is set.
    fn mac_headers(&self, subject: &str, payload: &[u8]) -> Option<async_nats::HeaderMap> {
        let key = self.key.as_ref()?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(MAC_HEADER, key.sign(subject, payload).as_str());
        Some(headers)
    }

    /// Publishes a cluster message (see [`crate::auth`]): with the MAC when a key is set.
    pub async fn publish_signed<T: Serialize + ?Sized>(&self, subject: String, msg: &T) -> Result<(), BusError> {
        let payload = Bytes::from(encode(msg));
        let result = match self.mac_headers(&subject, &payload) {
            Some(headers) => self.client.publish_with_headers(subject.clone(), headers, payload).await,
            None => self.client.publish(subject.clone(), payload).await,
        };
        result.map_err(|e| BusError::Publish { subject, reason: e.to_string() })
    }

    /// A cluster request: signed like [`Bus::publish_signed`], and the reply must carry a
    /// valid MAC too when a key is set ([`BusError::Unauthenticated`] otherwise).
    pub async fn request_signed<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        subject: String,
        msg: &T,
        timeout: Duration,
    ) -> Result<R, BusError> {
        let payload = Bytes::from(encode(msg));
        let mut request = async_nats::Request::new().timeout(Some(timeout));
        if let Some(headers) = self.mac_headers(&subject, &payload) {
            request = request.headers(headers);
        }
        let request = request.payload(payload);
        match self.client.send_request(subject.clone(), request).await {
            Ok(reply) => {
                if let Some(key) = &self.key {
                    if !authentic(key, &reply) {
                        return Err(BusError::Unauthenticated { subject });
                    }
                }
                Ok(decode(&reply.payload)?)
            }
            Err(e) => Err(request_error(e, subject, timeout)),
        }
    }

    /// Subscribes to cluster messages on `subject`: with a key set, a message without a
    /// valid MAC arrives as [`Incoming::forged`] with no payload.
    pub async fn subscribe_signed<T: DeserializeOwned>(&self, subject: String) -> Result<Subscription<T>, BusError> {
        let mut sub = self.subscribe(subject).await?;
        sub.verify = self.key.clone();
        Ok(sub)
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// The underlying async-nats client, for what this wrapper does not cover.
    pub fn raw(&self) -> &async_nats::Client {
        &self.client
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Publishes `msg` on `subject`.
    pub async fn publish<T: Serialize + ?Sized>(&self, subject: String, msg: &T) -> Result<(), BusError> {
        let payload = Bytes::from(encode(msg));
        self.client
            .publish(subject.clone(), payload)
            .await
            .map_err(|e| BusError::Publish { subject, reason: e.to_string() })
    }

    /// Publishes `msg` on `subject` asking for replies on `reply`.
    pub async fn publish_with_reply<T: Serialize + ?Sized>(
        &self,
        subject: String,
        reply: String,
        msg: &T,
    ) -> Result<(), BusError> {
        let payload = Bytes::from(encode(msg));
        self.client
            .publish_with_reply(subject.clone(), reply, payload)
            .await
            .map_err(|e| BusError::Publish { subject, reason: e.to_string() })
    }

    /// Sends `msg` as a request and decodes the first reply as `R`.
    pub async fn request<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        subject: String,
        msg: &T,
        timeout: Duration,
    ) -> Result<R, BusError> {
        let payload = Bytes::from(encode(msg));
        let request = async_nats::Request::new().payload(payload).timeout(Some(timeout));
        match self.client.send_request(subject.clone(), request).await {
            Ok(reply) => Ok(decode(&reply.payload)?),
            Err(e) => Err(request_error(e, subject, timeout)),
        }
    }

    /// Subscribes to `subject`; each message arrives decoded as `T` (or as the error).
    pub async fn subscribe<T: DeserializeOwned>(&self, subject: String) -> Result<Subscription<T>, BusError> {
        let inner = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| BusError::Subscribe { subject, reason: e.to_string() })?;
        Ok(Subscription { inner, verify: None, _t: std::marker::PhantomData })
    }

    /// Subscribes to `subject` in queue group `group`: each message reaches one member.
    pub async fn queue_subscribe<T: DeserializeOwned>(
        &self,
        subject: String,
        group: &str,
    ) -> Result<Subscription<T>, BusError> {
        let inner = self
            .client
            .queue_subscribe(subject.clone(), group.to_string())
            .await
            .map_err(|e| BusError::Subscribe { subject, reason: e.to_string() })?;
        Ok(Subscription { inner, verify: None, _t: std::marker::PhantomData })
    }

    /// A fresh inbox subject for replies.
    pub fn new_inbox(&self) -> String {
        self.client.new_inbox()
    }

    /// Flushes buffered publishes.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(|e| BusError::Publish { subject: "<flush>".into(), reason: e.to_string() })
    }
}

fn request_error(e: async_nats::RequestError, subject: String, timeout: Duration) -> BusError {
    match e.kind() {
        async_nats::RequestErrorKind::TimedOut => BusError::Timeout { subject, timeout },
        async_nats::RequestErrorKind::NoResponders => BusError::NoResponders { subject },
        _ => BusError::Request { subject, reason: e.to_string() },
    }
}

/// Whether `msg` carries a valid MAC for its subject and payload.
fn authentic(key: &ClusterKey, msg: &async_nats::Message) -> bool {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(MAC_HEADER))
        .is_some_and(|mac| key.verify(msg.subject.as_str(), &msg.payload, mac.as_str()))
}

/// A message received on a typed subscription.
#[derive(Debug)]
pub struct Incoming<T> {
    pub subject: String,
    pub reply: Option<String>,
    pub payload: Result<T, DecodeError>,
    /// On a signed subscription: the message had no valid MAC (its payload is then an
    /// error and must be dropped).
    pub forged: bool,
}

/// A typed subscription: a stream of [`Incoming`] messages.
pub struct Subscription<T> {
    inner: async_nats::Subscriber,
    /// Set on signed subscriptions with a key: messages must carry a valid MAC.
    verify: Option<Arc<ClusterKey>>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> Subscription<T> {
    /// Stops the subscription (the stream then ends).
    pub async fn unsubscribe(&mut self) {
        let _ = self.inner.unsubscribe().await;
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = Incoming<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let verify = self.verify.clone();
        Pin::new(&mut self.inner).poll_next(cx).map(|m| {
            m.map(|msg| {
                let forged = verify.as_ref().is_some_and(|key| !authentic(key, &msg));
                let payload = if forged {
                    Err(DecodeError {
                        what: "authenticated message",
                        len: msg.payload.len(),
                        reason: "no valid MAC for the cluster key".into(),
                    })
                } else {
                    decode(&msg.payload)
                };
                Incoming { subject: msg.subject.to_string(), reply: msg.reply.map(|r| r.to_string()), payload, forged }
            })
        })
    }
}
