//! A small typed client over async-nats: every payload goes through [`crate::codec`], and
//! decode failures, timeouts and lost connections come back as [`BusError`] values.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde::{de::DeserializeOwned, Serialize};

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
}

/// The typed client. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    subjects: Subjects,
}

impl Bus {
    /// Connects with the cluster connect options of [`BusArgs::nats_options`]. Returns at
    /// once even if NATS is down; the client keeps trying in the background.
    pub async fn connect(args: &BusArgs, name: &str) -> Result<Bus, BusError> {
        let opts = args.nats_options(name).await.map_err(BusError::Config)?;
        let servers = args.nats_servers().map_err(BusError::Config)?;
        let client = opts.connect(servers).await.map_err(|e| BusError::Connect(e.to_string()))?;
        Ok(Bus { client, subjects: Subjects::new(args.prefix.clone()) })
    }

    pub fn from_client(client: async_nats::Client, subjects: Subjects) -> Bus {
        Bus { client, subjects }
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
            Err(e) => Err(match e.kind() {
                async_nats::RequestErrorKind::TimedOut => BusError::Timeout { subject, timeout },
                async_nats::RequestErrorKind::NoResponders => BusError::NoResponders { subject },
                _ => BusError::Request { subject, reason: e.to_string() },
            }),
        }
    }

    /// Subscribes to `subject`; each message arrives decoded as `T` (or as the error).
    pub async fn subscribe<T: DeserializeOwned>(&self, subject: String) -> Result<Subscription<T>, BusError> {
        let inner = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| BusError::Subscribe { subject, reason: e.to_string() })?;
        Ok(Subscription { inner, _t: std::marker::PhantomData })
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
        Ok(Subscription { inner, _t: std::marker::PhantomData })
    }

    /// A fresh inbox subject for replies.
    pub fn new_inbox(&self) -> String {
        self.client.new_inbox()
    }

    /// Flushes buffered publishes.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.client
            .flush()
            .await
            .map_err(|e| BusError::Publish { subject: "<flush>".into(), reason: e.to_string() })
    }
}

/// A message received on a typed subscription.
#[derive(Debug)]
pub struct Incoming<T> {
    pub subject: String,
    pub reply: Option<String>,
    pub payload: Result<T, DecodeError>,
}

/// A typed subscription: a stream of [`Incoming`] messages.
pub struct Subscription<T> {
    inner: async_nats::Subscriber,
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
        Pin::new(&mut self.inner).poll_next(cx).map(|m| {
            m.map(|msg| Incoming {
                subject: msg.subject.to_string(),
                reply: msg.reply.map(|r| r.to_string()),
                payload: decode(&msg.payload),
            })
        })
    }
}
