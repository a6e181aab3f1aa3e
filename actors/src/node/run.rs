//! Starting and stopping a node: connects to NATS and Redis (retrying while they are
//! away), starts the supervision tree, the NATS intake, the micro service and the metrics
//! endpoint, and shuts down in order on SIGTERM or Ctrl-C (a leader hands over first).
//! Also the `members` and `tap` subcommands.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use instaface_bus::membership::Membership;
use instaface_bus::{Bus, Subjects};
use ractor::Actor;
use tokio::sync::watch;

use super::config::NodeConfig;
use super::messages::SupervisorMsg;
use super::metrics::Metrics;
use super::net::Net;
use super::node_cache::NodeCache;
use super::supervisor::NodeSupervisor;
use super::view::ClusterView;
use super::{intake, service, ActorNames, NodeContext};
use instaface_bus::config::BusArgs;

/// Connects to Redis, retrying with backoff until it answers.
pub async fn connect_membership(bus: &BusArgs) -> Membership {
    let subjects = Subjects::new(bus.prefix.clone());
    let mut delay = Duration::from_millis(100);
    loop {
        match Membership::connect(&bus.redis_url, &subjects).await {
            Ok(m) => return m,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "redis unreachable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
        }
    }
}

/// Runs the node until SIGTERM/SIGINT (exit 0 after an orderly shutdown) or until a
/// supervisor gives up (an error).
///
/// A node hosts one member of every shard's leader group (`SHARDS`, one by default): each
/// group is a whole supervision tree with its own context — subjects, database, actors,
/// metrics, term and vote — sharing the process's NATS connection, membership, unplug
/// switches and in-flight bound. The groups never share protocol state.
pub async fn run(cfg: NodeConfig) -> anyhow::Result<()> {
    let span = tracing::info_span!("node", node = %cfg.id);
    let _enter = span.enter();
    let shards = cfg.bus.shards;
    let gateway_listener = match &cfg.gateway {
        Some(gw) => Some(super::gateway::bind(gw).await?),
        None => None,
    };
    let bus = Bus::connect(&cfg.bus, &format!("instaface-node-{}", cfg.id)).await?;
    let membership = connect_membership(&cfg.bus).await;
    let inflight = Arc::new(tokio::sync::Semaphore::new(cfg.max_inflight_requests));
    let origin = Instant::now();
    let label = |k| shards.split().then_some(k);
    let root_metrics = Metrics::new(&cfg.id, label(0));
    let root_net = Net::new(bus.for_shard(0, shards), cfg.id.clone(), root_metrics.clone());
    let views: Vec<watch::Sender<ClusterView>> =
        shards.all().map(|_| watch::channel(ClusterView::initial()).0).collect();
    let all_views = Arc::new(views.iter().map(watch::Sender::subscribe).collect::<Vec<_>>());
    // Each group's bus, metrics and actor names, then its cache (which fills through them),
    // then its context (which sees every group's cache: queries cross shards).
    let parts: Vec<(Net, Metrics, ActorNames)> = shards
        .all()
        .map(|k| {
            let metrics = if k == 0 { root_metrics.clone() } else { Metrics::new(&cfg.id, label(k)) };
            let net = root_net.for_group(bus.for_shard(k, shards), metrics.clone());
            (net, metrics, ActorNames::new(&cfg.id, label(k)))
        })
        .collect();
    let caches: Arc<Vec<NodeCache>> = Arc::new(
        parts
            .iter()
            .map(|(net, metrics, names)| {
                NodeCache::new(cfg.cache_capacity, net.clone(), names.store.clone(), metrics.clone())
            })
            .collect(),
    );
    let groups: Vec<NodeContext> = shards
        .all()
        .zip(views)
        .zip(parts)
        .map(|((k, view), (net, metrics, names))| NodeContext {
            net,
            membership: membership.clone(),
            metrics,
            view,
            applied_seq: Arc::new(AtomicU64::new(0)),
            origin,
            names,
            counters: Arc::new(Mutex::new(Default::default())),
            inflight: inflight.clone(),
            groups: all_views.clone(),
            caches: caches.clone(),
            store: watch::channel(None).0,
            intents_written: Arc::new(tokio::sync::Notify::new()),
            cfg: Arc::new(cfg.for_shard(k)),
        })
        .collect();
    tracing::info!(
        prefix = cfg.bus.prefix,
        shards = shards.count(),
        heartbeat_ms = cfg.heartbeat.as_millis() as u64,
        election_ms = ?(cfg.election_min, cfg.election_max),
        lease_ms = cfg.lease.as_millis() as u64,
        invalidation = ?cfg.invalidation,
        "starting node"
    );
    if let Some(addr) = cfg.metrics_addr {
        let all = groups.iter().map(|g| g.metrics.clone()).collect();
        tokio::spawn(async move {
            if let Err(e) = Metrics::serve(all, addr).await {
                tracing::error!(%addr, error = %e, "metrics endpoint failed");
            }
        });
    }

    let mut supervisors = Vec::new();
    let mut done = futures::stream::FuturesUnordered::new();
    let mut tasks = Vec::new();
    for ctx in &groups {
        let (supervisor, supervisor_done) =
            Actor::spawn(Some(ctx.names.supervisor.clone()), NodeSupervisor, ctx.clone()).await?;
        supervisors.push((supervisor, ctx.clone()));
        done.push(supervisor_done);
        tasks.extend(intake::start(ctx).await?);
        tasks.extend(super::requests::start(ctx).await?);
        tasks.push(intake::spawn_membership(ctx));
        if shards.split() {
            tasks.push(super::delivery::spawn(ctx.clone()));
        }
        match service::start(ctx, ctx.counters.clone()).await {
            Ok(t) => tasks.push(t),
            Err(e) => tracing::warn!(error = %e, shard = ctx.cfg.shard, "NATS micro service not registered"),
        }
    }

    if shards.split() && cfg.balance_leaders {
        tasks.push(super::balance::spawn(groups.clone()));
    }
    if let (Some(gw), Some(listener)) = (&cfg.gateway, gateway_listener) {
        tasks.push(super::gateway::start(gw, listener, &groups).await?);
    }

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        _ = sigterm.recv() => Ok("SIGTERM"),
        _ = tokio::signal::ctrl_c() => Ok("Ctrl-C"),
        _ = done.next() => Err(anyhow::anyhow!("a node supervisor stopped (an actor kept failing)")),
    };
    match result {
        Ok(why) => {
            tracing::info!(why, "shutting down");
            // Every group's leader hands over at once, so the shutdown takes one handover.
            let shutdowns = supervisors
                .iter()
                .map(|(supervisor, ctx)| supervisor.call(SupervisorMsg::Shutdown, Some(ctx.cfg.election_max * 2)));
            futures::future::join_all(shutdowns).await;
            for t in &tasks {
                t.abort();
            }
            let _ = bus.flush().await;
            Ok(())
        }
        Err(e) => {
            for t in &tasks {
                t.abort();
            }
            Err(e)
        }
    }
}

