"""A burst's client sends each request once, on a real socket: geventhttpclient's own client re-sends a
GET whose connection the server closes before answering; the lab's burst client does not."""

import pytest
from gevent.server import StreamServer
from geventhttpclient.client import HTTPClient

from contract import CONNECTION_LOST
from lab.single_attempt import ConnectionLost, SingleAttemptClient, is_connection_lost


@pytest.fixture
def closing_server():
    """A server that reads each request and closes the connection without an answer, as a killed worker's
    kernel does; `.requests` counts what reached it."""
    def handle(sock, address):
        server.requests += 1
        sock.recv(4096)
        sock.close()

    server = StreamServer(("127.0.0.1", 0), handle)
    server.requests = 0
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("client_class, sends", [(HTTPClient, 4), (SingleAttemptClient, 1)])
def test_a_connection_closed_before_the_answer_is_re_sent_only_by_geventhttpclients_own_client(
        closing_server, client_class, sends):
    client = client_class("127.0.0.1", closing_server.server_port, concurrency=2)
    with pytest.raises(Exception) as raised:
        client.get("/sleep/python/")
    # The stock client: the first send and pool size 2 + 1 re-sends, every one reaching the server.
    assert closing_server.requests == sends
    assert is_connection_lost(raised.value)
    if client_class is SingleAttemptClient:
        assert isinstance(raised.value, ConnectionLost) and str(raised.value).startswith(CONNECTION_LOST)
