//! The node's view of the network: the typed bus plus the two unplug switches.
//!
//! Unplugging is a partition from the *peers*: an unplugged node drops every
//! cluster-internal message (heartbeats, votes, acks, invalidations, fills) it would send
//! or receive, while clients still reach it — it answers them exactly as far as its own
//! state allows (a follower serves reads until its read lease runs out), and it keeps
//! publishing events. Isolating it from clients too ([`Net::clients_cut`]) also drops
//! every client request. Every internal send goes through [`Net`], and every intake checks
//! the switch for its audience, so the rule lives here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instaface_bus::messages::{Event, EventKind};
use instaface_bus::{Bus, BusError, NodeId, Subjects};
use serde::{de::DeserializeOwned, Serialize};

use super::metrics::Metrics;

#[derive(Clone)]
pub struct Net {
    bus: Bus,
    node: NodeId,
    unplugged: Arc<AtomicBool>,
    clients_cut: Arc<AtomicBool>,
    metrics: Metrics,
    reject_log: Arc<Mutex<RejectLog>>,
}

/// How long refusals are only counted after one was logged.
const REJECT_LOG_QUIET: Duration = Duration::from_secs(5);

#[derive(Default)]
struct RejectLog {
    last: Option<Instant>,
    suppressed: u64,
}

/// Who a subscription serves: peers (cluster-internal traffic) or clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    Peers,
    Clients,
}

impl Net {
    pub fn new(bus: Bus, node: NodeId, metrics: Metrics) -> Net {
        Net {
            bus,
            node,
            unplugged: Arc::new(AtomicBool::new(false)),
            clients_cut: Arc::new(AtomicBool::new(false)),
            metrics,
            reject_log: Arc::new(Mutex::new(RejectLog::default())),
        }
    }

    /// The same node's network for another leader group it hosts (another shard): its own
    /// subjects and metrics, the same unplug switches — a node is unplugged as a whole.
    pub fn for_group(&self, bus: Bus, metrics: Metrics) -> Net {
        Net { bus, metrics, ..self.clone() }
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

    /// Cut off from its peers.
    pub fn unplugged(&self) -> bool {
        self.unplugged.load(Ordering::SeqCst)
    }

    /// Cut off from clients as well (total isolation).
    pub fn clients_cut(&self) -> bool {
        self.clients_cut.load(Ordering::SeqCst)
    }

    /// Whether a message for `audience` is dropped right now.
    pub fn cut_from(&self, audience: Audience) -> bool {
        match audience {
            Audience::Peers => self.unplugged(),
            Audience::Clients => self.clients_cut(),
        }
    }

    /// Unplugs (from peers; with `clients`, from clients too) or plugs back in; returns
    /// whether anything changed.
    pub fn set_unplugged(&self, unplugged: bool, clients: bool) -> bool {
        let clients = unplugged && clients;
        let was = self.unplugged.swap(unplugged, Ordering::SeqCst);
        let was_clients = self.clients_cut.swap(clients, Ordering::SeqCst);
        self.metrics.unplugged.set(unplugged as i64 + clients as i64);
        was != unplugged || was_clients != clients
    }

    /// Counts a message dropped because the node is unplugged (or for another `reason`).
    pub fn dropped(&self, reason: &str) {
        self.metrics.dropped_messages.with_label_values(&[reason]).inc();
    }

    /// Counts a message refused for `reason` (forged, from a non-member, …) and logs it,
    /// once per burst: an attacker must not be able to flood the log.
    pub fn rejected(&self, reason: &str, detail: impl std::fmt::Display) {
        self.dropped(reason);
        let now = Instant::now();
        let mut log = self.reject_log.lock().unwrap_or_else(|p| p.into_inner());
        let quiet = log.last.is_none_or(|t| now.duration_since(t) >= REJECT_LOG_QUIET);
        if quiet {
            let suppressed = std::mem::take(&mut log.suppressed);
            log.last = Some(now);
            drop(log);
            tracing::warn!(reason, %detail, suppressed, "message refused");
        } else {
            log.suppressed += 1;
        }
    }

    /// Publishes a cluster-internal message, unless unplugged; with the cluster key, it
    /// carries its MAC.
    pub async fn send<T: Serialize + ?Sized>(&self, subject: String, msg: &T) -> Result<(), BusError> {
        if self.unplugged() {
            self.dropped("unplugged_out");
            return Ok(());
        }
        self.bus.publish_signed(subject, msg).await
    }

    /// A cluster-internal request (signed, and its reply checked, with the cluster key);
    /// fails at once when unplugged.
    pub async fn request<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        subject: String,
        msg: &T,
        timeout: Duration,
    ) -> Result<R, BusError> {
        if self.unplugged() {
            self.dropped("unplugged_out");
            return Err(BusError::Timeout { subject, timeout: Duration::ZERO });
        }
        let reply = match self.bus.request_signed(subject, msg, timeout).await {
            Err(BusError::Unauthenticated { subject }) => {
                self.rejected("unauthenticated", format!("reply on {subject}"));
                return Err(BusError::Unauthenticated { subject });
            }
            other => other?,
        };
        if self.unplugged() {
            // Unplugged while the request was out: the answer is dropped like any input.
            self.dropped("unplugged_in");
            return Err(BusError::Timeout { subject: "<unplugged>".into(), timeout });
        }
        Ok(reply)
    }

    /// Publishes a monitoring event on `P.events` (events flow even while unplugged).
    pub async fn event(&self, term: u64, kind: EventKind) {
        let event = Event::new(self.node.clone(), term, kind);
        let event = event.in_shard(self.subjects().shard());
        if let Err(e) = self.bus.publish(self.subjects().events(), &event).await {
            tracing::debug!(error = %e, "event not published");
        }
    }
}
