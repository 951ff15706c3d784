//! `shmlane list`, `inspect` and `clean`, run as the built binary on segments and services
//! these tests made: live ones held by this process, and stale ones left by child processes
//! killed with SIGKILL (`shmlane_testkit` re-executes this binary as the child).
//!
//! Every test keeps its segments in a temporary directory of its own (`--root`, as
//! `Node::builder(..).root(dir)`), except the one that checks `/dev/shm` itself, which uses a
//! namespace of its own and removes what it made.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use shmlane::{Node, Topic};
use shmlane_segment::{Backing, Fingerprint, Segment};
use shmlane_testkit::{ChildProc, child_spec, exit_child, fail, report, spawn_child, split_spec};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("own", [root, namespace]) => child_own(root, namespace),
        ("create", [root, namespace]) => child_create(root, namespace),
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

fn node(root: &Path, namespace: &str, name: &str) -> Node {
    let node = Node::builder(name).namespace(namespace).root(root).create();
    node.unwrap_or_else(|e| fail(3, format!("node {name}: {e}")))
}

/// Creates topic `doomed`, publishes and subscribes to it, sends 3 samples, reports, and
/// waits to be killed: it leaves a control segment, a payload segment and a node registration.
fn child_own(root: &str, namespace: &str) {
    let node = node(Path::new(root), namespace, "child");
    let topic = node.topic::<u64>("doomed").create().unwrap_or_else(|e| fail(3, e));
    let publisher = topic.publisher().unwrap_or_else(|e| fail(3, e));
    let _subscriber = topic.subscriber().unwrap_or_else(|e| fail(3, e));
    for value in 1..=3 {
        publisher.send_copy(value).unwrap_or_else(|e| fail(3, e));
    }
    report("ready", 1);
    shmlane_testkit::sleep_until_killed()
}

/// Creates topic `shared` and publishes on it, reports, waits to be killed.
fn child_create(root: &str, namespace: &str) {
    let node = node(Path::new(root), namespace, "creator");
    let topic = node.topic::<u64>("shared").create().unwrap_or_else(|e| fail(3, e));
    let _publisher = topic.publisher().unwrap_or_else(|e| fail(3, e));
    report("ready", 1);
    shmlane_testkit::sleep_until_killed()
}

/// A child running `role` in `root` and `namespace`, once it is ready (kill it then).
fn ready_child(role: &str, root: &Path, namespace: &str) -> ChildProc {
    let mut child = spawn_child(role, &[root.to_str().unwrap(), namespace]);
    child.report("ready", TIMEOUT);
    child
}

/// What the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn shmlane(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_shmlane")).args(args).output().unwrap();
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `shmlane ARGS --root ROOT` and expects exit code `code`.
fn shmlane_in(root: &Path, args: &[&str], code: i32) -> Run {
    let mut all = args.to_vec();
    all.extend(["--root", root.to_str().unwrap()]);
    let run = shmlane(&all);
    assert_eq!(
        run.code, code,
        "shmlane {all:?} exited {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    );
    run
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// `list --json` in `root`, segments by name.
fn listed(root: &Path) -> Vec<Value> {
    let list = json(&shmlane_in(root, &["list", "--json"], 0));
    assert_eq!(list["dir"].as_str(), root.to_str());
    list["segments"].as_array().unwrap().clone()
}

fn find<'a>(segments: &'a [Value], name: &str) -> &'a Value {
    segments.iter().find(|segment| segment["name"] == name).unwrap_or_else(|| {
        let names: Vec<_> = segments.iter().map(|segment| segment["name"].to_string()).collect();
        panic!("{name} not listed; listed: {names:?}")
    })
}

/// `(pid, liveness)` of every peer in `peers`.
fn peers(peers: &Value) -> Vec<(u64, &str)> {
    let peers = peers.as_array().unwrap();
    peers.iter().map(|p| (p["pid"].as_u64().unwrap(), p["liveness"].as_str().unwrap())).collect()
}

