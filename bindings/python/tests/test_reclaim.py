"""A Python subscriber killed with SIGKILL while it holds samples is reclaimed like any other
process: the Rust publisher takes its blocks back, and a new subscriber gets its slot."""

import os
import signal
from pathlib import Path

import numpy as np

import shmlane


def test_a_python_subscriber_killed_holding_samples_gets_its_blocks_taken_back(
    namespace, peer, python_child
):
    publisher = peer("reclaim", namespace, "held")  # one subscriber slot; [u64; 64] samples
    assert publisher.expect("ready") == ""
    holder = python_child("hold", namespace, "held", 3)
    assert holder.expect("ready") == ""
    assert publisher.expect("sent") == "3"
    # It holds three samples (NumPy views over their blocks).
    assert holder.expect("holding") == "1,2,3 3"
    os.kill(holder.pid, signal.SIGKILL)
    holder.proc.wait(timeout=20)
    assert holder.proc.returncode == -signal.SIGKILL
    publisher.send_line("killed")
    counts = dict(kv.split("=") for kv in publisher.expect("reclaimed").split())
    assert counts["held"] == "0", counts
    assert counts["loaned"] == "0" and counts["free"] == counts["total"], counts
    assert counts["consistent"] == "true"
    # It left its node registration, which the next node created in the namespace removes.
    registration = Path(f"/dev/shm/shmlane.{namespace}.node.py-holder.{holder.pid}.0")
    assert registration.exists()
    node = shmlane.Node("py", namespace=namespace)
    assert not registration.exists()
    # Its slot (the only one) is free: a new subscriber takes it and gets what is sent next.
    subscriber = node.topic("held", dtype=np.dtype(("u8", (64,))), mode="open").subscriber()
    assert publisher.expect("sent") == "7"
    sample = subscriber.wait(timeout=20)
    assert (sample.array == 7).all()
    assert subscriber.receive() is None
    del sample
    subscriber.close()
    publisher.finish()
