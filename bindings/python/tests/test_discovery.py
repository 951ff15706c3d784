"""Discovery lists the services and nodes of a namespace, with their holders."""

import os

import numpy as np

import shmlane


def test_services_and_nodes_are_listed_with_their_holders(namespace):
    node = shmlane.Node("lister", namespace=namespace)
    topic = node.topic("ticks", dtype=np.float64)
    subscriber, publisher = topic.subscriber(), topic.publisher()
    event = node.event("alerts")
    listener = event.listener()
    services = {s["name"]: s for s in shmlane.list_services(namespace=namespace)}
    assert set(services) == {"ticks", "alerts"}
    ticks = services["ticks"]
    assert (ticks["kind"], ticks["type_name"], ticks["type_size"]) == ("topic", "f64", 8)
    assert [(p["pid"], p["liveness"]) for p in ticks["publishers"]] == [(os.getpid(), "alive")]
    assert [(p["pid"], p["liveness"]) for p in ticks["subscribers"]] == [(os.getpid(), "alive")]
    assert ticks["path"] == f"/dev/shm/shmlane.{namespace}.topic.ticks" and ticks["problem"] is None
    assert services["alerts"]["kind"] == "event" and len(services["alerts"]["subscribers"]) == 1
    nodes = shmlane.list_nodes(namespace=namespace)
    assert [(n["name"], n["pid"], n["liveness"]) for n in nodes] == [("lister", os.getpid(), "alive")]
    del subscriber, publisher, listener, event, topic
