//! `shmlane-bridge`: carries shmlane services between hosts over zenoh (see the crate's
//! documentation and `docs/bridge-draft.md`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use shmlane_bridge::cli::{Args, run};

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,shmlane_bridge=info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmlane-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}
