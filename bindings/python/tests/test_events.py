"""Events between Python processes, and between Python and Rust."""

import shmlane


def test_a_python_listener_wakes_on_a_rust_notifier(namespace, peer):
    node = shmlane.Node("py", namespace=namespace)
    listener = node.event("wake").listener()
    notifier = peer("notify", namespace, "wake", 3, 9)
    assert notifier.expect("notified") == "1"
    notifier.finish()
    ids = set()
    while ids != {3, 9}:
        ids.update(listener.wait(timeout=20))
    assert listener.try_take() == []


def test_a_rust_listener_wakes_on_a_python_notifier(namespace, peer):
    listener = peer("listen", namespace, "wake", 2)
    assert listener.expect("ready") == ""
    node = shmlane.Node("py", namespace=namespace)
    notifier = node.event("wake").notifier()
    assert notifier.notify(4) == 1
    assert notifier.notify(60) == 1
    assert listener.expect("ids") == "4,60"
    listener.finish()


def test_a_python_listener_wakes_on_a_python_notifier_process(namespace, python_child):
    node = shmlane.Node("py", namespace=namespace)
    event = node.event("wake", max_event_id=128)
    listener = event.listener()
    notifier = python_child("notify", namespace, "wake", 1, 100)
    assert notifier.expect("notified") == "1"
    notifier.finish()
    ids = []
    while len(ids) < 2:
        ids += listener.wait(timeout=20)
    assert sorted(ids) == [1, 100]


def test_event_ids_are_checked(namespace):
    node = shmlane.Node("py", namespace=namespace)
    event = node.event("ids", max_event_id=16)
    assert event.max_event_id == 16
    listener = event.listener()
    notifier = event.notifier()
    notifier.notify(15)
    notifier.notify(15)  # level, not counted: seen once
    assert listener.try_take() == [15]
    try:
        notifier.notify(16)
    except ValueError as e:
        assert "below 16" in str(e)
    else:
        raise AssertionError("id 16 was accepted")
