//! The node's configuration: flags with environment fallbacks, checked at start so an
//! invalid setting fails with one clear line naming it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use instaface_bus::config::BusArgs;
use instaface_bus::shards::{ShardId, Shards};
use instaface_bus::NodeId;

use crate::election::ElectionConfig;
use crate::intents::CourierBug;
pub use crate::invalidation::InvalidationMode;
use crate::invalidation::PlantedBug;

/// `instaface-node`: one member of an Instaface cluster.
#[derive(Parser, Clone, Debug)]
#[command(name = "instaface-node", version, about)]
pub struct NodeArgs {
    #[command(flatten)]
    pub bus: BusArgs,

    /// This node's id (one NATS subject token, e.g. `n1`).
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,

    /// Comma-separated ids of the cluster's members, added to the Redis membership before
    /// the node may campaign (every launcher passes it).
    #[arg(long, env = "MEMBERS", value_delimiter = ',')]
    pub members: Vec<String>,

    /// MySQL URL; only the leader connects.
    #[arg(long, env = "MYSQL_URL", default_value = "mysql://root@127.0.0.1:3306/instaface")]
    pub mysql_url: String,

    /// Comma-separated MySQL URLs, one per shard in order (`SHARDS`), on one server or
    /// several; shard `k` uses entry `k`, and entries past the last shard are not used.
    /// Unset, shard 0 uses `MYSQL_URL` and shard `k` the database named `MYSQL_URL`'s with
    /// `_s<k>` appended, on the same server.
    #[arg(long, env = "SHARD_MYSQL_URLS", value_delimiter = ',')]
    pub shard_mysql_urls: Vec<String>,

    /// With several shards: a node leading more shards' groups than its share hands
    /// leaderships over once the cluster is stable (false: leave them where elections put
    /// them).
    #[arg(long, env = "BALANCE_LEADERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub balance_leaders: bool,

    /// Heartbeat interval in ms.
    #[arg(long, env = "HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,

    /// Lower bound of the randomized election timeout in ms.
    #[arg(long, env = "ELECTION_MIN_MS", default_value_t = 750)]
    pub election_min_ms: u64,

    /// Upper bound of the randomized election timeout in ms.
    #[arg(long, env = "ELECTION_MAX_MS", default_value_t = 1000)]
    pub election_max_ms: u64,

    /// Read lease in ms (default: 95 % of ELECTION_MIN_MS / (1 + CLOCK_DRIFT)^2).
    #[arg(long, env = "LEASE_MS")]
    pub lease_ms: Option<u64>,

    /// The clock drift rate the leases allow for (0.05 = clocks may run 5 % apart).
    #[arg(long, env = "CLOCK_DRIFT", default_value_t = 0.05)]
    pub drift: f64,

    /// `lease` (default: no acknowledged write is ever read stale) or `async`.
    #[arg(long, env = "INVALIDATION", value_enum, default_value_t = InvalidationMode::Lease)]
    pub invalidation: InvalidationMode,

    /// Cache capacity, in entries, per node.
    #[arg(long, env = "CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: usize,

    /// Newest items of each association list a cache entry keeps.
    #[arg(long, env = "ASSOC_WINDOW", default_value_t = 1000)]
    pub assoc_window: u32,

    /// Requests (reads, writes, fills) handled at once; past it they are refused with
    /// "overloaded" at once instead of queueing without bound.
    #[arg(long, env = "MAX_INFLIGHT_REQUESTS", default_value_t = 1024)]
    pub max_inflight_requests: usize,

    /// Serve Prometheus metrics at http://<addr>/metrics.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Serve the REST gateway in this process too, on this address: its reads are served
    /// from this node's own cache (under its read lease) without a hop over NATS, and go
    /// over the bus like any gateway's when this node may not serve them.
    #[arg(long, env = "GATEWAY_LISTEN")]
    pub gateway_listen: Option<SocketAddr>,

    /// The in-node gateway's own NATS connection (default: the node's `NATS_URL`); with
    /// NATS roles, the gateway role's URL, so the gateway keeps its own permissions.
    #[arg(long, env = "GATEWAY_NATS_URL", hide_env_values = true)]
    pub gateway_nats_url: Option<String>,

    /// The in-node gateway's inbox prefix (with NATS roles, `_INBOX_gateway`).
    #[arg(long, env = "GATEWAY_NATS_INBOX_PREFIX", value_parser = instaface_bus::config::parse_prefix)]
    pub gateway_inbox_prefix: Option<String>,

    /// The in-node gateway's admin bearer token (as the gateway's `ADMIN_TOKEN`; without
    /// it, its admin routes answer loopback clients only).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Log filter (tracing's EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,

