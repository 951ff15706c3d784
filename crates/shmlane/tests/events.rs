//! Events between real processes: ids notified by one are taken by every listener, which may
//! sleep until they come.

use std::time::Duration;

use shmlane::notify::Blocking;
use shmlane::{ConnectError, Node, NotifyError, ReceiveError};
use shmlane_testkit::{
    child_spec, exit_child, fail, process_lock, report, spawn_child, split_spec,
};

const TIMEOUT: Duration = Duration::from_secs(30);

fn node(tag: &str) -> Node {
    Node::builder("test").namespace(format!("e{}{tag}", std::process::id())).create().unwrap()
}

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("listen", [namespace]) => {
            let node = Node::builder("listener").namespace(*namespace).create().unwrap();
            let event = node.event("doorbell").open_or_create().unwrap();
            let listener = event.listener().unwrap();
            report("ready", 1);
            let mut got = Vec::new();
            while got.len() < 2 {
                match listener.wait(&mut Blocking::new(), Some(TIMEOUT)) {
                    Ok(ids) => got.extend(ids),
                    Err(e) => fail(3, format!("after {got:?}: {e}")),
                }
            }
            report("ids", format!("{got:?}").replace(' ', ""));
        }
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

#[test]
fn a_listener_process_asleep_is_woken_with_the_ids() {
    let _serial = process_lock();
    let node = node("wake");
    let event = node.event("doorbell").open_or_create().unwrap();
    let notifier = event.notifier().unwrap();
    let mut child = spawn_child("listen", &[node.namespace()]);
    child.report("ready", TIMEOUT);
    std::thread::sleep(Duration::from_millis(50)); // let it fall asleep in the futex
    assert_eq!(notifier.notify(7).unwrap(), 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(notifier.notify(42).unwrap(), 1);
    assert_eq!(child.report("ids", TIMEOUT), "[7,42]");
    child.expect_success(TIMEOUT);
}

#[test]
fn pending_ids_come_out_ascending_and_once_each() {
    let node = node("order");
    let event = node.event("bits").max_event_id(200).open_or_create().unwrap();
    let listener = event.listener().unwrap();
    let notifier = event.notifier().unwrap();
    for id in [199, 3, 64, 3, 0] {
        notifier.notify(id).unwrap();
    }
    assert_eq!(listener.try_take(), [0, 3, 64, 199]);
    assert!(listener.try_take().is_empty());
}

#[test]
fn every_listener_gets_every_id() {
    let node = node("fanout");
    let event = node.event("fan").open_or_create().unwrap();
    let listeners: Vec<_> = (0..3).map(|_| event.listener().unwrap()).collect();
    assert_eq!(event.notifier().unwrap().notify(5).unwrap(), 3);
    for listener in &listeners {
        assert_eq!(listener.try_take(), [5]);
    }
}

#[test]
fn out_of_range_ids_and_too_many_listeners_are_clear_errors() {
    let node = node("limits");
    let event = node.event("small").max_listeners(1).max_event_id(8).open_or_create().unwrap();
    let _listener = event.listener().unwrap();
    let err = event.listener().unwrap_err();
    assert!(matches!(err, ConnectError::NoFreeSlot { what: "listener", max: 1 }), "{err}");
    let err = event.notifier().unwrap().notify(8).unwrap_err();
    assert!(matches!(err, NotifyError::BadEventId { id: 8, max: 8 }), "{err}");
}

#[test]
fn a_wait_with_nothing_notified_times_out() {
    let node = node("timeout");
    let event = node.event("quiet").open_or_create().unwrap();
    let listener = event.listener().unwrap();
    let result = listener.wait(&mut Blocking::new(), Some(Duration::from_millis(50)));
    assert!(matches!(result, Err(ReceiveError::TimedOut(_))));
}
