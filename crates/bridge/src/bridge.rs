//! The [`Bridge`]: one zenoh session, a shmlane node per namespace, the zenoh subscribers of
//! the in direction, and a scanning thread that finds local services to carry out (and rpc
//! services to serve in) and runs a carrier thread for each.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shmlane::Node;
use shmlane::discovery::{self, Liveness, ServiceInfo, ServiceKind};
use zenoh::Wait;
use zenoh::sample::{Locality, SampleKind};

use crate::config::{BridgeConfig, Rule};
use crate::error::BridgeError;
use crate::event::Events;
use crate::keys::{KeyTemplate, Kind};
use crate::rpc::{self, Declared};
use crate::stats::{Registry, Service, Stats};
use crate::topic::Topics;

/// How often remote rpc services are asked for their declarations.
const DECL_QUERY_EVERY: Duration = Duration::from_secs(1);

/// What every carrier shares: the session, the nodes, the settings and the counters.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) session: zenoh::Session,
    pub(crate) rules: Vec<Rule>,
    pub(crate) keys: KeyTemplate,
    pub(crate) root: Option<PathBuf>,
    pub(crate) scan_interval: Duration,
    pub(crate) rpc_timeout: Duration,
    pub(crate) block_timeout: Duration,
    pub(crate) max_payload: usize,
    pub(crate) busy_poll: bool,
    nodes: BTreeMap<String, Node>,
    /// This bridge's id on the wire.
    pub(crate) id: u64,
    pub(crate) registry: Registry,
    stop: AtomicBool,
}

impl Context {
    /// Whether the bridge is stopping.
    pub(crate) fn stopping(&self) -> bool {
        // Acquire: pairs with `Bridge::shut_down`'s Release store.
        self.stop.load(Ordering::Acquire)
    }

    /// The bridge's node in `namespace`.
    pub(crate) fn node(&self, namespace: &str) -> Option<&Node> {
        self.nodes.get(namespace)
    }

    /// Whether some rule carries `service` of `namespace` out, and whether some carries it in.
    pub(crate) fn directions(&self, namespace: &str, service: &str) -> (bool, bool) {
        self.rules
            .iter()
            .filter(|r| r.matches(namespace, service))
            .fold((false, false), |(out, into), r| {
                (out || r.direction.out(), into || r.direction.into_host())
            })
    }
}

/// A running bridge. Dropping it (or [`Bridge::stop`]) stops every carrier, releases every
/// local publisher, subscriber and server slot, and closes the zenoh session.
///
/// ```no_run
/// use shmlane_bridge::{Bridge, BridgeConfig, Direction, Rule, zenoh_config};
///
/// let rules = vec![Rule::parse("ticks-*", Direction::Out, "default")?];
/// let mut config = BridgeConfig::new(rules)?;
/// config.zenoh = zenoh_config(None, &[], &["10.0.0.2:7447".into()])?;
/// let bridge = Bridge::start(config)?;
/// println!("{}", bridge.stats().to_json());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Bridge {
    ctx: Arc<Context>,
    topics: Arc<Topics>,
    events: Arc<Events>,
    scanner: Option<JoinHandle<()>>,
    /// The liveliness subscribers that find remote services for the glob rules.
    finders: Vec<zenoh::pubsub::Subscriber<()>>,
}

