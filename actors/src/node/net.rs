//! The node's view of the network: the typed bus plus the unplug switch.
//!
//! Unplugging is a partition: an unplugged node drops every cluster-internal message
//! (heartbeats, votes, acks, invalidations, fills) it would send or receive, while it stays
//! connected and keeps publishing events. Every internal send goes through [`Net`], and
//! every intake checks [`Net::unplugged`], so the rule lives here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use instaface_bus::messages::{Event, EventKind};
use instaface_bus::{Bus, BusError, NodeId, Subjects};
use serde::{de::DeserializeOwned, Serialize};

use super::metrics::Metrics;

#[derive(Clone)]
pub struct Net {
    bus: Bus,
    node: NodeId,
    unplugged: Arc<AtomicBool>,
    metrics: Metrics,
}

impl Net {
    pub fn new(bus: Bus, node: NodeId, metrics: Metrics) -> Net {
        Net {
            bus,
            node,
            unplugged: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    pub fn subjects(&self) -> &Subjects {
        self.bus.subjects()
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    pub fn unplugged(&self) -> bool {
        self.unplugged.load(Ordering::SeqCst)
    }

    /// Sets the unplug switch; returns whether it changed.
    pub fn set_unplugged(&self, unplugged: bool) -> bool {
        let was = self.unplugged.swap(unplugged, Ordering::SeqCst);
        self.metrics.unplugged.set(unplugged as i64);
        was != unplugged
    }

    /// Counts a message dropped because the node is unplugged (or for another `reason`).
    pub fn dropped(&self, reason: &str) {
        self.metrics
            .dropped_messages
            .with_label_values(&[reason])
            .inc();
    }

    /// Publishes a cluster-internal message, unless unplugged.
    pub async fn send<T: Serialize + ?Sized>(
        &self,
        subject: String,
        msg: &T,
    ) -> Result<(), BusError> {
        if self.unplugged() {
            self.dropped("unplugged_out");
            return Ok(());
        }
        self.bus.publish(subject, msg).await
    }

    /// A cluster-internal request; fails at once when unplugged.
    pub async fn request<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        subject: String,
        msg: &T,
        timeout: Duration,
    ) -> Result<R, BusError> {
        if self.unplugged() {
            self.dropped("unplugged_out");
            return Err(BusError::Timeout {
                subject,
                timeout: Duration::ZERO,
            });
        }
        let reply = self.bus.request(subject, msg, timeout).await?;
        if self.unplugged() {
            // Unplugged while the request was out: the answer is dropped like any input.
            self.dropped("unplugged_in");
            return Err(BusError::Timeout {
                subject: "<unplugged>".into(),
                timeout,
            });
        }
        Ok(reply)
    }

    /// Publishes a monitoring event on `P.events` (events flow even while unplugged).
    pub async fn event(&self, term: u64, kind: EventKind) {
        let event = Event::new(self.node.clone(), term, kind);
        if let Err(e) = self.bus.publish(self.subjects().events(), &event).await {
            tracing::debug!(error = %e, "event not published");
        }
    }
}
