//! `instaface-gateway`: parses its flags, connects to NATS, and serves
//! [`instaface_gateway::service`] (the router with each connection's peer address).

use anyhow::Context;
use clap::Parser;
use instaface_bus::Bus;
use instaface_gateway::config::GatewayArgs;
use instaface_gateway::{service, AppState};
use tracing_subscriber::EnvFilter;

/// mimalloc, not glibc's malloc: a read's allocations cost the gateway about 8 % of its
/// CPU under glibc (docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: logs piped to files or the launcher stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = GatewayArgs::parse();
    if let Err(e) = args.validate() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }

    let bus = Bus::connect(&args.bus, "instaface-gateway").await.context("connecting to NATS")?;
    let state =
        AppState::start(bus, args.client_config(), args.gateway_config()).await.context("starting the gateway")?;

    if let Some(addr) = args.metrics_addr {
        let metrics = state.metrics.clone();
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("METRICS_ADDR {addr}"))?;
        let router = axum::Router::new().route("/metrics", axum::routing::get(move || async move { metrics.render() }));
        tokio::spawn(async move { axum::serve(listener, router).await });
    }

    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| format!("LISTEN_ADDR {}", args.listen_addr))?;
    tracing::info!(addr = %listener.local_addr()?, prefix = %args.bus.prefix, "gateway listening");
    let config = &state.config;
    match (&config.admin_token, config.admin_open) {
        (Some(_), _) => tracing::info!("admin routes need the ADMIN_TOKEN bearer token"),
        (None, false) => tracing::info!("no ADMIN_TOKEN: admin routes answer loopback clients only"),
        (None, true) => {
            tracing::warn!("ADMIN_OPEN without ADMIN_TOKEN: admin routes answer anyone who reaches the gateway")
        }
    }
    // With each connection's peer address: admin routes without a token check it.
    axum::serve(listener, service(state)).with_graceful_shutdown(shutdown()).await.context("serving")?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
