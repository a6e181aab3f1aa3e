//! The gateway's settings: flags with environment fallbacks (clap `env`), defaults that work
//! on a developer machine, and the checks that make bad configuration fail at start with one
//! line naming the setting.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use instaface_bus::config::BusArgs;
use instaface_bus::graph_client::ClientConfig;

/// `BODY_LIMIT`'s default: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// `REQUEST_TIMEOUT_MS` and `LEADER_WAIT_MS` unless set (a node's gateway takes them too).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5000;
pub const DEFAULT_LEADER_WAIT_MS: u64 = 5000;

/// `instaface-gateway`: the REST API, websocket event feed and monitor UI of an Instaface
/// cluster.
#[derive(Parser, Clone, Debug)]
#[command(name = "instaface-gateway", version, about)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub bus: BusArgs,

    /// Where the HTTP API listens.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Also serve `/metrics` on this address (it is always served on LISTEN_ADDR too).
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// When set, `PUT /api/cluster/nodes/{id}/unplugged` needs `Authorization: Bearer <token>`
    /// (the scheme in any case). An empty value means unset: the route then answers clients
    /// on a loopback address only (403 for others), unless ADMIN_OPEN is set.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Without ADMIN_TOKEN, let anyone who reaches the gateway use the admin routes, not only
    /// loopback clients (1/true/yes/on). The local launcher (`compose/run-local.sh`) sets it
    /// for its developer stack; never set it on a gateway others can reach. Ignored when
    /// ADMIN_TOKEN is set: the token is then always required. Behind a reverse proxy on the
    /// same host every client looks like loopback: set ADMIN_TOKEN there.
    #[arg(
        long,
        env = "ADMIN_OPEN",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub admin_open: bool,

    /// Most `/api/events` websockets open at once; past it, 503 with `Retry-After`.
    #[arg(long, env = "MAX_WS_CLIENTS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_ws_clients: u32,

    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "BODY_LIMIT", default_value_t = DEFAULT_BODY_LIMIT as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_limit: u64,

    /// Send follower reads that wait at the same time together, one NATS message per batch
    /// (`P.graph.reads`): fewer hops and wakeups per read under load, no wait at low load.
    /// `BATCH_READS=false` sends every read alone (`P.graph.read`).
    #[arg(long, env = "BATCH_READS", default_value_t = true, action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new())]
    pub batch_reads: bool,

    /// Timeout of one request to a node over NATS, in ms.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = DEFAULT_REQUEST_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,

    /// How long a request may wait for a leader (and retry) before answering 503, in ms.
    #[arg(long, env = "LEADER_WAIT_MS", default_value_t = DEFAULT_LEADER_WAIT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub leader_wait_ms: u64,

    /// Backstop for a whole HTTP request, in ms; must exceed LEADER_WAIT_MS + REQUEST_TIMEOUT_MS.
    #[arg(long, env = "HTTP_TIMEOUT_MS", default_value_t = 30000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_timeout_ms: u64,

    /// How often the gateway asks every member for its status (for `GET /api/cluster`) and
    /// re-reads the membership from Redis, in ms.
    #[arg(long, env = "CLUSTER_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..))]
    pub cluster_poll_ms: u64,
}

impl GatewayArgs {
    /// Checks what clap cannot: relations between settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.http_timeout_ms <= self.leader_wait_ms + self.request_timeout_ms {
            return Err(format!(
                "HTTP_TIMEOUT_MS ({}) must exceed LEADER_WAIT_MS + REQUEST_TIMEOUT_MS ({})",
                self.http_timeout_ms,
                self.leader_wait_ms + self.request_timeout_ms
            ));
        }
        Ok(())
    }

    /// The shared graph client's timeouts.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            deadline: Duration::from_millis(self.leader_wait_ms),
            batch_reads: self.batch_reads,
            shards: self.bus.shards,
            local: None,
        }
    }

    /// The settings the running gateway uses.
    pub fn gateway_config(&self) -> GatewayConfig {
        GatewayConfig {
            admin_token: self.admin_token.clone().filter(|t| !t.is_empty()),
            admin_open: self.admin_open,
            max_ws_clients: self.max_ws_clients as usize,
            body_limit: usize::try_from(self.body_limit).unwrap_or(usize::MAX),
            http_timeout: Duration::from_millis(self.http_timeout_ms),
            cluster_poll: Duration::from_millis(self.cluster_poll_ms),
            membership_poll: Duration::from_millis(self.cluster_poll_ms),
            redis_url: Some(self.bus.redis_url.clone()),
            ..GatewayConfig::default()
        }
    }
}