/// `instaface-node members ID…`: adds the expected members to the Redis membership.
pub async fn members(bus: &BusArgs, ids: Vec<String>) -> anyhow::Result<()> {
    for id in &ids {
        anyhow::ensure!(instaface_bus::valid_node_id(id), "member id {id:?} must be 1-64 characters of [A-Za-z0-9_-]");
    }
    let membership = Membership::connect(&bus.redis_url, &Subjects::new(bus.prefix.clone())).await?;
    membership.ensure(&ids, "members-command").await?;
    let all = membership.list().await?;
    println!("members of {}: {}", bus.prefix, all.keys().cloned().collect::<Vec<_>>().join(","));
    Ok(())
}

/// `instaface-node tap`: prints every message under the prefix as one JSON line
/// (`{"subject", "message"}`), decoding the MessagePack for people without a decoder.
pub async fn tap(bus: &BusArgs, only: Option<String>) -> anyhow::Result<()> {
    let client = Bus::connect(bus, "instaface-tap").await?;
    let subject = match &only {
        Some(suffix) => format!("{}.{}", bus.prefix, suffix),
        None => format!("{}.>", bus.prefix),
    };
    let mut sub = client.raw().subscribe(subject.clone()).await?;
    eprintln!("tapping {subject} (Ctrl-C to stop)");
    while let Some(msg) = sub.next().await {
        let decoded = rmp_serde::from_slice::<serde_json::Value>(&msg.payload);
        let line = match decoded {
            Ok(message) => serde_json::json!({"subject": msg.subject.as_str(), "message": message}),
            Err(_) => serde_json::json!({
                "subject": msg.subject.as_str(),
                "undecodable": true,
                "bytes": msg.payload.len(),
            }),
        };
        println!("{line}");
    }
    Ok(())
}
