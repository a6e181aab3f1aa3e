//! `instaface-bot`: parses the flags, connects to NATS, runs the bot, prints the summary.
//! Everything else lives in the library (`instaface_bot`).

use std::process::ExitCode;

use clap::Parser;
use instaface_bot::progress::{render_json, render_text};
use instaface_bot::run::run;
use instaface_bot::settings::Cli;
use instaface_bus::graph_client::{ClientConfig, GraphClient};
use instaface_bus::Bus;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: logs piped to files or the launcher stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let shards = cli.bus.shards;
    let bus = match Bus::connect(&cli.bus, "instaface-bot").await {
        Ok(bus) => bus,
        Err(e) => {
            eprintln!("instaface-bot: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = match GraphClient::new(bus, ClientConfig { shards, ..ClientConfig::default() }).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("instaface-bot: {e}");
            return ExitCode::FAILURE;
        }
    };

    let summary = run(client, cli.run_config(), interrupts()).await;
    println!("{}", if cli.json { render_json(&summary) } else { render_text(&summary) });
    ExitCode::SUCCESS
}

/// One message per Ctrl-C or SIGTERM.
fn interrupts() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            #[cfg(unix)]
            let terminated = async {
                match term.as_mut() {
                    Some(t) => t.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let terminated = std::future::pending::<Option<()>>();
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { break },
                _ = terminated => {}
            }
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    rx
}
