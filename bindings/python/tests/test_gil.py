"""Blocking calls release the GIL, and a subscriber is used by one thread at a time."""

import threading
import time

import numpy as np
import pytest

import shmlane


def spin_for(seconds):
    """Pure Python work for `seconds`: how many loops ran (none can while another thread holds
    the GIL)."""
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        count += 1
    return count


def wait_until_busy(subscriber):
    """Returns once another thread is inside a wait on `subscriber` (it then refuses others)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            subscriber.drops
        except shmlane.Busy:
            return
        time.sleep(0.005)
    raise AssertionError("the other thread never started waiting")


def in_thread(target):
    result = {}

    def run():
        try:
            result["value"] = target()
        except BaseException as e:  # reported by the test
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_a_blocking_receive_lets_other_python_threads_run(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("gil", dtype=np.float64)
    subscriber, publisher = topic.subscriber(), topic.publisher()
    thread, result = in_thread(lambda: float(subscriber.wait(timeout=10).array[0]))
    time.sleep(0.1)  # returns only if the waiting thread let the GIL go
    assert spin_for(0.3) > 1000
    assert thread.is_alive(), f"the wait returned early: {result}"
    publisher.send_copy(np.array([4.25]))
    thread.join(10)
    assert result == {"value": 4.25}


def test_receive_with_a_timeout_lets_other_threads_run_and_gives_none(namespace):
    node = shmlane.Node("py", namespace=namespace)
    subscriber = node.topic("gil", dtype=np.float64).subscriber()
    thread, result = in_thread(lambda: subscriber.receive(timeout=1.5))
    time.sleep(0.05)
    assert spin_for(0.2) > 1000 and thread.is_alive()
    thread.join(10)
    assert result == {"value": None}
    with pytest.raises(shmlane.TimedOut):
        subscriber.wait(timeout=0.05)


def test_a_listener_wait_lets_other_python_threads_run(namespace):
    node = shmlane.Node("py", namespace=namespace)
    event = node.event("gil")
    listener, notifier = event.listener(), event.notifier()
    thread, result = in_thread(lambda: listener.wait(timeout=10))
    time.sleep(0.1)
    assert spin_for(0.3) > 1000 and thread.is_alive()
    notifier.notify(5)
    thread.join(10)
    assert result == {"value": [5]}


def test_a_second_thread_on_a_waiting_subscriber_gets_busy(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("busy", dtype=np.float64)
    subscriber, publisher = topic.subscriber(), topic.publisher()
    thread, result = in_thread(lambda: float(subscriber.wait(timeout=10).array[0]))
    wait_until_busy(subscriber)
    with pytest.raises(shmlane.Busy):
        subscriber.receive()
    with pytest.raises(shmlane.Busy):
        subscriber.held
    publisher.send_copy(np.array([1.0]))
    thread.join(10)
    assert result == {"value": 1.0}
    assert subscriber.receive() is None  # free again


def test_a_sample_released_while_another_thread_waits_goes_back_after_the_wait(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("defer", dtype=np.dtype(("u8", (64,))))  # samples in payload blocks
    subscriber, publisher = topic.subscriber(), topic.publisher()
    publisher.send_copy(np.full(64, 1, dtype=np.uint64))
    first = subscriber.receive()
    holder = {}
    thread, result = in_thread(lambda: holder.setdefault("s", subscriber.wait(timeout=10)) and None)
    wait_until_busy(subscriber)
    del first  # the subscriber is busy in the other thread: the release is queued for it
    publisher.send_copy(np.full(64, 2, dtype=np.uint64))
    thread.join(10)
    assert result == {"value": None} and (holder["s"].array == 2).all()
    assert subscriber.held == 1  # the first went back when the wait ended
    del holder["s"]
    subscriber.flush_returns()
    assert publisher.block_counts()["held"] == 0
