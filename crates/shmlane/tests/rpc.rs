//! Request/response between real processes: a server process answers two clients, each
//! response reaching the client that asked.

use std::time::Duration;

use shmlane::notify::{Backoff, Blocking};
use shmlane::{CallError, ConnectError, Node, ReceiveError};
use shmlane_testkit::{
    child_spec, exit_child, fail, process_lock, report, spawn_child, split_spec,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Add {
    a: u64,
    b: u64,
}

fn node(tag: &str) -> Node {
    Node::builder("test").namespace(format!("r{}{tag}", std::process::id())).create().unwrap()
}

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("serve", [namespace, count]) => {
            let node = Node::builder("server").namespace(*namespace).create().unwrap();
            let rpc = node.rpc::<Add, u64>("adder").open_or_create().unwrap();
            let server = rpc.server().unwrap();
            report("ready", 1);
            let mut strategy = Blocking::new();
            for _ in 0..count.parse::<u64>().unwrap() {
                let request = match server.receive_with(&mut strategy, Some(TIMEOUT)) {
                    Ok(request) => request,
                    Err(e) => fail(3, e),
                };
                server.respond(&request, request.a + request.b).unwrap();
            }
        }
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

#[test]
fn a_server_process_answers_two_clients_each_with_its_own_responses() {
    let _serial = process_lock();
    let node = node("two");
    let rpc = node.rpc::<Add, u64>("adder").open_or_create().unwrap();
    let mut server = spawn_child("serve", &[node.namespace(), "400"]);
    server.report("ready", TIMEOUT);
    let (first, second) = (rpc.client().unwrap(), rpc.client().unwrap());
    let mut strategy = Backoff::new();
    for i in 0..200u64 {
        // Two requests in flight at once: the responses must not cross.
        let p1 = first.send(Add { a: i, b: 1 }).unwrap();
        let p2 = second.send(Add { a: i, b: 1000 }).unwrap();
        let r2 = second.receive_with(p2, &mut strategy, Some(TIMEOUT)).unwrap();
        let r1 = first.receive_with(p1, &mut strategy, Some(TIMEOUT)).unwrap();
        assert_eq!((*r1, *r2), (i + 1, i + 1000), "request {i}");
    }
    server.expect_success(TIMEOUT);
}

#[test]
fn a_call_without_a_server_times_out_with_an_error() {
    let node = node("noserver");
    let rpc = node.rpc::<Add, u64>("lonely").open_or_create().unwrap();
    let client = rpc.client().unwrap();
    let result =
        client.call(Add { a: 1, b: 2 }, &mut Blocking::new(), Some(Duration::from_millis(50)));
    assert!(matches!(result, Err(CallError::Receive(ReceiveError::TimedOut(_)))));
}

#[test]
fn full_client_and_server_tables_are_errors_that_name_the_rpc_role() {
    let node = node("full");
    let rpc = node.rpc::<Add, u64>("full").max_clients(1).open_or_create().unwrap();
    let _client = rpc.client().unwrap();
    let _server = rpc.server().unwrap();
    let second = rpc.client().map(drop).unwrap_err();
    assert!(matches!(second, ConnectError::NoFreeSlot { what: "client", max: 1 }), "{second}");
    assert!(second.to_string().contains("max_clients"), "{second}");
    let other = rpc.server().map(drop).unwrap_err();
    assert!(matches!(other, ConnectError::NoFreeSlot { what: "server", max: 1 }), "{other}");
}

#[test]
fn a_late_response_to_an_abandoned_request_is_not_taken_for_the_next_one() {
    let node = node("late");
    let rpc = node.rpc::<Add, u64>("late").open_or_create().unwrap();
    let server = rpc.server().unwrap();
    let client = rpc.client().unwrap();
    let abandoned = client.send(Add { a: 1, b: 1 }).unwrap();
    let _ = abandoned;
    let request = server.receive().unwrap().unwrap();
    server.respond(&request, 2).unwrap();
    drop(request);
    let pending = client.send(Add { a: 20, b: 22 }).unwrap();
    let request = server.receive().unwrap().unwrap();
    server.respond(&request, request.a + request.b).unwrap();
    let response = client.receive_with(pending, &mut Blocking::new(), Some(TIMEOUT)).unwrap();
    assert_eq!(*response, 42);
}

#[test]
fn two_client_threads_and_a_server_thread_never_lose_a_response() {
    let node = node("threads");
    let rpc = node.rpc::<Add, u64>("threads").open_or_create().unwrap();
    const CALLS: u64 = 3000;
    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let rpc = &rpc;
        scope.spawn(move || {
            let server = rpc.server().unwrap();
            ready_tx.send(()).unwrap();
            let mut strategy = Blocking::new();
            for _ in 0..2 * CALLS {
                let request = server.receive_with(&mut strategy, Some(TIMEOUT)).unwrap();
                server.respond(&request, request.a + request.b).unwrap();
            }
        });
        ready_rx.recv().unwrap();
        for id in 0..2u64 {
            scope.spawn(move || {
                let client = rpc.client().unwrap();
                let mut strategy = Backoff::new();
                for i in 0..CALLS {
                    let sum = client
                        .call(
                            Add { a: i, b: id << 32 },
                            &mut strategy,
                            Some(Duration::from_secs(5)),
                        )
                        .unwrap_or_else(|e| panic!("client {id} call {i}: {e}"));
                    assert_eq!(*sum, i + (id << 32));
                }
            });
        }
    });
}
