"""The type contract across languages: name, size, alignment and version must all agree."""

import numpy as np
import pytest

import shmlane

from test_interop import TICK, TICK_NAME


def test_a_dtype_mismatch_is_refused_with_type_mismatch(namespace):
    node = shmlane.Node("py", namespace=namespace)
    # Kept: a topic lives while a process holds it.
    ticks = node.topic("ticks", dtype=TICK, type_name=TICK_NAME)
    # Same name, another layout (price as f4): a different size and alignment.
    other = np.dtype([("instrument", "u4"), ("size", "u4"), ("price", "f4")], align=True)
    with pytest.raises(shmlane.TypeMismatch) as refused:
        node.topic("ticks", dtype=other, type_name=TICK_NAME)
    message = str(refused.value)
    assert "shmlane_py_peer::Tick (32 bytes, align 8, version 0)" in message
    assert "not shmlane_py_peer::Tick (12 bytes, align 4, version 0)" in message
    # Same layout, another name, or another version.
    with pytest.raises(shmlane.TypeMismatch):
        node.topic("ticks", dtype=TICK, type_name="other::Tick")
    with pytest.raises(shmlane.TypeMismatch):
        node.topic("ticks", dtype=TICK, type_name=TICK_NAME, version=1)
    # A derived name is not the Rust type's.
    with pytest.raises(shmlane.TypeMismatch):
        node.topic("ticks", dtype=TICK)
    assert isinstance(refused.value, shmlane.Error)
    assert ticks.size == 32


def test_a_python_dtype_is_refused_on_a_topic_a_rust_process_made(namespace, peer):
    publisher = peer("publish", namespace, "ticks", 1)
    node = shmlane.Node("py", namespace=namespace)
    # Wait for the peer to have created the topic (it then waits for a subscriber).
    for _ in range(2000):
        if any(s["name"] == "ticks" for s in shmlane.list_services(namespace=namespace)):
            break
        __import__("time").sleep(0.01)
    with pytest.raises(shmlane.TypeMismatch):
        node.topic("ticks", dtype=TICK, type_name=TICK_NAME, version=3)
    topic = node.topic("ticks", dtype=TICK, type_name=TICK_NAME, mode="open")
    subscriber = topic.subscriber()
    assert subscriber.wait(timeout=20).array[0]["sequence"] == 1
    publisher.expect("sent")
    publisher.finish()


def test_names_are_derived_like_rust_type_names(namespace):
    node = shmlane.Node("py", namespace=namespace)
    assert node.topic("a", dtype=np.float64).type_name == "f64"
    assert node.topic("b", dtype=np.int16).type_name == "i16"
    b = node.topic("c", dtype=np.dtype(("f4", (3, 2))))
    assert (b.type_name, b.size, b.align) == ("[[f32; 2]; 3]", 24, 4)
    raw = node.topic("d", size=16)  # raw bytes: rows of 16 bytes, as Rust's [u8; 16]
    assert (raw.type_name, raw.size, raw.align) == ("[u8; 16]", 16, 1)
    assert raw.dtype == np.dtype(("u1", (16,)))
    # A structured dtype without a type name gets one only another such dtype matches.
    s = node.topic("e", dtype=TICK)
    assert s.type_name == (
        "struct { instrument: u32 @ 0, size: u32 @ 4, price: f64 @ 8, sequence: u64 @ 16, "
        "timestamp_ns: u64 @ 24 }"
    )
    keep = s.subscriber()  # a topic nobody is connected to goes with its last handle
    same = np.dtype([(name, TICK.fields[name][0]) for name in TICK.names], align=True)
    assert node.topic("e", dtype=same).type_name == s.type_name
    with pytest.raises(shmlane.TypeMismatch):
        node.topic("e", dtype=np.dtype([("instrument", "u4"), ("size", "u4")], align=True))
    del keep


def test_a_topic_opened_without_a_type_takes_the_recorded_one(namespace):
    node = shmlane.Node("py", namespace=namespace)
    created = [
        node.topic("floats", dtype=np.dtype(("f8", (2,)))),
        node.topic("ticks", dtype=TICK, type_name=TICK_NAME),
    ]
    floats = node.topic("floats", mode="open")
    assert (floats.type_name, floats.dtype) == ("[f64; 2]", np.dtype(("f8", (2,))))
    ticks = node.topic("ticks")  # a type NumPy cannot name: rows of bytes
    assert (ticks.type_name, ticks.size, ticks.align) == (TICK_NAME, 32, 8)
    assert ticks.dtype == np.dtype(("u1", (32,)))
    publisher, subscriber = created[1].publisher(), ticks.subscriber()
    publisher.send_copy(np.array([(1, 2, 3.0, 4, 5)], dtype=TICK))
    row = subscriber.receive().array
    assert row.shape == (1, 32) and row.view(TICK)[0].item() == (1, 2, 3.0, 4, 5)
    with pytest.raises(shmlane.TypeRequired):
        node.topic("missing")
    with pytest.raises(shmlane.NotFound):
        node.topic("missing", dtype=np.float64, mode="open")
    with pytest.raises(shmlane.AlreadyExists):
        node.topic("ticks", dtype=TICK, type_name=TICK_NAME, mode="create")


def test_layouts_without_a_c_counterpart_are_refused(namespace):
    node = shmlane.Node("py", namespace=namespace)
    packed = np.dtype([("a", "u1"), ("b", "f8")])  # b at offset 1: no C struct is laid out so
    with pytest.raises(ValueError, match="align=True"):
        node.topic("p", dtype=packed, type_name="my::Packed")
    assert node.topic("p", dtype=packed, type_name="my::Packed", align=1).size == 9
    with pytest.raises(ValueError, match="byte order"):
        node.topic("q", dtype=np.dtype(">f8"))
    with pytest.raises(TypeError):
        node.topic("r", dtype=np.dtype("O"))
    with pytest.raises(shmlane.InvalidConfig):
        node.topic("s", size=12, align=8, type_name="my::Odd")  # 12 is no multiple of 8
    with pytest.raises(shmlane.InvalidConfig):
        node.topic("bad name!", dtype=np.uint8)
    with pytest.raises(shmlane.InvalidConfig):
        node.topic("t", dtype=np.uint8, subscriber_capacity=3)


def test_send_copy_refuses_an_array_of_another_dtype(namespace):
    node = shmlane.Node("py", namespace=namespace)
    publisher = node.topic("f", dtype=np.float64).publisher()
    with pytest.raises(TypeError):
        publisher.send_copy(np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError):
        publisher.send_copy(b"123")  # not a whole number of 8-byte elements
    assert publisher.send_copy(np.zeros(2)) == 0
