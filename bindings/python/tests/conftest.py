"""Fixtures of the shmlane Python tests: a namespace of its own per test (checked clean after
it), the Rust peer (built with cargo), and processes that report line by line."""

import gc
import json
import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import shmlane

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent
CHILD = HERE / "child.py"
TIMEOUT = 20.0


@pytest.fixture
def namespace(request):
    """A namespace no other test (or run) uses; after the test, the registrations of its dead
    processes are swept and nothing of it may be left in /dev/shm."""
    name = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[:40]
    ns = f"py{os.getpid()}-{name}"
    yield ns
    if not getattr(request.node, "passed", False):
        return  # a failure's traceback may still hold its handles
    gc.collect()
    # A node's creation removes the registrations of the namespace's dead nodes (killed
    # processes leave theirs); this one's is removed when it goes.
    sweeper = shmlane.Node("sweeper", namespace=ns)
    del sweeper
    left = sorted(p.name for p in Path("/dev/shm").glob(f"shmlane.{ns}.*"))
    assert left == [], f"left in /dev/shm: {left}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Records on the test item whether its call passed (for `namespace`'s check)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.passed = report.passed


@pytest.fixture(scope="session")
def peer_path():
    """The Rust peer (bindings/python/peer), built by cargo."""
    build = subprocess.run(
        ["cargo", "build", "--quiet", "-p", "shmlane-py-peer", "--message-format=json"],
        cwd=PACKAGE,
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    )
    for line in build.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            if message["target"]["name"] == "shmlane-py-peer":
                return message["executable"]
    raise RuntimeError("cargo built no shmlane-py-peer executable")


class Process:
    """A child process whose standard output is read line by line, with timeouts."""

    def __init__(self, argv):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _read(stream, sink):
        for line in stream:
            sink(line.rstrip("\n"))

    @property
    def pid(self):
        return self.proc.pid

    def expect(self, prefix, timeout=TIMEOUT):
        """The next line, which must start with `prefix`; what follows it."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.argv}: no line within {timeout} s (exit code {self.proc.poll()}, "
                f"stderr {self.stderr})"
            ) from None
        assert line.startswith(prefix), f"{self.argv}: got {line!r}, want {prefix!r}…; stderr {self.stderr}"
        return line[len(prefix):].strip()

    def send_line(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout=TIMEOUT):
        """Closes its standard input and waits for a clean exit."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout)
        assert code == 0, f"{self.argv} exited with {code}: {self.stderr}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)


@pytest.fixture
def spawn():
    """Starts processes (`spawn(argv)`), killed after the test if still running."""
    started = []

    def start(argv):
        process = Process([str(a) for a in argv])
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def peer(peer_path, spawn):
    """Starts the Rust peer: `peer("publish", ns, "ticks", 10)`."""
    return lambda *args: spawn([peer_path, *args])


@pytest.fixture
def python_child(spawn):
    """Starts tests/child.py in a Python process of its own: `python_child("hold", ns, ...)`."""
    return lambda *args: spawn([sys.executable, CHILD, *args])