/// Whether `peers` is one dead peer, `pid` or unknown: a dead process's pid is read from its
/// presence file, which any node creation (another test's, in parallel) may have swept.
fn one_dead(peers: &Value, pid: u64) -> bool {
    let peers = peers.as_array().unwrap();
    peers.len() == 1
        && peers[0]["liveness"].as_str() == Some("dead")
        && peers[0]["pid"].as_u64().is_none_or(|found| found == pid)
}

/// The names of the files in `root`.
fn files(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn me() -> u64 {
    u64::from(std::process::id())
}

/// Three namespaces in one directory: `dead` (a killed child's topic), `mixed` (a killed
/// child's topic that this process subscribes to) and `live` (this process's topic).
struct Scene {
    dir: tempfile::TempDir,
    child: u32,
    creator: u32,
    _live: Node,
    _mixed: Node,
}

impl Scene {
    fn root(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

/// Builds a [`Scene`]; `hold` runs with the live and mixed topics open and returns what must
/// stay alive.
fn scene() -> (Scene, Topic<u64>, Topic<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut child, mut creator) =
        (ready_child("own", root, "dead"), ready_child("create", root, "mixed"));
    // Before the kills: creating a node removes its namespace's dead nodes' registrations.
    let live = node(root, "live", "parent");
    let mixed = node(root, "mixed", "parent");
    child.kill_while_running();
    creator.kill_while_running();
    let (child, creator) = (child.pid(), creator.pid());
    let ticks = live.topic::<u64>("ticks").create().unwrap();
    let shared = mixed.topic::<u64>("shared").open().unwrap();
    (Scene { dir, child, creator, _live: live, _mixed: mixed }, ticks, shared)
}

#[test]
fn list_shows_live_and_stale_services_with_kind_peers_and_liveness() {
    let (scene, ticks, shared) = scene();
    let root = scene.root();
    let _publisher = ticks.publisher().unwrap();
    let _subscribers = [ticks.subscriber().unwrap(), ticks.subscriber().unwrap()];
    let _shared_subscriber = shared.subscriber().unwrap();
    let segments = listed(&root);

    let live = find(&segments, "live.topic.ticks");
    assert_eq!((live["kind"].as_str(), live["state"].as_str()), (Some("topic"), Some("alive")));
    assert_eq!(live["creator_pid"].as_u64(), Some(me()));
    assert_eq!(live["namespace"].as_str(), Some("live"));
    assert_eq!(live["service"]["payload_type"]["name"].as_str(), Some("u64"));
    assert_eq!(peers(&live["service"]["publishers"]), [(me(), "alive")]);
    assert_eq!(peers(&live["service"]["subscribers"]), [(me(), "alive"), (me(), "alive")]);
    let live_payload = find(&segments, "live.topic.ticks.p0.g1");
    assert_eq!(live_payload["kind"].as_str(), Some("payload"));
    assert_eq!(live_payload["state"].as_str(), Some("alive"));

    let child = u64::from(scene.child);
    let dead = find(&segments, "dead.topic.doomed");
    assert_eq!((dead["kind"].as_str(), dead["state"].as_str()), (Some("topic"), Some("stale")));
    assert_eq!(
        (dead["creator_pid"].as_u64(), dead["creator_liveness"].as_str()),
        (Some(child), Some("dead"))
    );
    assert!(one_dead(&dead["service"]["publishers"], child), "{dead}");
    assert!(one_dead(&dead["service"]["subscribers"], child), "{dead}");
    let dead_payload = find(&segments, "dead.topic.doomed.p0.g1");
    assert_eq!(dead_payload["state"].as_str(), Some("stale"));
    assert_eq!(dead_payload["payload_of"]["topic"].as_str(), Some("dead.topic.doomed"));
    let dead_node = find(&segments, &format!("dead.node.child.{child}.0"));
    assert_eq!(
        (dead_node["kind"].as_str(), dead_node["state"].as_str()),
        (Some("node"), Some("stale"))
    );
    assert_eq!(dead_node["node"]["liveness"].as_str(), Some("dead"));

    // Its creator is dead, but this process subscribes: alive, and so is its payload.
    let creator = u64::from(scene.creator);
    let mixed = find(&segments, "mixed.topic.shared");
    assert_eq!(
        (mixed["state"].as_str(), mixed["creator_pid"].as_u64()),
        (Some("alive"), Some(creator))
    );
    assert!(one_dead(&mixed["service"]["publishers"], creator), "{mixed}");
    assert_eq!(peers(&mixed["service"]["subscribers"]), [(me(), "alive")]);
    assert_eq!(find(&segments, "mixed.topic.shared.p0.g1")["state"].as_str(), Some("alive"));
    let creator_node = find(&segments, &format!("mixed.node.creator.{creator}.0"));
    assert_eq!(creator_node["state"].as_str(), Some("stale"), "a dead node's registration");

    let table = shmlane_in(&root, &["list"], 0).stdout;
    let row = |name: &str| {
        let row = table.lines().find(|l| l.split_whitespace().next() == Some(name));
        row.unwrap_or_else(|| panic!("no row {name} in\n{table}")).to_owned()
    };
    let dead_row = row("dead.topic.doomed");
    for word in ["topic", "stale"] {
        assert!(dead_row.contains(word), "{word:?} not in {dead_row:?}");
    }
    for role in ["pub", "sub"] {
        let known = format!("{role} {child} dead");
        let swept = format!("{role} ? dead");
        assert!(dead_row.contains(&known) || dead_row.contains(&swept), "{role}: {dead_row:?}");
    }
    let live_row = row("live.topic.ticks");
    assert!(
        live_row.contains("alive") && live_row.contains(&format!("sub {} alive, {0} alive", me()))
    );
    let only = shmlane_in(&root, &["list", "--json", "--namespace", "dead"], 0);
    let only = json(&only)["segments"].as_array().unwrap().clone();
    assert_eq!(only.len(), 3, "the dead namespace's topic, payload and node: {only:?}");
}

/// A payload type of the user's, derived through shmlane's re-exports of zerocopy. This package
/// does not depend on zerocopy (see its `Cargo.toml`): the derives compile only because
/// `#[zerocopy(crate = "shmlane::zerocopy")]` leads them to shmlane's re-export.
#[derive(
    Clone, Copy, shmlane::FromBytes, shmlane::IntoBytes, shmlane::KnownLayout, shmlane::Immutable,
)]
#[zerocopy(crate = "shmlane::zerocopy")]
#[repr(C)]
struct Quote {
    price: f64,
    size: u32,
    venue: u32,
}

