"""Burst behaviour: every user sends one request at the same moment, endpoint after endpoint.

Like the original client, the python burst runs first and the postgres burst starts
once every python request is answered, so the two never share the worker. Users
wait on a gate per endpoint; the first gate opens when Locust has spawned everyone.
"""

from collections import Counter

import gevent
from gevent.event import Event

from .waves import ENDPOINTS


class Burst:
    def __init__(self, on_finished):
        self._on_finished = on_finished
        self.reset()

    def reset(self):
        """Close every gate; called at each test start, so the web UI can run burst after burst."""
        self._gates = {endpoint: Event() for endpoint in ENDPOINTS}
        self._never = Event()
        self._waiting = {}
        self._order = []
        # Requests each endpoint's users have sent: a run stopped early reports what it left in flight.
        self.sent = Counter()

    def begin(self, users_per_endpoint):
        """All users are spawned: open the first endpoint that has users."""
        self._waiting = {e: n for e, n in users_per_endpoint.items() if n > 0}
        self._order = [e for e in ENDPOINTS if e in self._waiting]
        self._open_next()

    def wait_turn(self, endpoint):
        self.wait_begun(endpoint)
        self.sent[endpoint] += 1

    def wait_begun(self, endpoint):
        self._gates[endpoint].wait()

    def never_began(self):
        """Endpoints with users whose turn had not come when the run stopped."""
        return list(self._order)

    def rest(self):
        """After its one request a user idles here until the runner stops it (no second request)."""
        self._never.wait()

    def answered(self, endpoint):
        self._waiting[endpoint] -= 1
        if self._waiting[endpoint] == 0:
            self._open_next()

    def _open_next(self):
        if self._order:
            self._gates[self._order.pop(0)].set()
        else:
            # From a greenlet of its own: stopping the runner kills the user greenlet calling us.
            gevent.spawn(self._on_finished)
