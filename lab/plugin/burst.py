"""The burst's order, in the process that reports (a single Locust process, or the master).

Like the original client, the python burst runs first and the postgres burst starts once
every python request is answered, so the two never share the worker. Once every user is
spawned everywhere, the order opens the first endpoint's gates, counts the answers it is
told of (lab.plugin.answers.Intake), opens the next endpoint's gates when an endpoint's are
all in, and ends the run after the last.
"""

import logging
import time
from collections import Counter

import gevent
import locust.runners
import locust.stats
from gevent.event import Event
from locust.event import EventHook

from .answers import ANSWERS_INTERVAL
from .gates import OPEN_GATE

log = logging.getLogger("pool-lab")


class Burst:
    """The order of a burst whose users run in this process, behind `gates`."""

    # How long Locust's statistics take to reach this process after the last answer: they are its own.
    statistics_delay = 0.0
    # How late an answer may reach this process after it came (lab.plugin.answers): at once, here.
    answers_delay = 0.0

    def __init__(self, environment, options, gates=None):
        self.environment = environment
        self.options = options
        self.gates = gates
        self.finished = EventHook()  # (): every answer is in, or the run stopped; fired before the run ends
        # Set once the run's preparation is done (lab.plugin.preparation): the burst begins no sooner.
        self.prepared = Event()
        self.prepared.set()
        self.reset()
        options.run_starting.add_listener(self.reset)
        environment.events.spawning_complete.add_listener(self.on_spawning_complete)

    def reset(self, settings=None, **kwargs):
        self._opened = {endpoint: Event() for endpoint in (settings or self.options.settings).endpoints.names}
        self._waiting = {}
        self._order = []
        # Requests each endpoint's users have sent (all of them, when its gate opens):
        # a run stopped early reports what it left in flight.
        self.sent = Counter()
        # The endpoint whose requests are out, since when, and when its last answer came (lab.plugin.stall).
        self.current, self.began_at, self.last_answer_at = None, None, None

    def on_spawning_complete(self, user_count, **kwargs):
        if self.options.settings.burst:
            gevent.spawn(self._begin_when_prepared, self.environment.runner)

    def _begin_when_prepared(self, runner):
        self.prepared.wait()
        if runner.state in ("spawning", "running"):  # not if the run stopped while it was prepared
            self.begin(runner.target_user_classes_count)

    def begin(self, users_per_class):
        """All users are spawned: open the first endpoint that has users."""
        # A class left without tasks by --tags spawns users that never send: don't wait for them.
        users = Counter()
        for cls in self.environment.user_classes:
            if getattr(cls, "endpoint", None) and cls.tasks:
                users[cls.endpoint] += users_per_class.get(cls.__name__, 0)
        self._waiting = {e: n for e, n in users.items() if n > 0}
        self._order = [e for e in self.options.settings.endpoints.names if e in self._waiting]
        self._open_next()

    def open_gate(self, endpoint):
        self.gates.open(endpoint)

    def wait_begun(self, endpoint):
        self._opened[endpoint].wait()

    def never_began(self):
        """Endpoints with users whose turn had not come when the run stopped."""
        return list(self._order)

    def in_flight(self, endpoint):
        """Requests of `endpoint` sent and not yet answered (nor given up: see give_up)."""
        return self._waiting.get(endpoint, 0) if endpoint in self.sent else 0

    def answered(self, endpoint):
        if endpoint not in self._waiting:
            return  # an answer of an earlier run, or of an endpoint outside the burst
        self.last_answer_at = time.monotonic()
        self.give_up(endpoint, 1)

    def give_up(self, endpoint, requests):
        """Wait no more for `requests` of `endpoint`: answered, or held by a worker process that was lost
        (lab.plugin.lost_workers; then they stay in flight, or, before the endpoint began, are never sent)."""
        if endpoint not in self._waiting:
            return
        self._waiting[endpoint] -= requests
        if endpoint not in self.sent:
            if self._waiting[endpoint] <= 0:
                self._order.remove(endpoint)  # nobody left to send it
        elif self._waiting[endpoint] <= 0 and endpoint == self.current:
            self._open_next()

    def _open_next(self):
        if self._order:
            endpoint = self._order.pop(0)
            self.sent[endpoint] = self._waiting[endpoint]
            self.current, self.began_at, self.last_answer_at = endpoint, time.monotonic(), None
            self._opened[endpoint].set()
            self.open_gate(endpoint)
        else:
            self.current = None
            # From a greenlet of its own: stopping the runner kills the user greenlet calling us.
            gevent.spawn(self._finish)

    def _finish(self):
        try:
            # Reported before the stop, so the web UI's last poll of a running test already shows it.
            self.finished.fire()
        finally:
            self._stop()

    def _stop(self):
        # Headless runs end on their own; the web UI keeps its charts and can start another burst.
        if self.environment.parsed_options.headless:
            # Locust rewrites its --csv files once per CSV_STATS_INTERVAL_SEC and not at quit:
            # quitting sooner would leave the last answers out of <prefix>_stats.csv.
            gevent.sleep(self.statistics_delay + locust.stats.CSV_STATS_INTERVAL_SEC + 0.2)
            self.environment.runner.quit()
        else:
            self.environment.runner.stop()


class DistributedBurst(Burst):
    """The order of a burst whose users run on the workers: the master opens their gates with OPEN_GATE."""

    # A master has its workers' statistics at their next report, and their answers within ANSWERS_INTERVAL.
    statistics_delay = locust.runners.WORKER_REPORT_INTERVAL
    answers_delay = ANSWERS_INTERVAL

    def on_spawning_complete(self, user_count, **kwargs):
        if self.options.settings.burst:
            gevent.spawn(self._begin_when_reported, self.environment.runner)

    def _begin_when_reported(self, runner):
        # The master fires spawning_complete after waiting at most a second for the workers'
        # reports: the burst waits for every worker to have spawned its users.
        self.prepared.wait()
        target = dict(runner.target_user_classes_count)
        warn_at = time.monotonic() + 10
        while any(runner.reported_user_classes_count.get(name, 0) != n for name, n in target.items()):
            if runner.state not in ("spawning", "running"):
                return
            if warn_at and time.monotonic() > warn_at:
                warn_at = None
                log.warning("the burst still waits for every worker to report its users spawned "
                            "(%s of %s so far)", dict(runner.reported_user_classes_count), target)
            gevent.sleep(0.05)
        self.begin(target)

    def open_gate(self, endpoint):
        self.environment.runner.send_message(OPEN_GATE, endpoint)
