//! Request/response: a server process answers two clients (two threads of this process), each
//! response reaching the client that asked. Prints each client's round-trip percentiles.
//!
//! ```text
//! cargo run --release -p shmlane-examples --example rpc -- [--calls N]
//! ```
//!
//! The server waits with `Blocking` (it sleeps between requests); the clients wait for their
//! responses with `Backoff` (spin first, then sleep), so round trips are fast while calls come
//! back to back.
#![forbid(unsafe_code)]

use std::error::Error;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmlane::Node;
use shmlane::notify::{Backoff, Blocking};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The request: add two numbers.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Add {
    a: u64,
    b: u64,
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    shmlane_examples::log_to_stderr();
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--server") => server(&args[2..]),
        _ => clients(&args[1..]),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The server process: answers `calls` requests, then exits.
fn server(args: &[String]) -> AnyResult<()> {
    let [namespace, calls] = args else { return Err("server needs NAMESPACE CALLS".into()) };
    let node = Node::builder("adder-server").namespace(namespace).create()?;
    let rpc = node.rpc::<Add, u64>("adder").open_or_create()?;
    let server = rpc.server()?;
    println!("ready");
    let mut strategy = Blocking::new();
    for _ in 0..calls.parse::<u64>()? {
        let request = server.receive_with(&mut strategy, Some(TIMEOUT))?;
        let sum = request.a.wrapping_add(request.b);
        server.respond(&request, sum)?;
    }
    Ok(())
}

fn clients(args: &[String]) -> AnyResult<()> {
    let mut calls: u64 = 20_000;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--calls" => calls = it.next().ok_or("--calls needs a number")?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if calls == 0 {
        return Err("--calls must be at least 1".into());
    }
    let namespace = format!("rpc{}", std::process::id());
    let node = Node::builder("adder-clients").namespace(&namespace).create()?;
    let rpc = node.rpc::<Add, u64>("adder").open_or_create()?;
    let mut server = Command::new(std::env::current_exe()?)
        .args(["--server", &namespace, &(2 * calls).to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    let stdout = server.stdout.take().ok_or("server stdout")?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready)?;
    if ready.trim() != "ready" {
        let _ = server.kill();
        return Err("the server did not start".into());
    }

    let results: Vec<AnyResult<Histogram<u64>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2u64)
            .map(|id| {
                let rpc = &rpc;
                scope.spawn(move || -> AnyResult<Histogram<u64>> {
                    let client = rpc.client()?;
                    let mut strategy = Backoff::new();
                    let mut rtt = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
                    for i in 0..calls {
                        let (a, b) = (i, id * 1_000_000);
                        let start = Instant::now();
                        let sum = client.call(Add { a, b }, &mut strategy, Some(TIMEOUT))?;
                        rtt.record(start.elapsed().as_nanos() as u64)?;
                        if *sum != a + b {
                            return Err(format!("client {id}: {a} + {b} = {}?", *sum).into());
                        }
                    }
                    Ok(rtt)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("panicked".into()))).collect()
    });
    let status = server.wait()?;
    println!("{calls} calls per client, each checked; round trip in ns:");
    println!("{:>8} {:>8} {:>8} {:>8} {:>8} {:>9}", "client", "p50", "p90", "p99", "p99.9", "max");
    for (id, result) in results.into_iter().enumerate() {
        let rtt = result?;
        let q = |q: f64| rtt.value_at_quantile(q);
        println!(
            "{id:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            rtt.max()
        );
    }
    if !status.success() {
        return Err(format!("the server failed: {status}").into());
    }
    Ok(())
}