impl Bridge {
    /// Opens the zenoh session, creates a node per namespace, declares the in direction's
    /// subscribers and starts scanning for local services.
    pub fn start(config: BridgeConfig) -> Result<Bridge, BridgeError> {
        config.check()?;
        let mut nodes = BTreeMap::new();
        for namespace in config.namespaces() {
            let builder = Node::builder(config.node_name.clone()).namespace(namespace.clone());
            let builder = match &config.root {
                Some(root) => builder.root(root.clone()),
                None => builder,
            };
            let node = builder
                .create()
                .map_err(|source| BridgeError::Node { namespace: namespace.clone(), source })?;
            nodes.insert(namespace, node);
        }
        let BridgeConfig {
            rules,
            root,
            keys,
            zenoh,
            scan_interval,
            rpc_timeout,
            block_timeout,
            max_payload,
            busy_poll,
            ..
        } = config;
        let session = zenoh::open(zenoh).wait().map_err(|e| BridgeError::Zenoh(e.to_string()))?;
        let ctx = Arc::new(Context {
            session,
            rules,
            keys,
            root,
            scan_interval,
            rpc_timeout,
            block_timeout,
            max_payload,
            busy_poll,
            nodes,
            id: random_id(),
            registry: Registry::new(),
            stop: AtomicBool::new(false),
        });
        let topics = Arc::new(Topics::default());
        let events = Arc::new(Events::default());
        let mut bridge = Bridge { ctx, topics, events, scanner: None, finders: Vec::new() };
        // The services the rules name literally are subscribed to now; those of glob rules
        // when their liveliness tokens are found.
        let mut data = HashMap::new();
        for rule in bridge.ctx.rules.iter().filter(|r| r.direction.into_host()) {
            if glob::Pattern::escape(rule.pattern.as_str()) != rule.pattern.as_str() {
                continue;
            }
            for kind in [Kind::Topic, Kind::Event] {
                let id = (rule.namespace.clone(), kind, rule.pattern.as_str().to_owned());
                if let std::collections::hash_map::Entry::Vacant(entry) = data.entry(id) {
                    let id = entry.key();
                    let subscriber = declare_data(&bridge.ctx, &bridge.topics, &bridge.events, id)?;
                    entry.insert(subscriber);
                }
            }
        }
        let (found, discovered) = mpsc::channel();
        let scanner = Scanner::new(&bridge, data, discovered);
        let thread = std::thread::Builder::new()
            .name("bridge-scan".into())
            .spawn(move || scanner.run())
            .map_err(BridgeError::Thread)?;
        let waker = thread.thread().clone();
        bridge.scanner = Some(thread);
        bridge.declare_finders(&found, &waker)?;
        tracing::info!(bridge = format_args!("{:016x}", bridge.ctx.id), "bridge started");
        Ok(bridge)
    }

    /// Declares a liveliness subscriber for the topics and events of every glob in rule: each
    /// out carrier of a remote bridge declares a token on its service's key, and each token
    /// found is sent to the scanner (woken by `waker`), which subscribes to that key alone. (A
    /// wildcard subscription to the data would make zenoh match every message's key against
    /// it: several times slower than an exact one.)
    fn declare_finders(
        &mut self,
        found: &mpsc::Sender<(String, Kind, String)>,
        waker: &std::thread::Thread,
    ) -> Result<(), BridgeError> {
        let mut declared = HashSet::new();
        for rule in self.ctx.rules.iter().filter(|r| r.direction.into_host()) {
            if glob::Pattern::escape(rule.pattern.as_str()) == rule.pattern.as_str() {
                continue;
            }
            for kind in [Kind::Topic, Kind::Event] {
                let key = self.ctx.keys.wildcard(&rule.namespace, kind);
                if !declared.insert((rule.namespace.clone(), key.clone())) {
                    continue;
                }
                let (found, waker, namespace) =
                    (found.clone(), waker.clone(), rule.namespace.clone());
                let finder = self
                    .ctx
                    .session
                    .liveliness()
                    .declare_subscriber(key.as_str())
                    .history(true)
                    .callback(move |token| {
                        if token.kind() == SampleKind::Put {
                            let _ = found.send((
                                namespace.clone(),
                                kind,
                                token.key_expr().as_str().to_owned(),
                            ));
                            waker.unpark();
                        }
                    })
                    .wait()
                    .map_err(|e| BridgeError::Declare {
                        what: "a liveliness subscriber",
                        key: key.clone(),
                        reason: e.to_string(),
                    })?;
                tracing::info!(key, namespace = %rule.namespace, "carrying in what matches");
                self.finders.push(finder);
            }
        }
        Ok(())
    }

    /// This bridge's id, as it travels with every message it sends.
    pub fn id(&self) -> u64 {
        self.ctx.id
    }

    /// The counters of every service carried so far.
    pub fn stats(&self) -> Stats {
        let info = self.ctx.session.info();
        let peers = info.peers_zid().wait().count() + info.routers_zid().wait().count();
        self.ctx.registry.stats(self.ctx.id, peers)
    }

