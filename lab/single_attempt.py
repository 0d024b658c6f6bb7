"""A burst's requests are each sent once: a connection the server closes before it answers is a lost request.

geventhttpclient's HTTPClient.request re-sends an idempotent request (a GET) when its connection
closes or resets before the answer, up to its connection pool's size + 1 times, whatever Locust's
max_retries says (that one is the UserAgent's, a level above). In a burst that hides a killed
worker: its requests are re-sent in silence to the next worker and count as answered, slow. It
offers no parameter to turn that off; its retry loop takes a new socket from the connection pool
for every new attempt, so a pool that hands one request a single socket makes it one attempt.
A probe sends each request once too, since it counts failures by cause; steady runs keep Locust's client as it is.
"""

import errno

import gevent.local
from geventhttpclient.client import HTTPClient, HTTPClientPool
from geventhttpclient.response import HTTPConnectionClosed
from geventhttpclient.url import URL

from contract import CONNECTION_LOST


class ConnectionLost(HTTPConnectionClosed):
    """The server closed or reset the connection before it answered, and the request was not re-sent."""


class OneSocketPerRequest:
    """A client's connection pool as its retry loop sees it: one socket per request, then ConnectionLost."""

    def __init__(self, pool):
        self._pool = pool
        self._taken = gevent.local.local()  # per greenlet: a client may serve several

    def start_request(self):
        self._taken.socket = False

    def get_socket(self):
        if getattr(self._taken, "socket", False):
            # The loop only asks again to re-send: the first attempt's connection closed before the answer.
            raise ConnectionLost(f"{CONNECTION_LOST}: the server closed the connection before it answered "
                                 f"(a burst sends each request once)")
        self._taken.socket = True
        return self._pool.get_socket()

    def __getattr__(self, name):
        return getattr(self._pool, name)  # release_socket, close, size: the pool's own


class SingleAttemptClient(HTTPClient):
    """geventhttpclient's HTTPClient, sending each request once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._connection_pool = OneSocketPerRequest(self._connection_pool)

    def request(self, *args, **kwargs):
        self._connection_pool.start_request()
        return super().request(*args, **kwargs)


class SingleAttemptClientPool(HTTPClientPool):
    """An HTTPClientPool of SingleAttemptClients, built with the arguments of the pool it replaces."""

    def get_client(self, url):
        url = url if isinstance(url, URL) else URL(url)
        key = url.host, url.port
        if key not in self.clients:
            self.clients[key] = SingleAttemptClient.from_url(url, **self.client_args)
        return self.clients[key]


def send_once(session):
    """Make a Locust FastHttpSession send each request once (a burst user's, and the calibration's as a user's)."""
    agent = session.client
    agent.clientpool = SingleAttemptClientPool(**agent.clientpool.client_args)
    return session


def is_connection_lost(error):
    """True for a request whose connection the server closed or reset before the answer (after it connected)."""
    if isinstance(error, HTTPConnectionClosed):
        return True
    return isinstance(error, OSError) and error.errno in (errno.ECONNRESET, errno.EPIPE)