    /// Where the node keeps its term and vote (`<dir>/<prefix>.<node id>.vote.json`,
    /// fsynced on every change); must survive restarts of the node.
    #[arg(long, env = "STATE_DIR", default_value = "state")]
    pub state_dir: PathBuf,

    /// Enables test hooks (`P.node.<id>.debug.panic`); never in production.
    #[arg(long, env = "INSTAFACE_TEST_HOOKS", default_value_t = false)]
    pub test_hooks: bool,

    /// Breaks one rule of the protocol on purpose, for negative controls (requires test
    /// hooks): answer-uncovered, confirm-with-gap, answer-unchanged-at-once,
    /// skip-ready-gate, forget-earlier-leases.
    #[arg(long, env = "INSTAFACE_PLANTED_BUG")]
    pub planted_bug: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Run the node (the default).
    Run,
    /// Write the expected members to the Redis membership and exit.
    Members {
        /// The member ids to add.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print every message under the prefix, decoded, as one JSON line each.
    Tap {
        /// Only subjects under this suffix (e.g. `heartbeat` or `events`).
        #[arg(long)]
        only: Option<String>,
    },
}

/// The validated timing and behaviour of a running node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub members: Vec<NodeId>,
    pub bus: BusArgs,
    /// The shard whose leader group this configuration runs (0 with one shard).
    pub shard: ShardId,
    /// This group's database: `shard_mysql_urls[shard]`.
    pub mysql_url: String,
    /// Every shard's database, in shard order (one entry with one shard).
    pub shard_mysql_urls: Vec<String>,
    /// Spread the shards' leaderships over the nodes ([`crate::node::balance`]).
    pub balance_leaders: bool,
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    pub lease: Duration,
    pub drift: f64,
    pub invalidation: InvalidationMode,
    pub cache_capacity: usize,
    pub assoc_window: u32,
    pub metrics_addr: Option<SocketAddr>,
    pub max_inflight_requests: usize,
    pub state_dir: PathBuf,
    pub test_hooks: bool,
    pub planted_bug: Option<PlantedBug>,
    /// A rule of intent delivery broken on purpose (tests only): `intent-mark-on-send`,
    /// `intent-never-reload`, given as `INSTAFACE_PLANTED_BUG`.
    pub courier_bug: Option<CourierBug>,
    /// The REST gateway this process serves too (`GATEWAY_LISTEN`), if any.
    pub gateway: Option<InNodeGateway>,
}

/// The REST gateway a node serves in its own process (`GATEWAY_LISTEN`).
#[derive(Clone, Debug)]
pub struct InNodeGateway {
    /// `GATEWAY_LISTEN`.
    pub listen: SocketAddr,
    /// Its own NATS connection's settings: the node's, with the gateway's URL and inbox
    /// prefix when given.
    pub bus: BusArgs,
    /// `ADMIN_TOKEN` (an empty one is none).
    pub admin_token: Option<String>,
}

