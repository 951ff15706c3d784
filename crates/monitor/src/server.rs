//! The server: its settings ([`Config`]), the routes, the sampler task, and start-up and
//! shutdown ([`Monitor`], [`run`]).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::MissedTickBehavior;

use crate::error::{ApiError, MonitorError};
use crate::hub::Hub;
use crate::peek::Peeks;
use crate::sampler::{self, Sampler};
use crate::{api, live, metrics, page};

/// Where the monitor listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7878));
/// The sampling interval unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
/// The shortest sampling interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest sampling interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// WebSocket clients at once unless told otherwise.
pub const DEFAULT_MAX_CLIENTS: usize = 4096;
/// REST requests reading shared memory at once; more wait their turn.
const DISCOVERIES: usize = 4;
/// The kernel's send buffer of each connection (Linux doubles it for its bookkeeping): a
/// client that stops reading holds at most this much (instead of the up to 4 MiB TCP
/// autotuning grows to), and is noticed falling behind soon after.
const SEND_BUFFER: usize = 128 << 10;
/// How long WebSocket clients get to be sent their close frames when the monitor stops.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How the monitor runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on (default [`DEFAULT_LISTEN`], 127.0.0.1:7878; port 0 picks a
    /// free port).
    pub listen: SocketAddr,
    /// The directory segments live in, as given to `Node::builder(..).root(DIR)` (default:
    /// `/dev/shm`).
    pub root: Option<PathBuf>,
    /// How often shared memory is read and WebSocket clients are updated (default
    /// [`DEFAULT_INTERVAL`]; [`MIN_INTERVAL`] to [`MAX_INTERVAL`]).
    pub interval: Duration,
    /// Whether pages may peek at topics' samples (an ordinary subscriber per topic shown).
    pub peek: bool,
    /// WebSocket clients at once (default [`DEFAULT_MAX_CLIENTS`]); one more is answered 503.
    pub max_clients: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN,
            root: None,
            interval: DEFAULT_INTERVAL,
            peek: true,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

impl Config {
    fn check(&self) -> Result<(), MonitorError> {
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&self.interval) {
            return Err(MonitorError::Interval {
                interval: self.interval,
                min: MIN_INTERVAL,
                max: MAX_INTERVAL,
            });
        }
        if self.max_clients == 0 {
            return Err(MonitorError::NoClients);
        }
        Ok(())
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) hub: Arc<Hub>,
    root: Option<PathBuf>,
    pub(crate) registry: Arc<Registry>,
    /// One permit per WebSocket client.
    pub(crate) clients: Arc<Semaphore>,
    pub(crate) max_clients: usize,
    /// One permit per REST request reading shared memory.
    discoveries: Arc<Semaphore>,
    /// Turns `true` when the monitor stops.
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl App {
    /// The directory segments are looked for in, for messages.
    pub(crate) fn dir(&self) -> String {
        self.root.as_deref().unwrap_or(Path::new("/dev/shm")).display().to_string()
    }

    /// Runs the blocking discovery call `f` on the blocking pool, a few at a time.
    pub(crate) async fn discover<T, E>(
        &self,
        f: impl FnOnce(Option<&Path>) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, ApiError>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let unavailable = |what: &str| {
            ApiError::Discovery(format!("{what}: the monitor is stopping or overloaded, retry"))
        };
        let _permit =
            self.discoveries.acquire().await.map_err(|_| unavailable("no discovery permit"))?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(root.as_deref()))
            .await
            .map_err(|_| unavailable("the discovery task failed"))
    }
}

/// A bound monitor, ready to [`serve`](Monitor::serve).
#[derive(Debug)]
pub struct Monitor {
    listener: TcpListener,
    app: App,
    root: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
}