    /// Stops the bridge (as dropping it does).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let Some(scanner) = self.scanner.take() else { return };
        // Release: pairs with `Context::stopping`'s Acquire load.
        self.ctx.stop.store(true, Ordering::Release);
        scanner.thread().unpark();
        if scanner.join().is_err() {
            tracing::error!("the scanning thread panicked");
        }
        for finder in self.finders.drain(..) {
            if let Err(e) = finder.undeclare().wait() {
                tracing::debug!("cannot undeclare a liveliness subscriber: {e}");
            }
        }
        self.topics.clear();
        self.events.clear();
        if let Err(e) = self.ctx.session.close().wait() {
            tracing::debug!("cannot close the zenoh session cleanly: {e}");
        }
        tracing::info!(bridge = format_args!("{:016x}", self.ctx.id), "bridge stopped");
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A random id for this bridge (std's per-process random hash keys, over the pid and time).
fn random_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish().max(1)
}

/// A service of the in direction: namespace, kind (topic or event), name.
type DataId = (String, Kind, String);

/// Subscribes to one service's key (topic samples or event ids), delivering into its local
/// service. The callback holds the service's state, so a message costs no look-up.
fn declare_data(
    ctx: &Arc<Context>,
    topics: &Topics,
    events: &Events,
    (namespace, kind, name): &DataId,
) -> Result<zenoh::pubsub::Subscriber<()>, BridgeError> {
    let key = ctx.keys.key(namespace, name, *kind);
    let weak = Arc::downgrade(ctx);
    let builder = ctx.session.declare_subscriber(key.as_str()).allowed_origin(Locality::Remote);
    let declared = match kind {
        Kind::Event => {
            let state = events.state(ctx, namespace, name);
            builder
                .callback(move |sample| {
                    if let Some(ctx) = weak.upgrade() {
                        state.deliver(&ctx, &sample);
                    }
                })
                .wait()
        }
        _ => {
            let state = topics.state(ctx, namespace, name);
            builder
                .callback(move |sample| {
                    if let Some(ctx) = weak.upgrade() {
                        state.deliver(&ctx, &sample);
                    }
                })
                .wait()
        }
    };
    let subscriber = declared.map_err(|e| BridgeError::Declare {
        what: "a subscriber",
        key: key.clone(),
        reason: e.to_string(),
    })?;
    tracing::info!(key, "carrying in");
    Ok(subscriber)
}

/// Which carrier: kind, out (or in), namespace, service.
type CarrierKey = (Kind, bool, String, String);

/// A carrier thread and its stop flag.
#[derive(Debug)]
struct Carrier {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The scanning thread's state.
#[derive(Debug)]
struct Scanner {
    ctx: Arc<Context>,
    topics: Arc<Topics>,
    events: Arc<Events>,
    carriers: HashMap<CarrierKey, Carrier>,
    /// Rpc services (namespace, name) with a live local server other than this bridge.
    served: HashSet<(String, String)>,
    declared: (mpsc::Sender<Declared>, mpsc::Receiver<Declared>),
    next_decl_query: Instant,
    scan_failures: u64,
    /// The zenoh subscribers of the in direction, by service.
    data: HashMap<DataId, zenoh::pubsub::Subscriber<()>>,
    /// Keys of remote services found by the liveliness subscribers.
    discovered: mpsc::Receiver<(String, Kind, String)>,
}

impl Scanner {
    fn new(
        bridge: &Bridge,
        data: HashMap<DataId, zenoh::pubsub::Subscriber<()>>,
        discovered: mpsc::Receiver<(String, Kind, String)>,
    ) -> Scanner {
        Scanner {
            data,
            discovered,
            ctx: Arc::clone(&bridge.ctx),
            topics: Arc::clone(&bridge.topics),
            events: Arc::clone(&bridge.events),
            carriers: HashMap::new(),
            served: HashSet::new(),
            declared: mpsc::channel(),
            next_decl_query: Instant::now(),
            scan_failures: 0,
        }
    }

    fn run(mut self) {
        while !self.ctx.stopping() {
            self.carriers.retain(|_, carrier| !carrier.thread.is_finished());
            self.subscribe_discovered();
            self.scan();
            self.query_declarations();
            std::thread::park_timeout(self.ctx.scan_interval);
        }
        for carrier in self.carriers.values() {
            // Release: pairs with the carrier's Acquire load.
            carrier.stop.store(true, Ordering::Release);
        }
        for (_, carrier) in self.carriers.drain() {
            if carrier.thread.join().is_err() {
                tracing::error!("a carrier thread panicked");
            }
        }
        for (_, subscriber) in self.data.drain() {
            if let Err(e) = subscriber.undeclare().wait() {
                tracing::debug!("cannot undeclare a subscriber: {e}");
            }
        }
    }

