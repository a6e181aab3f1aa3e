//! `instaface-node`: one member of an Instaface cluster (see `instaface-node --help`).

use clap::Parser;
use instaface_actors::node::config::{Command, NodeArgs};
use instaface_actors::node::run;
use tracing_subscriber::EnvFilter;

/// mimalloc, not glibc's malloc, as in the gateway (docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = NodeArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&args.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_target(false)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: logs piped to files or the launcher stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match args.command.clone() {
        Some(Command::Members { ids }) => run::members(&args.bus, ids).await,
        Some(Command::Tap { only }) => run::tap(&args.bus, only).await,
        None | Some(Command::Run) => match args.validate() {
            Ok(cfg) => run::run(cfg).await,
            Err(e) => {
                eprintln!("instaface-node: {e}");
                return std::process::ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("instaface-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
