"""Request/response between Python and Rust processes, and within Python."""

import threading

import numpy as np
import pytest

import shmlane


def test_a_python_client_calls_a_rust_server(namespace, peer):
    server = peer("serve", namespace, "double", 3)
    assert server.expect("ready") == ""
    node = shmlane.Node("py", namespace=namespace)
    rpc = node.rpc("double", np.uint64, np.uint64)  # Rust's Rpc<u64, u64>
    assert rpc.request_type == {"type_name": "u64", "size": 8, "align": 8, "version": 0}
    client = rpc.client()
    for x in (1, 20):
        response = client.call(np.array([x], dtype=np.uint64), timeout=20)
        assert response.array.tolist() == [2 * x + 2]
        del response
    pending = client.send(np.array([100], dtype=np.uint64))
    assert client.wait(pending, timeout=20).array[0] == 202
    assert server.expect("served") == "3"
    server.finish()


def test_a_rust_client_calls_a_python_server(namespace, peer):
    node = shmlane.Node("py", namespace=namespace)
    rpc = node.rpc("double", np.uint64, np.uint64)
    server = rpc.server()
    client = peer("call", namespace, "double", 5, 7)
    for _ in range(2):
        with server.wait(timeout=20) as request:
            x = int(request.array[0])
            server.respond(request, np.array([2 * x + 2], dtype=np.uint64))
    assert client.expect("responses") == "12,16"
    client.finish()


def test_python_client_and_server_with_a_structured_dtype(namespace):
    order = np.dtype([("id", "u4"), ("qty", "u4"), ("price", "f8")], align=True)
    fill = np.dtype([("id", "u4"), ("ok", "u1")], align=True)
    node = shmlane.Node("py", namespace=namespace)
    rpc = node.rpc(
        "orders",
        {"dtype": order, "type_name": "my_app::Order"},
        {"dtype": fill, "type_name": "my_app::Fill", "version": 2},
    )
    assert rpc.response_type["version"] == 2
    server, client = rpc.server(), rpc.client()
    answered = {}

    def serve():
        request = server.wait(timeout=20)
        answered["client"] = request.client
        o = request.array[0]
        server.respond(request, np.array([(o["id"], o["qty"] > 0)], dtype=fill))

    thread = threading.Thread(target=serve)
    thread.start()
    response = client.call(np.array([(9, 3, 1.5)], dtype=order), timeout=20)
    thread.join(20)
    assert response.array[0].item() == (9, 1)
    assert answered["client"] == 0
    with pytest.raises(shmlane.TypeMismatch):
        node.rpc("orders", {"dtype": order, "type_name": "my_app::Order", "version": 1}, fill)
    opened = node.rpc("orders")
    assert opened.request_type["type_name"] == "my_app::Order"
    with pytest.raises(TypeError):
        client.send(np.zeros(1, dtype=fill))
    del response