/// What the running gateway needs to know (built from [`GatewayArgs`], or by tests).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The bearer token of the admin routes (`None`: see `admin_open`).
    pub admin_token: Option<String>,
    /// Without a token: whether admin routes answer clients on any address (`true`) or on
    /// loopback addresses only (`false`).
    pub admin_open: bool,
    pub body_limit: usize,
    pub http_timeout: Duration,
    /// Interval of the status poll of every member.
    pub cluster_poll: Duration,
    /// How long one member's status may take before it counts as not answering.
    pub status_timeout: Duration,
    /// Redis, for the membership: the nodes the cluster view knows and the unplug route
    /// accepts (`None`: no membership, so the view lists no node and unplugging answers 503).
    pub redis_url: Option<String>,
    /// How often the membership is re-read from Redis (after a failure: backing off from this
    /// up to `membership_backoff_max`).
    pub membership_poll: Duration,
    pub membership_backoff_max: Duration,
    /// Most `/api/events` websockets open at once.
    pub max_ws_clients: usize,
    /// Events buffered per websocket before a slow client is dropped.
    pub ws_buffer: usize,
    /// Longest a websocket send may block before the client is dropped.
    pub ws_send_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            admin_token: None,
            admin_open: false,
            body_limit: DEFAULT_BODY_LIMIT,
            http_timeout: Duration::from_secs(30),
            cluster_poll: Duration::from_secs(1),
            status_timeout: Duration::from_millis(500),
            redis_url: None,
            membership_poll: Duration::from_secs(1),
            membership_backoff_max: Duration::from_secs(10),
            max_ws_clients: 256,
            ws_buffer: 1024,
            ws_send_timeout: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<GatewayArgs, clap::Error> {
        GatewayArgs::try_parse_from(std::iter::once("instaface-gateway").chain(args.iter().copied()))
    }

    #[test]
    fn admin_open_and_max_ws_clients_flags() {
        let args = parse(&[]).unwrap();
        assert!(!args.admin_open, "closed unless asked");
        assert_eq!(args.max_ws_clients, 256);
        let config = args.gateway_config();
        assert!(!config.admin_open && config.admin_token.is_none());
        assert_eq!(config.max_ws_clients, 256);

        let args = parse(&["--admin-open", "--max-ws-clients", "3", "--admin-token", ""]).unwrap();
        let config = args.gateway_config();
        assert!(config.admin_open);
        assert_eq!(config.admin_token, None, "an empty token is no token");
        assert_eq!(config.max_ws_clients, 3);
        assert!(parse(&["--max-ws-clients", "0"]).is_err());
        assert!(parse(&["--max-ws-clients", "many"]).is_err());
    }

    /// The environment half runs in a child process (this same test binary): changing the
    /// environment of the multi-threaded test process would race with the other tests.
    #[test]
    fn admin_open_and_max_ws_clients_from_the_environment() {
        const CHILD: &str = "INSTAFACE_GATEWAY_CONFIG_TEST_WANT";
        if let Ok(want) = std::env::var(CHILD) {
            let args = parse(&[]).unwrap();
            assert_eq!(args.admin_open.to_string(), want, "ADMIN_OPEN={:?}", std::env::var("ADMIN_OPEN"));
            assert_eq!(args.max_ws_clients, 7);
            return;
        }
        let exe = std::env::current_exe().unwrap();
        for (value, want) in
            [("1", true), ("true", true), ("yes", true), ("on", true), ("0", false), ("false", false), ("off", false)]
        {
            let out = std::process::Command::new(&exe)
                .args(["--exact", "config::tests::admin_open_and_max_ws_clients_from_the_environment"])
                .env(CHILD, want.to_string())
                .env("ADMIN_OPEN", value)
                .env("MAX_WS_CLIENTS", "7")
                .env_remove("ADMIN_TOKEN")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "ADMIN_OPEN={value}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
            assert!(stdout.contains("1 passed"), "the child ran the test: {stdout}");
        }
    }
}
