//! The gateway's settings: flags with environment fallbacks (clap `env`), defaults that work
//! on a developer machine, and the checks that make bad configuration fail at start with one
//! line naming the setting.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use instaface_bus::config::BusArgs;
use instaface_bus::graph_client::ClientConfig;

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

    /// When set, `PUT /api/cluster/nodes/{id}/unplugged` needs `Authorization: Bearer <token>`.
    /// An empty value means unset.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "BODY_LIMIT", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_limit: u64,

    /// Timeout of one request to a node over NATS, in ms.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,

    /// How long a request may wait for a leader (and retry) before answering 503, in ms.
    #[arg(long, env = "LEADER_WAIT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub leader_wait_ms: u64,

    /// Backstop for a whole HTTP request, in ms; must exceed LEADER_WAIT_MS + REQUEST_TIMEOUT_MS.
    #[arg(long, env = "HTTP_TIMEOUT_MS", default_value_t = 30000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_timeout_ms: u64,

    /// How often the gateway asks every member for its status (for `GET /api/cluster`), in ms.
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
        }
    }

    /// The settings the running gateway uses.
    pub fn gateway_config(&self) -> GatewayConfig {
        GatewayConfig {
            admin_token: self.admin_token.clone().filter(|t| !t.is_empty()),
            body_limit: usize::try_from(self.body_limit).unwrap_or(usize::MAX),
            http_timeout: Duration::from_millis(self.http_timeout_ms),
            cluster_poll: Duration::from_millis(self.cluster_poll_ms),
            redis_url: Some(self.bus.redis_url.clone()),
            ..GatewayConfig::default()
        }
    }
}

/// What the running gateway needs to know (built from [`GatewayArgs`], or by tests).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub admin_token: Option<String>,
    pub body_limit: usize,
    pub http_timeout: Duration,
    /// Interval of the status poll of every member.
    pub cluster_poll: Duration,
    /// How long one member's status may take before it counts as not answering.
    pub status_timeout: Duration,
    /// Redis, for the membership (`None`: membership only from heartbeats).
    pub redis_url: Option<String>,
    /// Events buffered per websocket before a slow client is dropped.
    pub ws_buffer: usize,
    /// Longest a websocket send may block before the client is dropped.
    pub ws_send_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            admin_token: None,
            body_limit: 1 << 20,
            http_timeout: Duration::from_secs(30),
            cluster_poll: Duration::from_secs(1),
            status_timeout: Duration::from_millis(500),
            redis_url: None,
            ws_buffer: 1024,
            ws_send_timeout: Duration::from_secs(5),
        }
    }
}
