"""A stalled burst says so while it waits: in the process that reports, when a burst's answers stop
coming for much longer than its prediction (a server stopped, a database silent), the run logs how
many requests are in flight, for how long, against the predicted total, and repeats it now and then;
the web UI's Waves tab shows the same as its status. Nothing is given up: the run waits as before,
until its answers come, --run-time, Ctrl-C or the users' network_timeout."""

import logging
import time

import gevent

from ..waves import predict
from .watch import BurstWatch

log = logging.getLogger("pool-lab")

# Stalled: no answer for longer than STALL_FACTOR x the predicted total of the endpoint's burst,
# plus STALL_MARGIN for a noisy machine (and the delay a master's answers reach it with). A healthy
# burst is silent for at most its predicted total: its first wave's answers come after one wave.
STALL_FACTOR = 2
STALL_MARGIN = 1.0
# Without a prediction (no /pool, or an unknown sleep), silent this long.
STALL_WITHOUT_PREDICTION = 30.0
# A stall is said again every STALL_REPEAT seconds, or its own threshold if that is longer.
STALL_REPEAT = 10.0
# How often the watch looks.
STALL_CHECK = 0.25


class StallWatch(BurstWatch):
    """Watches the `burst` of this process while it runs; says a stall through the log and `preparation`'s status."""

    def __init__(self, environment, options, preparation, burst):
        super().__init__(environment, options)
        self.options = options
        self.preparation = preparation
        self.burst = burst
        self.stalled = None  # the last stall's words, while it lasts
        burst.finished.add_listener(self.stop)

    def reset(self):
        self.stalled = None

    def threshold(self, endpoint):
        """(seconds of silence that make a stall, the predicted total or None)."""
        prep, burst = self.preparation, self.burst
        margin = STALL_MARGIN + burst.answers_delay
        found = self.options.settings.endpoints.named(endpoint)
        lab = found and found.lab  # /pool's facts predict the lab's sleep endpoints only (a --path may be another)
        if not prep.facts or prep.sleep is None or not lab:
            return STALL_WITHOUT_PREDICTION + margin, None
        prediction = predict(lab, burst.sent[endpoint], prep.sleep, prep.facts)
        total = prediction.model_total or prediction.ideal_total
        return STALL_FACTOR * total + margin, total

    def watch(self):
        said_at = None
        while True:
            gevent.sleep(STALL_CHECK)
            endpoint = self.burst.current
            in_flight = self.burst.in_flight(endpoint) if endpoint else 0
            if not in_flight:
                said_at = self._resume(said_at)
                continue
            now = time.monotonic()
            silent = now - (self.burst.last_answer_at or self.burst.began_at)
            threshold, predicted = self.threshold(endpoint)
            if silent < threshold:
                said_at = self._resume(said_at)
                continue
            if said_at is None or now - said_at >= max(STALL_REPEAT, threshold):
                said_at = now
                self.say(endpoint, in_flight, silent, now - self.burst.began_at, predicted)

    def say(self, endpoint, in_flight, silent, running, predicted):
        against = (f"predicted total {predicted:.2f} s" if predicted is not None else
                   f"no prediction: stalled means silent for {STALL_WITHOUT_PREDICTION:g} s")
        self.stalled = (f"STALLED: {endpoint}: {in_flight} of {self.burst.sent[endpoint]} requests in flight, no answer "
                        f"for {silent:.1f} s (the burst began {running:.1f} s ago; {against}); the server or its "
                        f"database stopped answering? The run waits for them: --run-time or Ctrl-C stops it")
        log.warning("%s", self.stalled)
        self.preparation.status = self.stalled

    def _resume(self, said_at):
        if self.stalled:
            self.stalled = None
            if self.preparation.status.startswith("STALLED"):
                self.preparation.status = "burst running"
        return None