#[test]
fn inspect_names_a_payload_type_derived_through_shmlane() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let node = node(root, "app", "parent");
    let topic = node.topic::<Quote>("quotes").create().unwrap();
    let publisher = topic.publisher().unwrap();
    let subscriber = topic.subscriber().unwrap();
    publisher.send_copy(Quote { price: 101.25, size: 3, venue: 7 }).unwrap();
    let quote = subscriber.receive().unwrap().expect("sent above");
    assert_eq!((quote.price, quote.size, quote.venue), (101.25, 3, 7));

    let detail = json(&shmlane_in(root, &["inspect", "app.topic.quotes", "--json"], 0));
    let payload = &detail["topic"]["type"];
    let name = std::any::type_name::<Quote>();
    assert_eq!(payload["name"].as_str(), Some(name));
    assert_eq!((payload["size"].as_u64(), payload["align"].as_u64()), (Some(16), Some(8)));
    let text = shmlane_in(root, &["inspect", "app.topic.quotes"], 0).stdout;
    let expected = format!("payload      {name}: 16 bytes, align 8, version 0\n");
    assert!(text.contains(&expected), "{expected:?} not in\n{text}");
}

#[test]
fn inspect_shows_queue_fill_pool_use_and_drops_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let node = node(root, "app", "parent");
    // Wider than a queue slot's line: every sample takes a payload block.
    let topic =
        node.topic::<[u64; 8]>("ticks").subscriber_capacity(8).max_subscribers(2).create().unwrap();
    let (first, second) = (topic.subscriber().unwrap(), topic.subscriber().unwrap());
    let publisher = topic.publisher().unwrap();
    for value in 1..=5 {
        publisher.send_copy([value; 8]).unwrap();
    }
    let inspected = |name: &str| json(&shmlane_in(root, &["inspect", name, "--json"], 0));
    let detail = inspected("app.topic.ticks");
    assert_eq!(detail["state"].as_str(), Some("alive"));
    let header = &detail["header"];
    assert_eq!(header["magic"].as_str(), Some("SHMLANE\\x00"));
    assert_eq!(
        (header["format_version"].as_u64(), header["header_size"].as_u64()),
        (Some(2), Some(128))
    );
    assert_eq!(header["creator_pid"].as_u64(), Some(me()));
    assert_eq!(header["init_state"].as_str(), Some("ready"));
    assert_eq!(header["layout"].as_str(), Some("topic control segment"));
    assert_eq!(header["total_size"], detail["size"]);
    let topic_json = &detail["topic"];
    assert_eq!(topic_json["config"]["subscriber_capacity"].as_u64(), Some(8));
    assert_eq!(topic_json["type"]["name"].as_str(), Some("[u64; 8]"));
    assert_eq!(topic_json["problems"].as_array().map(Vec::len), Some(0));
    // Blocks: 4 loans + 2 subscribers × (8 queued + 8 held).
    let pool = &topic_json["publishers"][0]["pools"][0];
    assert_eq!(pool["name"].as_str(), Some("app.topic.ticks.p0.g1"));
    assert_eq!((pool["blocks"].as_u64(), pool["queued"].as_u64()), (Some(36), Some(5)));
    let subscribers = topic_json["subscribers"].as_array().unwrap();
    assert_eq!(subscribers.len(), 2);
    for subscriber in subscribers {
        let queue = &subscriber["queues"][0];
        assert_eq!((queue["queued"].as_u64(), queue["capacity"].as_u64()), (Some(5), Some(8)));
        assert_eq!(
            (queue["served"].as_bool(), subscriber["drops"].as_u64()),
            (Some(true), Some(0))
        );
    }

    // 5 more: each queue of 8 evicts its 2 oldest (drops); the first subscriber takes one
    // and hands it back (at once: a dropped sample's block is otherwise returned by the next
    // `receive` that finds nothing).
    for value in 6..=10 {
        publisher.send_copy([value; 8]).unwrap();
    }
    assert_eq!(first.receive().unwrap().unwrap()[0], 3);
    first.flush_returns();
    let detail = inspected("app.topic.ticks");
    let subscribers = &detail["topic"]["subscribers"];
    let fill = |slot: usize| {
        let queue = &subscribers[slot]["queues"][0];
        [&queue["queued"], &queue["returned"], &subscribers[slot]["drops"]]
            .map(|count| count.as_u64().unwrap())
    };
    assert_eq!(fill(0), [7, 1, 2], "queued, returned, drops of the first");
    assert_eq!(fill(1), [8, 0, 2], "of the second");
    assert_eq!(detail["topic"]["publishers"][0]["pools"][0]["queued"].as_u64(), Some(8));

    let text = shmlane_in(root, &["inspect", "app.topic.ticks"], 0).stdout;
    for expected in
        ["state        alive", "7 of 8 queued, 1 returned", "drops 2", "8 of 36 blocks in queues"]
    {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
    // The same segment by file name and by service name; the payload segment by its name.
    assert_eq!(inspected("shmlane.app.topic.ticks")["name"].as_str(), Some("app.topic.ticks"));
    let by_service = json(&shmlane_in(root, &["inspect", "ticks", "-n", "app", "--json"], 0));
    assert_eq!(by_service["name"].as_str(), Some("app.topic.ticks"));
    let payload = inspected("app.topic.ticks.p0.g1");
    assert_eq!(payload["header"]["layout"].as_str(), Some("topic payload segment"));
    assert_eq!(
        (payload["pool"]["blocks"].as_u64(), payload["pool"]["queued"].as_u64()),
        (Some(36), Some(8))
    );
    drop((first, second));

    // A `u64` travels inline in its queue slot: queued, with no block in use.
    let small = node.topic::<u64>("small").subscriber_capacity(8).create().unwrap();
    let subscriber = small.subscriber().unwrap();
    let publisher = small.publisher().unwrap();
    for value in 1..=3 {
        publisher.send_copy(value).unwrap();
    }
    let detail = inspected("app.topic.small");
    let queue = &detail["topic"]["subscribers"][0]["queues"][0];
    assert_eq!((queue["queued"].as_u64(), queue["inline"].as_u64()), (Some(3), Some(3)));
    assert_eq!(detail["topic"]["publishers"][0]["pools"][0]["queued"].as_u64(), Some(0));
    let text = shmlane_in(root, &["inspect", "app.topic.small"], 0).stdout;
    assert!(text.contains("3 of 8 queued (3 inline), 0 returned"), "{text}");
    assert_eq!(*subscriber.receive().unwrap().unwrap(), 1);
}

