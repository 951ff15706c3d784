//! Crash injection in request/response: a server killed with requests pending (its clients get
//! an error within their timeout, a new server takes over), clients killed with a response in
//! flight (the server and the other clients go on, and a client that takes the dead one's slots
//! never takes an answer meant for it), and a stopped server that keeps its slot.

use std::time::{Duration, Instant};

use shmlane::notify::Blocking;
use shmlane::{Client, ConnectError, Node, ReceiveError, Rpc, Server};
use shmlane_reliability::{CRASH_AT_ENV, Flag, assert_nothing_left, finish, test_node};
use shmlane_testkit::{
    ChildProc, arg_u64, child_spec, exit_child, fail, process_lock, report, spawn_child,
    spawn_child_with_env, split_spec,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Deadline of every wait (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Add {
    a: u64,
    b: u64,
}

fn namespace(tag: &str) -> String {
    format!("cr{}{tag}", std::process::id())
}

/// The service every test uses (children open it with the creator's settings).
fn adder(node: &Node, max_clients: u32) -> Rpc<Add, u64> {
    node.rpc::<Add, u64>("adder").max_clients(max_clients).capacity(4).open_or_create().unwrap()
}

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("serve", [ns, flag]) => child_serve(ns, flag),
        ("call", [ns, id, count]) => child_call(ns, arg_u64(id), arg_u64(count)),
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

fn child_rpc(ns: &str) -> (Node, Rpc<Add, u64>) {
    let node = Node::builder("child").namespace(ns).create().unwrap_or_else(|e| fail(3, e));
    let rpc = node.rpc::<Add, u64>("adder").open_or_create().unwrap_or_else(|e| fail(3, e));
    (node, rpc)
}

/// Answers `a + b` until `flag` is raised; reports how many it answered.
fn child_serve(ns: &str, flag: &str) {
    let (_node, rpc) = child_rpc(ns);
    let server = rpc.server().unwrap_or_else(|e| fail(3, e));
    report("ready", 1);
    let mut served = 0u64;
    while !Flag::is_raised(flag) {
        match server.receive_with(&mut Blocking::new(), Some(Duration::from_millis(20))) {
            Ok(request) => {
                server.respond(&request, request.a + request.b).unwrap_or_else(|e| fail(3, e));
                served += 1;
            }
            Err(ReceiveError::TimedOut(_)) => {}
            Err(e) => fail(3, e),
        }
    }
    report("served", served);
}

/// Makes `count` calls `i + (id << 32)`, checking each answer; reports "done".
fn child_call(ns: &str, id: u64, count: u64) {
    let (_node, rpc) = child_rpc(ns);
    let client = rpc.client().unwrap_or_else(|e| fail(3, e));
    for i in 0..count {
        let answer = client.call(Add { a: i, b: id << 32 }, &mut Blocking::new(), Some(TIMEOUT));
        let answer = answer.unwrap_or_else(|e| fail(3, format!("call {i}: {e}")));
        if *answer != i + (id << 32) {
            fail(4, format!("call {i} of client {id}: got {}", *answer));
        }
    }
    report("done", count);
}

/// Spawns a `serve` child (with `env`) that serves until `Flag::new(tag)` is raised; returns
/// the flag and the child once it is ready.
fn spawn_server(ns: &str, tag: &str, env: &[(&str, &str)]) -> (Flag, ChildProc) {
    let flag = Flag::new(tag);
    let mut server = spawn_child_with_env("serve", &[ns, flag.path()], env);
    server.report("ready", TIMEOUT);
    (flag, server)
}

/// A call from this process, answered by `server` in this process.
fn call_here(client: &Client<Add, u64>, server: &Server<Add, u64>, a: u64, b: u64) -> u64 {
    let pending = client.send(Add { a, b }).unwrap();
    let request = server.receive_with(&mut Blocking::new(), Some(TIMEOUT)).unwrap();
    server.respond(&request, request.a + request.b).unwrap();
    *client.receive_with(pending, &mut Blocking::new(), Some(TIMEOUT)).unwrap()
}

#[test]
fn a_server_killed_with_requests_pending_gives_its_clients_an_error_within_their_timeout() {
    let _serial = process_lock();
    let ns = namespace("deadserver");
    let node = test_node(&ns);
    let rpc = adder(&node, 2);
    // It answers two requests and dies holding the third, its response loaned.
    let point = "shmlane.respond.loaned:3";
    let (_flag, mut server) = spawn_server(&ns, "deadserver", &[(CRASH_AT_ENV, point)]);
    let (first, second) = (rpc.client().unwrap(), rpc.client().unwrap());
    let mut strategy = Blocking::new();
    assert_eq!(*first.call(Add { a: 1, b: 1 }, &mut strategy, Some(TIMEOUT)).unwrap(), 2);
    assert_eq!(*second.call(Add { a: 2, b: 2 }, &mut strategy, Some(TIMEOUT)).unwrap(), 4);
    let killed_with = first.send(Add { a: 3, b: 3 }).unwrap();
    server.expect_crash(point, TIMEOUT);
    let queued = second.send(Add { a: 4, b: 4 }).unwrap();

    let timeout = Duration::from_millis(200);
    for (client, pending) in [(&first, killed_with), (&second, queued)] {
        let start = Instant::now();
        let result = client.receive_with(pending, &mut strategy, Some(timeout));
        let waited = start.elapsed();
        assert!(matches!(result, Err(ReceiveError::TimedOut(_))), "{result:?}");
        println!("a call to a killed server failed after {waited:?} (timeout {timeout:?})");
        assert!(waited >= timeout && waited < timeout + Duration::from_secs(1), "{waited:?}");
    }
    // Requests beyond the dead server's queue (capacity 4) do not wait out the block timeout
    // (1 s): the server is found dead and no longer waited for.
    let start = Instant::now();
    for a in 0..10 {
        let _unanswered = first.send(Add { a, b: 0 }).unwrap();
    }
    let sending = start.elapsed();
    println!("10 requests to a killed server's full queue sent in {sending:?}");
    assert!(sending < Duration::from_millis(500), "{sending:?}");

    // A new server takes the dead one's slots; both clients' calls are answered again.
    let (flag, mut successor) = spawn_server(&ns, "newserver", &[]);
    for i in 0..20 {
        let answer = first.call(Add { a: i, b: 100 }, &mut strategy, Some(TIMEOUT)).unwrap();
        assert_eq!(*answer, i + 100);
        let answer = second.call(Add { a: i, b: 200 }, &mut strategy, Some(TIMEOUT)).unwrap();
        assert_eq!(*answer, i + 200);
    }
    flag.raise();
    assert_eq!(successor.report_u64("served", TIMEOUT), 40);
    successor.expect_success(TIMEOUT);
    drop((first, second, rpc));
    // The successor's node creation already removed the dead server's registration.
    finish(node, &ns, 0, "");
}

#[test]
fn a_client_in_a_killed_clients_slots_never_takes_the_answer_meant_for_it() {
    let _serial = process_lock();
    let ns = namespace("successor");
    let node = test_node(&ns);
    let rpc = adder(&node, 2);
    let server = rpc.server().unwrap();
    let live = rpc.client().unwrap();
    assert_eq!(call_here(&live, &server, 1, 1), 2);
    // The doomed client asks 0 + 0 and dies before it reads the answer.
    let point = "shmlane.call.sent:1";
    let mut doomed = spawn_child_with_env("call", &[&ns, "0", "1"], &[(CRASH_AT_ENV, point)]);
    let orphan = server.receive_with(&mut Blocking::new(), Some(TIMEOUT)).unwrap();
    assert_eq!(orphan.a, 0);
    doomed.expect_crash(point, TIMEOUT);
    // Its successor takes its slots over and asks its own first question...
    let successor = rpc.client().unwrap();
    let pending = successor.send(Add { a: 20, b: 22 }).unwrap();
    // ...while the answer to the dead client's question is in flight to the same slot.
    server.respond(&orphan, 1000).unwrap();
    drop(orphan);
    let request = server.receive_with(&mut Blocking::new(), Some(TIMEOUT)).unwrap();
    server.respond(&request, request.a + request.b).unwrap();
    drop(request);
    let answer = successor.receive_with(pending, &mut Blocking::new(), Some(TIMEOUT)).unwrap();
    assert_eq!(*answer, 42, "took the answer meant for the dead client");
    drop(answer);
    // The server and the other client go on.
    assert_eq!(call_here(&live, &server, 2, 3), 5);
    assert_eq!(call_here(&successor, &server, 4, 5), 9);
    drop((successor, live, server, rpc));
    finish(node, &ns, 1, "");
}

#[test]
fn a_client_killed_with_a_response_in_flight_leaves_the_server_and_other_clients_going() {
    let _serial = process_lock();
    let ns = namespace("deadclient");
    let node = test_node(&ns);
    let rpc = adder(&node, 2);
    let (flag, mut server) = spawn_server(&ns, "deadclient", &[]);
    let mut steady = spawn_child("call", &[&ns, "1", "400"]);
    // Dies after sending its 50th request, its answer on the way.
    let point = "shmlane.call.sent:50";
    let mut doomed = spawn_child_with_env("call", &[&ns, "2", "400"], &[(CRASH_AT_ENV, point)]);
    doomed.expect_crash(point, TIMEOUT);
    // A client in its slots (there are two) calls as if nothing happened.
    let mut successor = spawn_child("call", &[&ns, "2", "100"]);
    assert_eq!(steady.report_u64("done", TIMEOUT), 400);
    assert_eq!(successor.report_u64("done", TIMEOUT), 100);
    steady.expect_success(TIMEOUT);
    successor.expect_success(TIMEOUT);
    flag.raise();
    // Every request was answered, the dead client's last one too (or lost with it).
    let served = server.report_u64("served", TIMEOUT);
    assert!((549..=550).contains(&served), "served {served}");
    server.expect_success(TIMEOUT);
    drop(rpc);
    // The successor's node creation already removed the dead client's registration.
    finish(node, &ns, 0, "");
}

#[test]
fn a_stopped_server_keeps_its_slot_and_answers_when_resumed() {
    let _serial = process_lock();
    let ns = namespace("stopserver");
    let node = test_node(&ns);
    let rpc = adder(&node, 1);
    let (flag, mut server) = spawn_server(&ns, "stopserver", &[]);
    let client = rpc.client().unwrap();
    let mut strategy = Blocking::new();
    assert_eq!(*client.call(Add { a: 1, b: 1 }, &mut strategy, Some(TIMEOUT)).unwrap(), 2);
    server.stop();
    let stopped = Instant::now();
    let late = client.send(Add { a: 5, b: 5 }).unwrap();
    let result = client.receive_with(late, &mut strategy, Some(Duration::from_millis(200)));
    assert!(matches!(result, Err(ReceiveError::TimedOut(_))), "{result:?}");
    drop(result);
    // Long after the client's timeout, the stopped server's slot is still its own.
    while stopped.elapsed() < Duration::from_millis(500) {
        let other = rpc.server();
        assert!(matches!(other, Err(ConnectError::NoFreeSlot { what: "server", .. })), "{other:?}");
        drop(other);
        std::thread::sleep(Duration::from_millis(20));
    }
    server.resume();
    // It answers the late request too; the client drops that answer and takes its own.
    let answer = client.call(Add { a: 7, b: 8 }, &mut strategy, Some(TIMEOUT)).unwrap();
    assert_eq!(*answer, 15);
    drop(answer);
    flag.raise();
    assert_eq!(server.report_u64("served", TIMEOUT), 3);
    server.expect_success(TIMEOUT);
    drop((client, rpc, node));
    assert_nothing_left(&ns);
}
