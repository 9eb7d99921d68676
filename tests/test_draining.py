"""Stopping a real waitress server gently (deflect.web.draining): requests in flight are answered,
new connections are refused at once, kept-alive clients are told to reconnect; also with the
several listening sockets a host name with several addresses gives."""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest
from waitress import create_server

from deflect.web.draining import Drain


def slow_app(environ, start_response):
    """`/slow` takes 1 s (a request in flight when the drain starts); anything else answers at once."""
    if environ["PATH_INFO"] == "/slow":
        time.sleep(1.0)
    body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture(params=["one address", "two addresses"])
def running(request):
    """(server, ports) running in a thread; `two addresses` is waitress's MultiSocketServer."""
    listen = "127.0.0.1:0" if request.param == "one address" else "127.0.0.1:0 127.0.0.1:0"
    server = create_server(slow_app, listen=listen, threads=4)
    ports = [port for _, port in server.effective_listen] if hasattr(server, "effective_listen") else [server.effective_port]
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    yield server, ports
    try:
        server.close()
    except OSError:
        pass


def test_a_drain_answers_what_is_in_flight_refuses_new_connections_then_stops(running):
    server, ports = running
    kept = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
    kept.request("GET", "/")
    assert kept.getresponse().read() == b"ok"  # a kept-alive connection, idle now
    answers = []

    def slow() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports[-1], timeout=10)
        conn.request("GET", "/slow")
        response = conn.getresponse()
        answers.append((response.status, response.read(), response.getheader("Connection")))

    in_flight = threading.Thread(target=slow)
    in_flight.start()
    time.sleep(0.3)  # it is being answered
    stopped = threading.Event()
    started = time.monotonic()
    Drain(server, stop=stopped.set).start()
    time.sleep(0.2)
    for port in ports:  # refused at once, not left waiting in the queue until the process exits
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    kept.request("GET", "/")  # the kept-alive client's next request is answered, and told to reconnect
    response = kept.getresponse()
    assert response.read() == b"ok" and response.getheader("Connection") == "close"
    in_flight.join(timeout=10)
    assert answers == [(200, b"ok", None)]  # the request in flight was answered whole
    assert stopped.wait(timeout=15)
    assert time.monotonic() - started < 5  # once nothing was in flight, not after the 10 s timeout


def test_a_drain_that_fails_still_stops_the_server():
    class Broken:  # not a waitress server at all
        map = {}

    stopped = threading.Event()
    drain = Drain(Broken(), stop=stopped.set)
    drain._listeners = [object()]  # pull_trigger on it raises AttributeError
    drain.start()
    assert stopped.wait(timeout=5) and drain.finished
