"""Burst behaviour: every user sends one request at the same moment, endpoint after endpoint.

Like the original client, the python burst runs first and the postgres burst starts
once every python request is answered, so the two never share the worker.

Two halves, so that one burst can span Locust's worker processes:
- Gates, in every process that runs users: each user waits at its endpoint's gate,
  sends its one request when the gate opens, then rests.
- Burst, in the one process that reports (a single Locust process, or the master):
  it opens the gates in order once every user is spawned everywhere, counts the
  answers it is told of, and opens the next gate when an endpoint's are all in.
"""

from collections import Counter

import gevent
from gevent.event import Event

from contract import ENDPOINTS


class Gates:
    def __init__(self):
        self.reset()

    def reset(self):
        """Close every gate; called at each test start, so the web UI can run burst after burst."""
        self._gates = {endpoint: Event() for endpoint in ENDPOINTS}
        self._never = Event()

    def open(self, endpoint):
        self._gates[endpoint].set()

    def wait_turn(self, endpoint):
        self._gates[endpoint].wait()

    def rest(self):
        """After its one request a user idles here until the runner stops it (no second request)."""
        self._never.wait()


class Burst:
    """The order of one burst across every process with users; `open_gate` reaches their Gates."""

    def __init__(self, open_gate, on_finished):
        self._open_gate = open_gate
        self._on_finished = on_finished
        self.reset()

    def reset(self):
        self._opened = {endpoint: Event() for endpoint in ENDPOINTS}
        self._waiting = {}
        self._order = []
        # Requests each endpoint's users have sent (all of them, when its gate opens):
        # a run stopped early reports what it left in flight.
        self.sent = Counter()

    def begin(self, users_per_endpoint):
        """All users are spawned: open the first endpoint that has users."""
        self._waiting = {e: n for e, n in users_per_endpoint.items() if n > 0}
        self._order = [e for e in ENDPOINTS if e in self._waiting]
        self._open_next()

    def wait_begun(self, endpoint):
        self._opened[endpoint].wait()

    def never_began(self):
        """Endpoints with users whose turn had not come when the run stopped."""
        return list(self._order)

    def answered(self, endpoint):
        if endpoint not in self._waiting:
            return  # an answer of an earlier run, or of an endpoint outside the burst
        self._waiting[endpoint] -= 1
        if self._waiting[endpoint] == 0:
            self._open_next()

    def _open_next(self):
        if self._order:
            endpoint = self._order.pop(0)
            self.sent[endpoint] = self._waiting[endpoint]
            self._opened[endpoint].set()
            self._open_gate(endpoint)
        else:
            # From a greenlet of its own: stopping the runner kills the user greenlet calling us.
            gevent.spawn(self._on_finished)
