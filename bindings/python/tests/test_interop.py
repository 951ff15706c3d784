"""Python and Rust processes on one topic: the Rust side uses the typed API
(`node.topic::<Tick>()`), the Python side a NumPy structured dtype with the Rust type's name."""

import numpy as np

import shmlane

# The Rust peer's `#[repr(C)] struct Tick { instrument: u32, size: u32, price: f64,
# sequence: u64, timestamp_ns: u64 }`.
TICK = np.dtype(
    [("instrument", "u4"), ("size", "u4"), ("price", "f8"), ("sequence", "u8"), ("timestamp_ns", "u8")],
    align=True,
)
TICK_NAME = "shmlane_py_peer::Tick"
COUNT = 200


def tick(k):
    """Tick number k, as the peer makes it."""
    return (7, 100 + k, k / 4.0, k, 1000 * k)


def test_the_rust_peer_records_the_type_name_python_gives(peer):
    process = peer("type-name")
    assert process.expect("") == TICK_NAME
    process.finish()
    assert TICK.itemsize == 32 and TICK.alignment == 8


def test_python_subscriber_receives_every_tick_from_a_rust_publisher_process(namespace, peer):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("ticks", dtype=TICK, type_name=TICK_NAME, subscriber_capacity=1024)
    subscriber = topic.subscriber()
    publisher = peer("publish", namespace, "ticks", COUNT)
    received = []
    for _ in range(COUNT):
        sample = subscriber.wait(timeout=20)
        array = sample.array
        assert array.dtype == TICK and array.shape == (1,) and not array.flags.writeable
        received.append(array[0].item())
        del array, sample
    assert publisher.expect("sent") == str(COUNT)
    assert received == [tick(k) for k in range(1, COUNT + 1)]
    assert subscriber.receive() is None
    assert subscriber.drops == 0 and subscriber.held == 0
    publisher.finish()


def test_rust_subscriber_receives_every_tick_from_a_python_publisher(namespace, peer):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("ticks", dtype=TICK, type_name=TICK_NAME, subscriber_capacity=1024)
    publisher = topic.publisher()
    subscriber = peer("subscribe", namespace, "ticks", COUNT)
    assert subscriber.expect("ready") == ""
    for k in range(1, COUNT + 1):
        if k % 2:
            loan = publisher.loan()  # a writable array over a block in shared memory
            loan[0] = tick(k)
            assert publisher.send(loan) == 1
            assert not loan.flags.writeable, "a sent loan is the subscribers'"
        else:
            assert publisher.send_copy(np.array([tick(k)], dtype=TICK)) == 1
    assert subscriber.expect("sum") == str(COUNT * (COUNT + 1) // 2)
    subscriber.finish()


def test_a_loan_of_several_elements_arrives_whole(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("batch", dtype=TICK, type_name=TICK_NAME, max_slice_len=8)
    subscriber, publisher = topic.subscriber(), topic.publisher()
    loan = publisher.loan(5)
    assert loan.shape == (5,) and loan.dtype == TICK
    loan[:] = [tick(k) for k in range(5)]
    publisher.send(loan)
    sample = subscriber.receive()
    assert len(sample) == 5 and sample.nbytes == 5 * 32
    assert [row.item() for row in sample.array] == [tick(k) for k in range(5)]
    assert sample.tobytes() == np.array([tick(k) for k in range(5)], dtype=TICK).tobytes()
