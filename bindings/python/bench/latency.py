"""Python against Rust, in one run (issue 19's "Measured"):

1. Pub/sub ping-pong of a u64 with a Rust echo process (the peer's `echo`, busy, pinned to the
   second CPU), initiated in alternating rounds by this Python process and by a Rust process
   (the peer's `initiate`, the typed API), both pinned to the first CPU: one-way latency
   percentiles (RTT / 2) and their ratio.
2. The cost of receiving a sample in Python (`receive()`, `.array`, read one element,
   `release()`) for 8-byte, 64-byte and 1 MiB samples, alternating: a receive that copied
   would pay for the size; this one reads in place (the goal: 1 MiB within 1.2x of 8 B). 8 B
   travels inline in the queue slot; 64 B and 1 MiB in payload blocks. A receive with a copy
   of the 1 MiB array (`np.array(view)`) is timed in a pass of its own for scale (interleaved,
   each copy sweeps the caches and slows the in-place receives after it).

    python bench/latency.py [--rounds N] [--round N] [--peer PATH]

Run from bindings/python with the package installed (`bash ci.sh` does both) and the peer
built (`cargo build --release -p shmlane-py-peer`, or the debug one ci.sh builds).
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

import shmlane

HERE = os.path.dirname(os.path.abspath(__file__))


def peer_path(given):
    if given:
        return given
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "..", "target"))
    for profile in ("release", "debug"):
        path = os.path.join(target, profile, "shmlane-py-peer")
        if os.path.exists(path):
            return path
    sys.exit("build the peer first: cargo build --release -p shmlane-py-peer")


def percentiles(values):
    values = np.asarray(values, dtype=np.float64)
    return {q: float(np.percentile(values, q)) for q in (50, 90, 99, 99.9)}


def row(name, values):
    p = percentiles(values)
    print(f"{name:>22} " + " ".join(f"{p[q]:>9.0f}" for q in (50, 90, 99, 99.9)))


def ping_pong(peer, namespace, cpus, rounds, round_size):
    node = shmlane.Node("bench-python", namespace=namespace)
    topics = {
        name: node.topic(name, dtype=np.dtype(np.uint64))
        for name in ("ping-py", "pong-py", "ping-rust", "pong-rust")
    }
    echo = subprocess.Popen([peer, "echo", namespace, "py", "rust"], stdout=subprocess.PIPE, text=True)
    os.sched_setaffinity(echo.pid, {cpus[1]})
    rust = subprocess.Popen(
        [peer, "initiate", namespace, "rust", str(round_size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    os.sched_setaffinity(rust.pid, {cpus[0]})
    os.sched_setaffinity(0, {cpus[0]})
    assert echo.stdout.readline().strip() == "ready"
    assert rust.stdout.readline().strip() == "ready"
    publisher = topics["ping-py"].publisher()
    subscriber = topics["pong-py"].subscriber()
    deadline = time.monotonic() + 10
    while publisher.subscribers() == 0:
        assert time.monotonic() < deadline, "the echo did not subscribe"
        time.sleep(0.001)

    python_rtts, rust_rtts = [], []
    seq = 0
    for r in range(rounds):
        for _ in range(round_size):
            seq += 1
            start = time.perf_counter_ns()
            publisher.send_copy(np.array([seq], dtype=np.uint64))
            while (sample := subscriber.receive()) is None:
                pass
            answer = int(sample.array[0])
            sample.release()
            rtt = time.perf_counter_ns() - start
            assert answer == seq, (answer, seq)
            if r > 0:
                python_rtts.append(rtt)
        rust.stdin.write("go\n")
        rust.stdin.flush()
        rtts = [int(x) for x in rust.stdout.readline().split()]
        if r > 0:
            rust_rtts.extend(rtts)
    rust.stdin.close()
    assert rust.wait(timeout=10) == 0
    publisher.send_copy(np.array([2**64 - 1], dtype=np.uint64))
    assert echo.wait(timeout=10) == 0

    print(
        f"\npub/sub ping-pong of a u64 with a Rust echo (CPU {cpus[1]}), initiators on CPU "
        f"{cpus[0]}, {len(python_rtts)} round trips each in alternating rounds of {round_size}; "
        "one-way ns (RTT / 2)"
    )
    print(f"{'initiator':>22} " + " ".join(f"{q:>9}" for q in ("p50", "p90", "p99", "p99.9")))
    row("Rust (typed API)", np.asarray(rust_rtts) / 2)
    row("Python", np.asarray(python_rtts) / 2)
    ratio = np.percentile(python_rtts, 50) / np.percentile(rust_rtts, 50)
    print(f"Python / Rust p50: {ratio:.2f}")


def receive_cost(namespace, rounds, per_round):
    node = shmlane.Node("bench-receive", namespace=namespace)
    small = node.topic("small", dtype=np.dtype(np.uint64), max_subscribers=1, subscriber_capacity=256, max_held=4)
    big = node.topic("big", size=1 << 20, max_subscribers=1, subscriber_capacity=256, max_held=4)
    block = node.topic("block", size=64, max_subscribers=1, subscriber_capacity=256, max_held=4)
    samples = {"8 B": [], "64 B": [], "1 MiB": [], "1 MiB copied": []}
    ends = {}
    for name, topic in (("8 B", small), ("64 B", block), ("1 MiB", big)):
        ends[name] = (topic.publisher(), topic.subscriber())
    for r in range(rounds):
        for name in ("8 B", "64 B", "1 MiB"):
            publisher, subscriber = ends[name]
            for _ in range(per_round):
                loan = publisher.loan()
                publisher.send(loan)
            for _ in range(per_round):
                start = time.perf_counter_ns()
                sample = subscriber.receive()
                view = sample.array
                first = view.flat[0]
                elapsed = time.perf_counter_ns() - start
                del view, first
                sample.release()
                if r > 0:
                    samples[name].append(elapsed)
        # The copy, for scale, in a pass of its own: a 1 MiB copy sweeps the caches, which
        # would slow the next receives of the pass above and count against the in-place read.
        publisher, subscriber = ends["1 MiB"]
        for _ in range(per_round // 8):
            publisher.send(publisher.loan())
        for _ in range(per_round // 8):
            start = time.perf_counter_ns()
            sample = subscriber.receive()
            copy = np.array(sample.array)
            elapsed = time.perf_counter_ns() - start
            del copy
            sample.release()
            if r > 0:
                samples["1 MiB copied"].append(elapsed)
    print(
        f"\nreceive in Python (receive(), .array, one element; then release()), {per_round} per "
        f"size and round, {rounds - 1} rounds alternating; ns"
    )
    print(f"{'sample':>22} " + " ".join(f"{q:>9}" for q in ("p50", "p90", "p99", "p99.9")))
    for name, values in samples.items():
        row(name, values)
    p50 = {name: np.percentile(values, 50) for name, values in samples.items()}
    print(
        f"1 MiB / 8 B p50: {p50['1 MiB'] / p50['8 B']:.2f}; 1 MiB / 64 B p50: "
        f"{p50['1 MiB'] / p50['64 B']:.2f} (8 B travels inline in the queue slot, 64 B and "
        f"1 MiB in payload blocks, read in place); a copy of the 1 MiB array adds "
        f"{p50['1 MiB copied'] - p50['1 MiB']:.0f} ns"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--round", type=int, default=2000)
    parser.add_argument("--peer")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    cpus = (cpus[0], cpus[1] if len(cpus) > 1 else cpus[0])
    namespace = f"pybench{os.getpid()}"
    ping_pong(peer_path(args.peer), namespace, cpus, args.rounds, args.round)
    receive_cost(namespace, args.rounds, 200)
    left = [f for f in os.listdir("/dev/shm") if f.startswith(f"shmlane.{namespace}.")]
    if left:
        sys.exit(f"left in /dev/shm: {left}")


if __name__ == "__main__":
    main()