#[test]
fn missing_ambiguous_and_corrupt_names_exit_with_their_codes_and_clean_never_removes_corrupt_files()
{
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let node = node(root, "app", "parent");
    let _rpc = node.rpc::<u64, u64>("adder").open_or_create().unwrap();
    std::fs::write(root.join("shmlane.junk"), [0xab; 4096]).unwrap();
    std::fs::write(root.join("shmlane.tiny"), b"not ours").unwrap();
    std::fs::write(root.join("other.file"), [0u8; 256]).unwrap();
    // Zero-filled and old: what a creator killed before writing its header leaves.
    let empty = std::fs::File::create(root.join("shmlane.empty")).unwrap();
    empty.set_len(4096).unwrap();
    empty.set_modified(SystemTime::now() - Duration::from_secs(60)).unwrap();
    // A valid segment named and fingerprinted as a topic, whose topic header is zeros. The
    // fingerprint mirrors `topic::SEGMENT_FINGERPRINT` in crates/shmlane/src/topic/mod.rs.
    let _bogus = Segment::builder("app.topic.bogus")
        .backing(Backing::Dir(root.to_owned()))
        .fingerprint(Fingerprint::new("shmlane.topic").with_u64(3))
        .size(4096)
        .create()
        .unwrap();

    let missing = shmlane_in(root, &["inspect", "nothing"], 3);
    assert!(missing.stderr.contains("no segment or service \"nothing\""), "{}", missing.stderr);
    let ambiguous = shmlane_in(root, &["inspect", "adder"], 2);
    assert!(
        ambiguous.stderr.contains("app.rpc.adder.req, app.rpc.adder.resp"),
        "{}",
        ambiguous.stderr
    );
    shmlane_in(root, &["inspect", "adder.req"], 0);
    for junk in ["junk", "shmlane.tiny", "bogus"] {
        let corrupt = shmlane_in(root, &["inspect", junk], 4);
        assert!(corrupt.stderr.contains("is corrupt"), "{}", corrupt.stderr);
        assert!(corrupt.stdout.contains("state        corrupt"), "{}", corrupt.stdout);
    }
    let segments = listed(root);
    for name in ["junk", "tiny", "app.topic.bogus"] {
        assert_eq!(find(&segments, name)["state"].as_str(), Some("corrupt"), "{name}");
    }
    let bogus = find(&segments, "app.topic.bogus");
    assert!(bogus["reason"].as_str().unwrap().contains("not a shmlane topic"), "{bogus}");
    assert_eq!(find(&segments, "empty")["state"].as_str(), Some("stale"));

    let cleaned = shmlane_in(root, &["clean"], 0).stdout;
    assert!(cleaned.contains("left alone: junk"), "{cleaned}");
    assert!(cleaned.contains("removed empty"), "{cleaned}");
    shmlane_in(root, &["clean", "--force"], 0);
    assert_eq!(
        files(root),
        ["other.file", "shmlane.app.topic.bogus", "shmlane.junk", "shmlane.tiny"],
        "--force spares corrupt and foreign files"
    );
    drop(node);
}

