"""Python processes the tests start: `python child.py ROLE NAMESPACE SERVICE ...`, reporting on
standard output one line per step."""

import sys
import time

import numpy as np

import shmlane


def hold(namespace, service, count):
    """Subscribes to an existing topic, takes `count` samples and keeps them (and NumPy views
    over them), reports their first words, and waits to be killed."""
    node = shmlane.Node("py-holder", namespace=namespace)
    subscriber = node.topic(service, mode="open").subscriber()
    print("ready", flush=True)
    samples = [subscriber.wait(timeout=20) for _ in range(int(count))]
    views = [sample.array for sample in samples]
    print("holding", ",".join(str(int(np.ravel(v)[0])) for v in views), subscriber.held, flush=True)
    while True:
        time.sleep(60)


def notify(namespace, service, *ids):
    """Notifies each id once."""
    node = shmlane.Node("py-notifier", namespace=namespace)
    notifier = node.event(service).notifier()
    listeners = [notifier.notify(int(i)) for i in ids]
    print("notified", listeners[-1], flush=True)


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    {"hold": hold, "notify": notify}[role](*args)