    /// Subscribes to the remote services the liveliness subscribers found, if a rule carries
    /// them in.
    fn subscribe_discovered(&mut self) {
        let found: Vec<(String, Kind, String)> = self.discovered.try_iter().collect();
        for (namespace, kind, key) in found {
            let Some(name) = self.ctx.keys.service_of(&key, &namespace, kind) else {
                Service::add(&self.ctx.registry.unattributed, 1);
                continue;
            };
            let id = (namespace, kind, name.to_owned());
            if self.data.contains_key(&id) || !self.ctx.directions(&id.0, &id.2).1 {
                continue;
            }
            match declare_data(&self.ctx, &self.topics, &self.events, &id) {
                Ok(subscriber) => {
                    self.data.insert(id, subscriber);
                }
                Err(e) => tracing::warn!("{e} (will retry when the service is found again)"),
            }
        }
    }

    /// Starts carriers for the local services the rules carry.
    fn scan(&mut self) {
        let services = match discovery::list(self.ctx.root.as_deref()) {
            Ok(services) => services,
            Err(e) => {
                self.scan_failures += 1;
                if self.scan_failures.is_power_of_two() {
                    tracing::warn!(
                        "cannot list the local services ({} times): {e}",
                        self.scan_failures
                    );
                }
                return;
            }
        };
        let me = std::process::id();
        self.served = services
            .iter()
            .filter(|s| s.kind == ServiceKind::Rpc && s.problem.is_none())
            .filter_map(|s| {
                let name = s.name.strip_suffix(".req")?;
                let live =
                    s.subscribers.iter().any(|p| p.liveness != Liveness::Dead && p.pid != Some(me));
                live.then(|| (s.namespace.clone(), name.to_owned()))
            })
            .collect();
        for info in services {
            if info.problem.is_some() || self.ctx.node(&info.namespace).is_none() {
                continue;
            }
            self.consider(&info);
        }
    }

    fn consider(&mut self, info: &ServiceInfo) {
        let namespace = &info.namespace;
        match info.kind {
            ServiceKind::Topic => {
                let (out, _) = self.ctx.directions(namespace, &info.name);
                let key = (Kind::Topic, true, namespace.clone(), info.name.clone());
                if out && !self.carriers.contains_key(&key) {
                    self.start_topic_out(key);
                }
            }
            ServiceKind::Event => {
                let (out, _) = self.ctx.directions(namespace, &info.name);
                let key = (Kind::Event, true, namespace.clone(), info.name.clone());
                if out && !self.carriers.contains_key(&key) {
                    self.start_event_out(key);
                }
            }
            ServiceKind::Rpc => {
                let Some(name) = info.name.strip_suffix(".req") else { return };
                let (out, into) = self.ctx.directions(namespace, name);
                let served = self.served.contains(&(namespace.clone(), name.to_owned()));
                let out_key = (Kind::Rpc, true, namespace.clone(), name.to_owned());
                let in_key = (Kind::Rpc, false, namespace.clone(), name.to_owned());
                match self.carriers.get(&out_key) {
                    // The local server went away: stop serving remote clients from it.
                    // (Release: pairs with the carrier's Acquire load.)
                    Some(carrier) if !served => carrier.stop.store(true, Ordering::Release),
                    Some(_) => {}
                    None if out && served => self.start_rpc(out_key.clone(), None),
                    None => {}
                }
                if into
                    && !served
                    && !self.carriers.contains_key(&out_key)
                    && !self.carriers.contains_key(&in_key)
                {
                    self.start_rpc(in_key, None);
                }
            }
        }
    }