#[test]
fn clean_removes_only_what_is_stale_and_force_the_live_too_and_dry_runs_remove_nothing() {
    let (scene, ticks, shared) = scene();
    let root = scene.root();
    let publisher = ticks.publisher().unwrap();
    let _subscriber = shared.subscriber().unwrap();
    let (child, creator) = (scene.child, scene.creator);
    let before = files(&root);
    let stale = [
        "shmlane.dead.topic.doomed".to_owned(),
        "shmlane.dead.topic.doomed.p0.g1".to_owned(),
        format!("shmlane.dead.node.child.{child}.0"),
        format!("shmlane.mixed.node.creator.{creator}.0"),
    ];
    for file in &stale {
        assert!(before.contains(file), "{file} not in {before:?}");
    }

    let dry = shmlane_in(&root, &["clean", "--dry-run"], 0).stdout;
    assert_eq!(files(&root), before, "a dry run removes nothing:\n{dry}");
    for file in &stale {
        let name = file.strip_prefix("shmlane.").unwrap();
        assert!(dry.contains(&format!("would remove {name} ")), "{name} not in\n{dry}");
    }

    let cleaned = shmlane_in(&root, &["clean"], 0).stdout;
    let mut expected: Vec<String> = before.iter().filter(|f| !stale.contains(f)).cloned().collect();
    assert_eq!(files(&root), expected, "clean removes the stale ones:\n{cleaned}");
    assert!(cleaned.contains("removed 4 segment(s); kept 6 live"), "{cleaned}");
    assert!(
        expected.contains(&"shmlane.mixed.topic.shared.p0.g1".to_owned()),
        "a live topic keeps its dead publisher's payload"
    );

    let forced_dry = shmlane_in(&root, &["clean", "--force", "--dry-run"], 0).stdout;
    assert_eq!(files(&root), expected, "a dry run removes nothing:\n{forced_dry}");
    assert!(forced_dry.contains("--force would remove 6 live segment(s):"), "{forced_dry}");
    assert!(forced_dry.contains("  live.topic.ticks (topic, alive;"), "{forced_dry}");

    let forced = shmlane_in(&root, &["clean", "--force"], 0).stdout;
    expected.clear();
    assert_eq!(files(&root), expected, "--force removes the live ones:\n{forced}");
    assert!(forced.contains("--force: removing 6 live segment(s):"), "{forced}");
    // Removing the names does not disturb the processes that use them.
    publisher.send_copy(7).unwrap();
}