impl Monitor {
    /// Checks `config` and binds its address. Needs a Tokio runtime.
    pub async fn bind(config: Config) -> Result<Monitor, MonitorError> {
        config.check()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| MonitorError::Bind { addr: config.listen, source })?;
        let peeks = Arc::new(Peeks::new(config.root.clone(), config.peek, config.interval));
        let hub = Arc::new(Hub::new(config.interval, peeks));
        let (shutdown, stopping) = watch::channel(false);
        let app = App {
            registry: Arc::new(metrics::registry(Arc::clone(&hub))),
            hub,
            root: config.root.clone(),
            clients: Arc::new(Semaphore::new(config.max_clients)),
            max_clients: config.max_clients,
            discoveries: Arc::new(Semaphore::new(DISCOVERIES)),
            shutdown: stopping,
        };
        Ok(Monitor { listener, app, root: config.root, shutdown })
    }

    /// The address it listens on (with the port chosen, if port 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr, MonitorError> {
        self.listener.local_addr().map_err(MonitorError::Serve)
    }

    /// Samples and serves until `stop` completes, then closes the WebSocket clients (code
    /// 1001) and returns.
    pub async fn serve(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), MonitorError> {
        let Monitor { listener, app, root, shutdown } = self;
        let hub = Arc::clone(&app.hub);
        let sampling = tokio::spawn(sample(Arc::clone(&hub), root, app.shutdown.clone()));
        let shutdown = Arc::new(shutdown);
        let signal = Arc::clone(&shutdown);
        let listener = listener.tap_io(|tcp: &mut TcpStream| {
            // Failures leave the system's defaults, with which a connection works as well.
            let _ = tcp.set_nodelay(true);
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(&*tcp, SEND_BUFFER);
        });
        let served = axum::serve(listener, router(app))
            .with_graceful_shutdown(async move {
                stop.await;
                signal.send_replace(true);
            })
            .await;
        // Also when serving failed: the clients close, the sampler ends.
        shutdown.send_replace(true);
        sampling.abort();
        let grace = tokio::time::Instant::now() + CLOSE_GRACE;
        while hub.clients.load(std::sync::atomic::Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < grace
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        served.map_err(MonitorError::Serve)
    }
}

/// The routes.
fn router(app: App) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/api/services", get(api::services))
        .route("/api/services/{name}", get(api::service))
        .route("/api/nodes", get(api::nodes))
        .route("/api/live", get(live::live))
        .route("/metrics", get(api::metrics))
        .fallback(api::no_route)
        .with_state(app)
}

/// The sampler task: reads shared memory once per interval (on the blocking pool) and
/// publishes the sample to the hub, until the monitor stops.
async fn sample(hub: Arc<Hub>, root: Option<PathBuf>, mut shutdown: watch::Receiver<bool>) {
    let mut sampler = Sampler::default();
    let mut ticker = tokio::time::interval(hub.interval());
    // A pass slower than the interval delays the next rather than bunching them up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let root = root.clone();
        match tokio::task::spawn_blocking(move || sampler::read(root.as_deref())).await {
            Ok(reading) => hub.publish(&mut sampler, reading),
            // A pass that panicked (a bug in discovery): skip it, try again next interval.
            Err(e) => tracing::error!("a pass over shared memory failed: {e}"),
        }
    }
}

/// Runs the monitor of `config` on a runtime of its own until SIGINT (Ctrl-C) or SIGTERM;
/// `started` is told the address it listens on.
pub fn run(config: Config, started: impl FnOnce(SocketAddr)) -> Result<(), MonitorError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("shmlane-monitor")
        .build()
        .map_err(MonitorError::Runtime)?;
    runtime.block_on(async {
        let monitor = Monitor::bind(config).await?;
        started(monitor.local_addr()?);
        monitor.serve(stop_signal()).await
    })
}

/// Completes at SIGINT or SIGTERM (never, if neither can be listened for).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    match (interrupt, terminate) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        (Ok(mut one), Err(e)) | (Err(e), Ok(mut one)) => {
            tracing::warn!("cannot listen for a stop signal: {e}");
            one.recv().await;
        }
        (Err(e), Err(_)) => {
            tracing::warn!(
                "cannot listen for SIGINT or SIGTERM ({e}): stop the monitor with SIGKILL"
            );
            std::future::pending::<()>().await;
        }
    }
}