    /// Asks the remote bridges for their rpc services, and serves those the rules carry in.
    fn query_declarations(&mut self) {
        if Instant::now() >= self.next_decl_query {
            self.next_decl_query = Instant::now() + DECL_QUERY_EVERY;
            let namespaces: HashSet<&str> = self
                .ctx
                .rules
                .iter()
                .filter(|r| r.direction.into_host())
                .map(|r| r.namespace.as_str())
                .collect();
            for namespace in namespaces {
                let wildcard = self.ctx.keys.wildcard(namespace, Kind::Rpc);
                rpc::query_declarations(&self.ctx, namespace, &wildcard, self.declared.0.clone());
            }
        }
        let answers: Vec<Declared> = self.declared.1.try_iter().collect();
        for declared in answers {
            let namespace = declared.namespace.clone();
            let (_, into) = self.ctx.directions(&namespace, &declared.service);
            let in_key = (Kind::Rpc, false, namespace.clone(), declared.service.clone());
            let out_key = (Kind::Rpc, true, namespace.clone(), declared.service.clone());
            let served = self.served.contains(&(namespace.clone(), declared.service.clone()));
            if into
                && !served
                && !self.carriers.contains_key(&in_key)
                && !self.carriers.contains_key(&out_key)
            {
                self.start_rpc(in_key, Some(declared));
            }
        }
    }

    fn start_topic_out(&mut self, key: CarrierKey) {
        let (_, _, namespace, name) = &key;
        let Some(node) = self.ctx.node(namespace) else { return };
        let topic = match node.raw_topic(name).open() {
            Ok(topic) => topic,
            Err(e) => {
                let service = self.ctx.registry.service(namespace, Kind::Topic, name);
                if service.may_warn() {
                    tracing::warn!(service = %name, "cannot open the local topic to carry it out: {e}");
                }
                return;
            }
        };
        let state = self.topics.state(&self.ctx, namespace, name);
        let ctx = Arc::clone(&self.ctx);
        self.spawn(key, move |stop| crate::topic::carry_out(&ctx, &state, &topic, stop));
    }

    fn start_event_out(&mut self, key: CarrierKey) {
        let (_, _, namespace, name) = &key;
        let Some(node) = self.ctx.node(namespace) else { return };
        let event = match node.event(name).open_or_create() {
            Ok(event) => event,
            Err(e) => {
                let service = self.ctx.registry.service(namespace, Kind::Event, name);
                if service.may_warn() {
                    tracing::warn!(service = %name, "cannot open the local event service to carry it out: {e}");
                }
                return;
            }
        };
        let state = self.events.state(&self.ctx, namespace, name);
        let ctx = Arc::clone(&self.ctx);
        self.spawn(key, move |stop| crate::event::carry_out(&ctx, &state, &event, stop));
    }

    /// Starts an rpc carrier; `declared`: the remote types, to create the service with.
    fn start_rpc(&mut self, key: CarrierKey, declared: Option<Declared>) {
        let (_, out, namespace, name) = &key;
        let Some(node) = self.ctx.node(namespace) else { return };
        let service = self.ctx.registry.service(namespace, Kind::Rpc, name);
        let builder = node.raw_rpc(name);
        let builder = match declared {
            Some(d) => builder.types(d.request, d.response),
            None => builder,
        };
        let rpc = match builder.open_or_create() {
            Ok(rpc) => rpc,
            Err(e) => {
                if matches!(e, shmlane::TopicError::TypeMismatch { .. }) {
                    Service::add(&service.type_mismatches, 1);
                }
                if service.may_warn() {
                    tracing::warn!(service = %name, "cannot open the local rpc service: {e}");
                }
                return;
            }
        };
        let ctx = Arc::clone(&self.ctx);
        let wire_key = self.ctx.keys.key(namespace, name, Kind::Rpc);
        let out = *out;
        self.spawn(key, move |stop| {
            if out {
                rpc::carry_out(&ctx, &service, &wire_key, &rpc, stop);
            } else {
                rpc::carry_in(&ctx, &service, &wire_key, &rpc, stop);
            }
        });
    }

    fn spawn(&mut self, key: CarrierKey, run: impl FnOnce(&AtomicBool) + Send + 'static) {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let direction = if key.1 { "out" } else { "in" };
        let name = format!("{direction}-{}", key.3);
        match std::thread::Builder::new().name(name).spawn(move || run(&flag)) {
            Ok(thread) => {
                self.carriers.insert(key, Carrier { stop, thread });
            }
            Err(e) => {
                tracing::warn!(service = %key.3, "cannot start a carrier thread (will retry): {e}")
            }
        }
    }
}