#[test]
fn the_default_directory_is_dev_shm_and_events_list_their_listeners() {
    let namespace = format!("ops{}", std::process::id());
    {
        let node = Node::builder("parent").namespace(&namespace).create().unwrap();
        let event = node.event("bell").open_or_create().unwrap();
        let _listener = event.listener().unwrap();
        let run = shmlane(&["list", "--json", "--namespace", &namespace]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let segments = json(&run)["segments"].as_array().unwrap().clone();
        assert_eq!(json(&run)["dir"].as_str(), Some("/dev/shm"));
        let bell = find(&segments, &format!("{namespace}.event.bell"));
        assert_eq!((bell["kind"].as_str(), bell["state"].as_str()), (Some("event"), Some("alive")));
        assert_eq!(peers(&bell["service"]["subscribers"]), [(me(), "alive")]);
        let in_shm = shmlane(&["list", "--json", "-n", &namespace, "--root", "/dev/shm"]);
        assert_eq!(json(&in_shm)["segments"].as_array().map(Vec::len), Some(segments.len()));
        let dry = shmlane(&["clean", "--dry-run", "-n", &namespace]);
        assert!(dry.stdout.contains("would remove 0 segment(s); kept 2 live"), "{}", dry.stdout);
    }
    let prefix = format!("shmlane.{namespace}.");
    assert!(
        files(Path::new("/dev/shm")).iter().all(|f| !f.starts_with(&prefix)),
        "this test leaves nothing in /dev/shm"
    );
}
