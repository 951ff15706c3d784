"""Samples and loans are NumPy arrays over shared memory, not copies."""

import numpy as np
import pytest

import shmlane

MIB = 1 << 20


def mapping_of(address, nbytes):
    """The /proc/self/maps line of the mapping that holds [address, address + nbytes)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address and address + nbytes <= end:
                return fields
    return None


def big_topic(node):
    # One element type (Rust's u8), 1 MiB blocks, few of them: 6 MiB per publisher.
    return node.topic(
        "big", dtype=np.uint8, max_slice_len=MIB, max_publishers=1, max_subscribers=1,
        subscriber_capacity=2, max_held=2, max_loans=2,
    )


def test_a_1_mib_sample_from_a_rust_process_is_read_in_place_in_shared_memory(namespace, peer):
    node = shmlane.Node("py", namespace=namespace)
    topic = big_topic(node)
    assert topic.type_name == "u8"
    subscriber = topic.subscriber()
    publisher = peer("publish-bytes", namespace, "big", MIB)
    sample = subscriber.wait(timeout=20)
    array = sample.array
    assert array.nbytes == MIB and len(sample) == MIB
    address = array.__array_interface__["data"][0]
    assert address == array.ctypes.data
    mapping = mapping_of(address, MIB)
    assert mapping is not None, "the array lies in no mapping"
    path = mapping[5] if len(mapping) > 5 else ""
    assert path.startswith(f"/dev/shm/shmlane.{namespace}."), f"not a shmlane segment: {mapping}"
    assert mapping[1] == "r--s", f"a subscriber maps payloads read-only and shared: {mapping}"
    # No copy anywhere: the array's memory belongs to the sample, through a memoryview.
    assert not array.flags.owndata and not array.flags.writeable
    assert isinstance(array.base, memoryview) and array.base.obj is sample
    expected = (np.arange(MIB, dtype=np.uint64) * 7 % 251).astype(np.uint8)
    assert np.array_equal(array, expected)
    with pytest.raises(ValueError):
        array[0] = 1
    assert publisher.expect("sent") == str(MIB)
    del array, sample
    publisher.finish()


def test_a_loan_is_written_in_place_in_shared_memory(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = big_topic(node)
    subscriber, publisher = topic.subscriber(), topic.publisher()
    loan = publisher.loan(MIB)
    mapping = mapping_of(loan.ctypes.data, MIB)
    assert mapping is not None and mapping[5].startswith(f"/dev/shm/shmlane.{namespace}.")
    assert mapping[1] == "rw-s" and loan.flags.writeable and not loan.flags.owndata
    loan[:] = 5
    loan_address = loan.ctypes.data
    publisher.send(loan)
    sample = subscriber.receive()
    array = sample.array
    assert array.nbytes == MIB and (array == 5).all()
    # The same block, mapped twice: read-write by the publisher, read-only by the subscriber.
    assert mapping_of(array.ctypes.data, MIB)[5] == mapping[5]
    assert array.ctypes.data != loan_address
    del array, sample, loan


def test_a_sample_is_held_while_a_view_lives_and_given_back_after(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("held", dtype=np.dtype(("u8", (64,))))  # 512 bytes: a payload block
    assert topic.type_name == "[u64; 64]"
    subscriber, publisher = topic.subscriber(), topic.publisher()
    publisher.send_copy(np.arange(64, dtype=np.uint64))
    sample = subscriber.receive()
    view = sample.array
    assert view.shape == (1, 64) and view[0, 63] == 63
    del sample  # the view keeps it held
    assert subscriber.held == 1
    subscriber.flush_returns()
    assert publisher.block_counts()["held"] == 1
    del view
    assert subscriber.held == 0
    subscriber.flush_returns()
    counts = publisher.block_counts()
    assert counts["held"] == 0 and counts["free"] == counts["total"]


def test_release_is_refused_while_views_are_open_and_views_are_refused_after(namespace):
    node = shmlane.Node("py", namespace=namespace)
    topic = node.topic("release", dtype=np.float64)
    subscriber, publisher = topic.subscriber(), topic.publisher()
    publisher.send_copy(np.array([2.5]))
    with subscriber.receive() as sample:
        view = memoryview(sample)
        assert view.readonly and bytes(view) == np.float64(2.5).tobytes()
        with pytest.raises(BufferError):
            sample.release()
        view.release()
    assert sample.released and subscriber.held == 0
    with pytest.raises(BufferError):
        memoryview(sample)
    with pytest.raises(BufferError):
        sample.array
