//! `shmlane monitor`: the live monitor (`shmlane-monitor`): a web page, REST, WebSocket and
//! Prometheus endpoints over every topic, service and node, read-only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use shmlane_monitor::{Config, DEFAULT_MAX_CLIENTS, MonitorError};

/// `shmlane monitor`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Serve a live view of the services, peers and nodes in shared \
                  memory until SIGINT (Ctrl-C) or SIGTERM:\n\
                  \n  GET /                        the page: services, nodes, rate and drop \
                  sparklines, dead peers, full queues, sample peeks\
                  \n  GET /api/services            every service (JSON; ?namespace=NS)\
                  \n  GET /api/services/{name}     one service as `shmlane inspect` shows it\
                  \n  GET /api/nodes               the registered nodes\
                  \n  GET /api/live                WebSocket: a snapshot, then a delta every \
                  interval\
                  \n  GET /metrics                 Prometheus text format\n\
                  \nShared memory is read once per interval, however many clients watch, and \
                  never written; a sample peek is an ordinary subscriber, there only while a \
                  page shows its topic (--no-peek: none).\n\
                  \nExit codes:\n  0  stopped by SIGINT or SIGTERM\n  1  could not listen, or \
                  the server failed\n  2  bad arguments")]
pub struct MonitorArgs {
    /// Address to listen on; loopback only unless told otherwise (port 0: any free port)
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Directory that holds the segments, as given to `Node::builder(..).root(DIR)`
    /// [default: /dev/shm]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// How often shared memory is read and clients are updated (10ms to 60s)
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Never subscribe to a topic to show its samples
    #[arg(long)]
    no_peek: bool,
    /// WebSocket clients at once; more are refused with 503
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS)]
    max_clients: usize,
}

/// Runs `shmlane monitor` until SIGINT or SIGTERM.
pub fn run(args: MonitorArgs) -> ExitCode {
    let config = Config {
        listen: args.listen,
        root: args.root,
        interval: args.interval,
        peek: !args.no_peek,
        max_clients: args.max_clients,
    };
    let started = |addr: SocketAddr| eprintln!("shmlane monitor: listening on http://{addr}/");
    match shmlane_monitor::run(config, started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmlane monitor: {e}");
            match e {
                MonitorError::Interval { .. } | MonitorError::NoClients => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