impl NodeArgs {
    /// Checks every setting; the error is one line naming the setting.
    pub fn validate(&self) -> Result<NodeConfig, String> {
        let id = self.node_id.clone().ok_or("NODE_ID is required (e.g. NODE_ID=n1)")?;
        if !instaface_bus::valid_node_id(&id) {
            return Err(format!("NODE_ID {id:?} must be 1-64 characters of [A-Za-z0-9_-]"));
        }
        let mut members = Vec::new();
        for m in self.members.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
            if !instaface_bus::valid_node_id(m) {
                return Err(format!("MEMBERS entry {m:?} must be 1-64 characters of [A-Za-z0-9_-]"));
            }
            members.push(m.to_string());
        }
        if self.heartbeat_ms == 0 {
            return Err("HEARTBEAT_MS must be at least 1".into());
        }
        if self.election_min_ms <= self.heartbeat_ms * 2 {
            return Err(format!(
                "ELECTION_MIN_MS ({}) must be more than twice HEARTBEAT_MS ({})",
                self.election_min_ms, self.heartbeat_ms
            ));
        }
        if self.election_max_ms <= self.election_min_ms {
            return Err(format!(
                "ELECTION_MAX_MS ({}) must be above ELECTION_MIN_MS ({})",
                self.election_max_ms, self.election_min_ms
            ));
        }
        if !(0.0..0.5).contains(&self.drift) {
            return Err(format!("CLOCK_DRIFT ({}) must be in [0, 0.5)", self.drift));
        }
        let election_min = Duration::from_millis(self.election_min_ms);
        let max_lease = election_min.as_secs_f64() / (1.0 + self.drift).powi(2);
        let lease = match self.lease_ms {
            Some(ms) => Duration::from_millis(ms),
            None => ElectionConfig::default_lease(election_min, self.drift),
        };
        if lease.as_secs_f64() >= max_lease {
            return Err(format!(
                "LEASE_MS ({}) must be below ELECTION_MIN_MS / (1 + CLOCK_DRIFT)^2 = {:.0} ms",
                lease.as_millis(),
                max_lease * 1000.0
            ));
        }
        if lease.as_millis() <= self.heartbeat_ms as u128 {
            return Err(format!("LEASE_MS ({}) must be above HEARTBEAT_MS ({})", lease.as_millis(), self.heartbeat_ms));
        }
        if self.cache_capacity == 0 {
            return Err("CACHE_CAPACITY must be at least 1".into());
        }
        if self.assoc_window == 0 {
            return Err("ASSOC_WINDOW must be at least 1".into());
        }
        if !self.mysql_url.starts_with("mysql://") {
            return Err(format!("MYSQL_URL {:?} must start with mysql://", self.mysql_url));
        }
        let shard_mysql_urls = shard_urls(&self.mysql_url, &self.shard_mysql_urls, self.bus.shards)?;
        self.bus.nats_servers()?;
        let (planted_bug, courier_bug) = match self.planted_bug.as_deref() {
            None => (None, None),
            Some(_) if !self.test_hooks => {
                return Err("INSTAFACE_PLANTED_BUG needs INSTAFACE_TEST_HOOKS=true (tests only)".into())
            }
            Some("intent-mark-on-send") => (None, Some(CourierBug::MarkOnSend)),
            Some("intent-never-reload") => (None, Some(CourierBug::NeverReload)),
            Some(name) => (Some(name.parse::<PlantedBug>().map_err(|e| format!("INSTAFACE_PLANTED_BUG: {e}"))?), None),
        };
        if self.max_inflight_requests == 0 {
            return Err("MAX_INFLIGHT_REQUESTS must be at least 1".into());
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err("STATE_DIR must name a directory".into());
        }
        let gateway = match self.gateway_listen {
            None => None,
            Some(listen) => {
                let mut bus = self.bus.clone();
                if let Some(url) = &self.gateway_nats_url {
                    bus.nats_url = url.clone();
                }
                if let Some(prefix) = &self.gateway_inbox_prefix {
                    bus.nats_inbox_prefix = Some(prefix.clone());
                }
                bus.nats_servers().map_err(|e| format!("GATEWAY_NATS_URL: {e}"))?;
                let admin_token = self.admin_token.clone().filter(|t| !t.is_empty());
                Some(InNodeGateway { listen, bus, admin_token })
            }
        };
        Ok(NodeConfig {
            id,
            members,
            bus: self.bus.clone(),
            shard: 0,
            mysql_url: shard_mysql_urls[0].clone(),
            shard_mysql_urls,
            balance_leaders: self.balance_leaders,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            election_min,
            election_max: Duration::from_millis(self.election_max_ms),
            lease,
            drift: self.drift,
            invalidation: self.invalidation,
            cache_capacity: self.cache_capacity,
            assoc_window: self.assoc_window,
            metrics_addr: self.metrics_addr,
            max_inflight_requests: self.max_inflight_requests,
            state_dir: self.state_dir.clone(),
            test_hooks: self.test_hooks,
            planted_bug,
            courier_bug,
            gateway,
        })
    }
}

impl NodeConfig {
    /// The configuration of this node's member of shard `k`'s leader group: the same
    /// node, timing and state directory, shard `k`'s database.
    pub fn for_shard(&self, k: ShardId) -> NodeConfig {
        let mut cfg = self.clone();
        cfg.shard = k;
        cfg.mysql_url = self.shard_mysql_urls.get(k as usize).cloned().unwrap_or_else(|| self.mysql_url.clone());
        cfg
    }
}

