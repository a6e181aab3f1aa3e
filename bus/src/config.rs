//! Shared configuration: the flags (with environment fallbacks) every binary accepts for
//! reaching NATS and Redis and choosing its cluster prefix, and the NATS connect options.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// How to reach the bus and the membership store, and which cluster to join.
#[derive(Args, Clone, Debug)]
pub struct BusArgs {
    /// NATS server URL(s), comma-separated. Credentials may be in the URL
    /// (`nats://user:pass@host:4222` or `nats://token@host:4222`); `tls://` requires TLS.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// A NATS `.creds` file (JWT and NKey seed), for an operator-secured server.
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,

    /// A PEM file of CA certificates to trust for NATS TLS (implies TLS).
    #[arg(long, env = "NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Client certificate and key (PEM) for NATS mutual TLS.
    #[arg(long, env = "NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    #[arg(long, env = "NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,

    /// Redis URL, for the cluster membership.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// NATS subject prefix and Redis key prefix of the cluster.
    #[arg(long, env = "INSTAFACE_PREFIX", default_value = "instaface", value_parser = parse_prefix)]
    pub prefix: String,

    /// How many shards the graph is split into (1 to 8192), each with its own leader group
    /// and database. Every process of a cluster must agree on it.
    #[arg(long, env = "SHARDS", default_value = "1", value_parser = crate::shards::parse_shards)]
    pub shards: crate::shards::Shards,

    /// The prefix of this process's reply inboxes (default `_INBOX`); NATS permissions can
    /// then keep each role's replies to itself.
    #[arg(long, env = "NATS_INBOX_PREFIX", value_parser = parse_prefix)]
    pub nats_inbox_prefix: Option<String>,

    /// The cluster key (at least 32 characters): messages between nodes, and unplug
    /// commands, carry a MAC made with it and are refused without a valid one. Unset, no
    /// message is authenticated (the node says so at start).
    #[arg(long, env = "CLUSTER_KEY", value_parser = parse_cluster_key, hide_env_values = true)]
    pub cluster_key: Option<crate::auth::ClusterKey>,
}

impl BusArgs {
    /// Defaults for a developer machine with the given prefix (tests use this).
    pub fn local(prefix: &str) -> Self {
        BusArgs {
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_creds: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
            redis_url: "redis://127.0.0.1:6379".into(),
            prefix: prefix.into(),
            shards: crate::shards::Shards::one(),
            nats_inbox_prefix: None,
            cluster_key: None,
        }
    }

    /// The NATS connect options fit for a cluster member: a ping about every second (the
    /// 60 s default hides a dead link for minutes), reconnects forever with capped
    /// exponential backoff, connection events logged, credentials and TLS when configured.
    pub async fn nats_options(&self, name: &str) -> Result<async_nats::ConnectOptions, String> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
            .ping_interval(Duration::from_secs(1))
            .connection_timeout(Duration::from_secs(3))
            .request_timeout(Some(Duration::from_secs(5)))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .custom_inbox_prefix(self.nats_inbox_prefix.clone().unwrap_or_else(|| "_INBOX".into()))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("nats connected"),
                    async_nats::Event::Disconnected => tracing::warn!("nats disconnected"),
                    other => tracing::info!(event = %other, "nats event"),
                }
            });
        // async-nats does not take credentials from a server URL by itself.
        if let Some(addr) = self.nats_servers()?.into_iter().find(|a| a.has_user_pass()) {
            let user = percent_decode(addr.username().unwrap_or_default());
            opts = match addr.password() {
                Some(pass) => opts.user_and_password(user, percent_decode(pass)),
                None => opts.token(user),
            };
        }
        if let Some(creds) = &self.nats_creds {
            opts = opts.credentials_file(creds).await.map_err(|e| format!("NATS_CREDS {}: {e}", creds.display()))?;
        }
        if let Some(ca) = &self.nats_tls_ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.nats_tls_cert, &self.nats_tls_key) {
            opts = opts.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
        }
        Ok(opts)
    }

    /// The NATS server addresses, parsed from `nats_url`.
    pub fn nats_servers(&self) -> Result<Vec<async_nats::ServerAddr>, String> {
        self.nats_url
            .split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<async_nats::ServerAddr>().map_err(|e| format!("NATS_URL {s:?}: {e}")))
            .collect()
    }
}

/// Decodes `%XX` escapes (a URL's user and password may hold them); a `%` not followed by
/// two hex digits stays as it is.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Exponential backoff from 50 ms, capped at 2 s, with up to 20 % jitter.
fn reconnect_delay(attempts: usize) -> Duration {
    let base = 50u64.saturating_mul(1u64 << attempts.min(6)).min(2000);
    let jitter = rand::random_range(0..=base / 5);
    Duration::from_millis(base + jitter)
}

fn parse_cluster_key(s: &str) -> Result<crate::auth::ClusterKey, String> {
    crate::auth::ClusterKey::parse(s)
}

/// A prefix is one or more NATS tokens of `[A-Za-z0-9_-]` separated by dots.
pub fn parse_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.split('.').all(crate::valid_node_id);
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("INSTAFACE_PREFIX {s:?} must be dot-separated tokens of [A-Za-z0-9_-]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_validated() {
        assert!(parse_prefix("instaface").is_ok());
        assert!(parse_prefix("test.c42").is_ok());
        assert!(parse_prefix("").is_err());
        assert!(parse_prefix("a..b").is_err());
        assert!(parse_prefix("a.*").is_err());
        assert!(parse_prefix("a b").is_err());
    }

    #[test]
    fn url_credentials_are_percent_decoded() {
        assert_eq!(percent_decode("p%40ss%2Fw0rd"), "p@ss/w0rd");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(reconnect_delay(0) <= Duration::from_millis(60));
        assert!(reconnect_delay(30) <= Duration::from_millis(2400));
        assert!(reconnect_delay(30) >= Duration::from_millis(2000));
    }
}
