"""Lifetimes and misuse: what Python holds of shared memory cannot outlive it."""

import gc

import numpy as np
import pytest

import shmlane


def test_a_subscriber_is_not_closed_while_samples_are_held(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("close", dtype=np.float64)
    subscriber, publisher = topic.subscriber(), topic.publisher()
    publisher.send_copy(np.array([1.0]))
    sample = subscriber.receive()
    view = sample.array
    with pytest.raises(shmlane.InUse):
        subscriber.close()
    del sample
    with pytest.raises(shmlane.InUse):  # the view still holds it
        subscriber.close()
    del view
    subscriber.close()
    with pytest.raises(shmlane.Closed):
        subscriber.receive()
    # Its slot is free again.
    with topic.subscriber() as again:
        assert again.receive() is None


def test_a_subscriber_dropped_before_its_samples_keeps_them_readable(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("order", dtype=np.dtype(("u8", (64,))))
    subscriber, publisher = topic.subscriber(), topic.publisher()
    publisher.send_copy(np.arange(64, dtype=np.uint64))
    view = subscriber.receive().array
    del subscriber, topic, node
    gc.collect()
    assert view[0, 10] == 10  # the sample holds what it reads from
    del view
    gc.collect()
    counts = publisher.block_counts()
    assert counts["held"] + counts["free"] == counts["total"]


def test_a_publisher_is_not_closed_while_loans_live(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("loans", dtype=np.float64)
    publisher = topic.publisher()
    loan = publisher.loan()
    with pytest.raises(shmlane.InUse):
        publisher.close()
    publisher.send(loan)
    with pytest.raises(shmlane.InUse):  # the sent loan's array still points at its block
        publisher.close()
    del loan
    publisher.close()
    with pytest.raises(shmlane.Closed):
        publisher.loan()


def test_a_sent_loan_s_array_stays_readable_and_becomes_read_only(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("inline", dtype=np.float64)  # 8 bytes: the loan travels inline
    subscriber, publisher = topic.subscriber(), topic.publisher()
    loan = publisher.loan()
    loan[0] = 3.5
    assert publisher.send(loan) == 1
    assert loan[0] == 3.5 and not loan.flags.writeable  # its room is kept while it lives
    with pytest.raises(ValueError):
        loan[0] = 1.0
    assert float(subscriber.receive().array[0]) == 3.5
    with pytest.raises(BufferError):
        memoryview(loan.base.obj)  # no new views of a sent loan


def test_loans_are_sent_once_by_their_own_publisher(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("once", dtype=np.float64, max_publishers=2)
    first, second = topic.publisher(), topic.publisher()
    loan = first.loan()
    with pytest.raises(ValueError, match="another publisher"):
        second.send(loan)
    view = loan[:]  # a view of the loan's array sends the loan too
    assert first.send(view) == 0
    with pytest.raises(ValueError, match="sent already"):
        first.send(loan)
    with pytest.raises(TypeError):
        first.send(np.zeros(1))


def test_an_unsent_loan_goes_back_when_its_array_goes(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("unsent", dtype=np.dtype(("u8", (64,))), max_loans=2)
    publisher = topic.publisher()
    loans = [publisher.loan(), publisher.loan()]
    assert publisher.block_counts()["loaned"] == 2
    with pytest.raises(shmlane.OutOfBlocks):
        for _ in range(1000):
            publisher.loan()
    del loans
    assert publisher.block_counts()["loaned"] == 0


def test_receive_refuses_beyond_max_held(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("held", dtype=np.float64, max_held=2)
    subscriber, publisher = topic.subscriber(), topic.publisher()
    for value in range(3):
        publisher.send_copy(np.array([float(value)]))
    held = [subscriber.receive(), subscriber.receive()]
    with pytest.raises(shmlane.TooManyHeld):
        subscriber.receive()
    held.pop(0).release()
    assert float(subscriber.receive().array[0]) == 2.0
