"""On the master: a worker process lost mid-burst is named, with the requests it held, and the burst
goes on without them instead of waiting for them forever.

Locust's master notices a worker that stopped sending heartbeats (locust.runners.heartbeat_worker:
after HEARTBEAT_LIVENESS heartbeats of HEARTBEAT_INTERVAL missed, about 3 s), marks it missing and
forgets its users; it says nothing of what the worker's users had sent. This watch remembers each
worker's users while it is alive and counts its answers; once it is missing, its requests of the
endpoint in flight are given up (they stay in flight in every count: sent, never answered), its users
of the endpoints still to come never send, and the report says so as a warning.
"""

import logging
from collections import Counter

import gevent
from locust.runners import HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS, STATE_MISSING

from .watch import BurstWatch

log = logging.getLogger("pool-lab")


class LostWorkers(BurstWatch):
    """Watches the master's workers during a burst; `burst` is its order, `preparation` holds the report's warnings."""

    def __init__(self, environment, options, preparation, burst, collector):
        super().__init__(environment, options)
        self.environment = environment
        self.preparation = preparation
        self.burst = burst
        self.users = {}  # per worker: {endpoint: users}, as last reported before it went missing
        self.answers = Counter()  # (worker, endpoint): its answers so far
        self.lost = {}  # per lost worker: {endpoint: requests it held in flight}
        collector.received.add_listener(self.took)

    def reset(self):
        self.users, self.answers, self.lost = {}, Counter(), {}

    def took(self, node_id, records):
        """A worker's answers (lab.plugin.answers.AnswerCollector hands them over as they come)."""
        for record in records:
            self.answers[node_id, record["endpoint"]] += 1

    def endpoints(self, user_classes_count):
        counts = Counter()
        for cls in self.environment.user_classes:
            if cls.tasks:
                counts[cls.endpoint] += user_classes_count.get(cls.__name__, 0)
        return counts

    def watch(self):
        while True:
            gevent.sleep(HEARTBEAT_INTERVAL / 2)
            for client in list(self.environment.runner.clients.all):
                if client.id in self.lost:
                    continue
                if client.state != STATE_MISSING:
                    if client.user_classes_count:
                        self.users[client.id] = self.endpoints(client.user_classes_count)
                elif client.id in self.users:
                    self.on_lost(client.id)

    def on_lost(self, node_id):
        users = self.users[node_id]
        held = {e: max(n - self.answers[node_id, e], 0) for e, n in users.items() if e in self.burst.sent}
        never_sent = {e: n for e, n in users.items() if e not in self.burst.sent and n}
        # The endpoints still to come first: giving up the one in flight may open the next.
        for endpoint, count in [*never_sent.items(), *held.items()]:
            self.burst.give_up(endpoint, count)
        self.lost[node_id] = held
        words = (f"Locust worker {node_id} was lost mid-burst (no heartbeat for {HEARTBEAT_LIVENESS * HEARTBEAT_INTERVAL:g} s) holding "
                 f"{sum(held.values())} requests unanswered ({', '.join(f'{e} {n}' for e, n in held.items() if n) or 'none'})"
                 f", counted in flight; the burst goes on without them")
        if never_sent:
            words += f"; its users of {', '.join(f'{e} ({n})' for e, n in never_sent.items())} never sent"
        log.warning("%s", words)
        self.preparation.warnings.append(words)