/// Every shard's MySQL URL: `explicit` (one per shard) when given, else `base` for shard 0
/// and `base`'s database with `_s<k>` appended for shard `k`.
fn shard_urls(base: &str, explicit: &[String], shards: Shards) -> Result<Vec<String>, String> {
    let explicit: Vec<String> = explicit.iter().map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect();
    if !explicit.is_empty() {
        if explicit.len() < shards.count() as usize {
            return Err(format!(
                "SHARD_MYSQL_URLS names {} databases for SHARDS={}: give one per shard",
                explicit.len(),
                shards.count()
            ));
        }
        if let Some(bad) = explicit.iter().find(|u| !u.starts_with("mysql://")) {
            return Err(format!("SHARD_MYSQL_URLS entry {bad:?} must start with mysql://"));
        }
        // A longer list is fine (a deployment may list every database it could shard onto).
        return Ok(explicit.into_iter().take(shards.count() as usize).collect());
    }
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base, None),
    };
    let (server, db) = path
        .rsplit_once('/')
        .filter(|(server, db)| !db.is_empty() && server.len() > "mysql:/".len())
        .ok_or_else(|| format!("MYSQL_URL {base:?} names no database"))?;
    Ok(shards
        .all()
        .map(|k| {
            let db = if k == 0 { db.to_string() } else { format!("{db}_s{k}") };
            match query {
                Some(q) => format!("{server}/{db}?{q}"),
                None => format!("{server}/{db}"),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_gets_a_database() {
        let two = Shards::new(2).unwrap();
        assert_eq!(
            shard_urls("mysql://root@h:3306/g?x=1", &[], two).unwrap(),
            vec!["mysql://root@h:3306/g?x=1", "mysql://root@h:3306/g_s1?x=1"]
        );
        assert_eq!(shard_urls("mysql://root@h/g", &[], Shards::one()).unwrap(), vec!["mysql://root@h/g"]);
        let given = vec!["mysql://a/x".to_string(), "mysql://b:3307/y".to_string()];
        assert_eq!(shard_urls("mysql://root@h/g", &given, two).unwrap(), given);
        assert!(shard_urls("mysql://root@h/g", &given[..1], two).is_err());
        assert_eq!(shard_urls("mysql://root@h/g", &given, Shards::one()).unwrap(), given[..1]);
        assert!(shard_urls("mysql://root@h/", &[], two).is_err());
        let cfg = parse(&["--node-id", "n1", "--shards", "2"]).unwrap().for_shard(1);
        assert_eq!((cfg.shard, cfg.mysql_url.as_str()), (1, "mysql://root@127.0.0.1:3306/instaface_s1"));
    }

    fn parse(args: &[&str]) -> Result<NodeConfig, String> {
        let mut full = vec!["instaface-node"];
        full.extend_from_slice(args);
        NodeArgs::try_parse_from(full).map_err(|e| e.to_string())?.validate()
    }

    #[test]
    fn defaults_are_valid_and_lease_is_below_the_election_minimum() {
        let cfg = parse(&["--node-id", "n1", "--members", "n1,n2,n3"]).unwrap();
        assert_eq!(cfg.members, vec!["n1", "n2", "n3"]);
        // The same default lease the simulations check.
        assert_eq!(cfg.lease, ElectionConfig::default_lease(cfg.election_min, cfg.drift));
        assert_eq!(cfg.lease, Duration::from_millis(646));
        assert!(cfg.lease < cfg.election_min);
        assert!(cfg.lease.as_secs_f64() * 1.05f64.powi(2) < cfg.election_min.as_secs_f64());
    }

    #[test]
    fn invalid_settings_name_themselves() {
        assert!(parse(&[]).unwrap_err().contains("NODE_ID"));
        assert!(parse(&["--node-id", "a.b"]).unwrap_err().contains("NODE_ID"));
        assert!(parse(&["--node-id", "n1", "--lease-ms", "740"]).unwrap_err().contains("LEASE_MS"));
        assert!(parse(&["--node-id", "n1", "--election-max-ms", "700"]).unwrap_err().contains("ELECTION_MAX_MS"));
        assert!(parse(&["--node-id", "n1", "--heartbeat-ms", "500"]).unwrap_err().contains("ELECTION_MIN_MS"));
        assert!(parse(&["--node-id", "n1", "--members", "n1,x y"]).unwrap_err().contains("MEMBERS"));
        assert!(parse(&["--node-id", "n1", "--mysql-url", "postgres://x"]).unwrap_err().contains("MYSQL_URL"));
        assert!(parse(&["--node-id", "n1", "--planted-bug", "confirm-with-gap"]).unwrap_err().contains("TEST_HOOKS"));
        assert!(parse(&["--node-id", "n1", "--test-hooks", "--planted-bug", "nope"])
            .unwrap_err()
            .contains("INSTAFACE_PLANTED_BUG"));
        let planted = parse(&["--node-id", "n1", "--test-hooks", "--planted-bug", "confirm-with-gap"]);
        assert_eq!(planted.unwrap().planted_bug, Some(PlantedBug::ConfirmWithGap));
        let planted = parse(&["--node-id", "n1", "--test-hooks", "--planted-bug", "intent-mark-on-send"]);
        assert_eq!(planted.unwrap().courier_bug, Some(CourierBug::MarkOnSend));
    }
}
