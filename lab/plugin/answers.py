"""The burst's answers, from the processes that run users to the one that reports.

In one process the answers go to the intake at once. In Locust's distributed mode each worker
keeps its users' records and sends them to the master with Locust's own messages (as in
examples/custom_messages.py): ANSWERS, on an endpoint's last answer and every ANSWERS_INTERVAL;
and when the run stops, the master's FLUSH asks for the rest, which each worker answers with
its last ANSWERS and FLUSHED.
"""

import time

import gevent
from locust.event import EventHook
from locust.runners import STATE_MISSING

from ..files import RequestLog
from ..records import answer_record

ANSWERS = "pool-lab:answers"  # a worker -> master: records of answered burst requests
FLUSH = "pool-lab:flush"  # master -> workers: the run stops, hand over every answer now
FLUSHED = "pool-lab:flushed"  # a worker -> master: every answer handed over
# How long a stopping master waits for its workers' last answers before it reports without them.
FLUSH_PATIENCE = 2.0
# How often a worker hands over the answers of an endpoint it has not finished (progress,
# and what a stopped run still reports); an endpoint's last answer goes at once.
ANSWERS_INTERVAL = 1.0


class Intake:
    """The burst's answers in the process that reports: the one list of records every report of
    the burst reads, written to the request log as they come, and counted by the burst's order."""

    def __init__(self, environment, options, preparation, burst):
        self.preparation = preparation
        self.burst = burst
        self.records = []
        self.request_log = None
        self.open = False  # taking answers: from the run's start until its report
        options.run_starting.add_listener(self.start)
        environment.events.quitting.add_listener(self._close_log)

    def start(self, **kwargs):
        self._close_log()
        prefix = self.preparation.prefix
        prefix.parent.mkdir(parents=True, exist_ok=True)
        self.request_log = RequestLog(f"{prefix}_requests.csv")
        self.records = []
        self.open = True

    def take(self, records):
        if not self.open:
            return  # a worker's late answers of a run already reported
        self.records += records
        if self.request_log:  # closed once Locust quits: answers of users it kills on the way still count
            self.request_log.write(records)
        for record in records:
            self.burst.answered(record["endpoint"])

    def finish(self):
        """The burst's records, once: None if they were already taken for its report."""
        if not self.open:
            return None
        self.open = False
        self._close_log()
        return self.records

    def _close_log(self, **kwargs):
        if self.request_log:
            self.request_log.close()
            self.request_log = None


class LocalAnswers:
    """In one process: each burst answer goes to the intake as it comes."""

    def __init__(self, environment, options, intake):
        self.options = options
        self.intake = intake
        environment.events.request.add_listener(self.on_request)

    def on_request(self, name, **kwargs):
        # Burst runs only: a steady run may answer millions, which the waves have no use for.
        endpoint = self.options.settings.endpoints.of_request(name)
        if self.options.settings.burst and endpoint:
            self.intake.take([answer_record(endpoint, name=name, **kwargs)])


class AnswerSender:
    """On a worker: its users' burst answers, sent to the master (ANSWERS, FLUSHED)."""

    def __init__(self, environment, options, gates):
        self.runner = environment.runner
        self.options = options
        self.left = {}  # per endpoint, this worker's answers still to come
        self.unsent = []
        self.every_interval = None  # the greenlet that sends every ANSWERS_INTERVAL
        options.run_starting.add_listener(self.start)
        gates.opened.add_listener(self.expect)
        environment.events.request.add_listener(self.on_request)
        environment.events.test_stop.add_listener(self.on_test_stop)
        self.runner.register_message(FLUSH, self.on_flush)

    def start(self, settings, **kwargs):
        self.left, self.unsent = {}, []
        if settings.burst:
            self.every_interval = gevent.spawn(self._send_every, ANSWERS_INTERVAL)

    def expect(self, endpoint, users):
        self.left[endpoint] = users

    def on_request(self, name, **kwargs):
        endpoint = self.options.settings.endpoints.of_request(name)
        if not self.options.settings.burst or not endpoint:
            return
        self.unsent.append(answer_record(endpoint, name=name, **kwargs))
        self.left[endpoint] = self.left.get(endpoint, 0) - 1
        if self.left[endpoint] == 0:
            self.send()

    def send(self):
        records, self.unsent = self.unsent, []
        if records:
            self.runner.send_message(ANSWERS, records)

    def _send_every(self, seconds):
        while True:
            gevent.sleep(seconds)
            self.send()

    def on_flush(self, **kwargs):
        self.send()
        self.runner.send_message(FLUSHED)

    def on_test_stop(self, **kwargs):
        if self.every_interval:
            # What a stopped worker still holds: sent before it reports stopped (or on the master's flush).
            self.every_interval.kill(block=False)
            self.every_interval = None
            self.send()


class AnswerCollector:
    """On the master: the workers' answers (ANSWERS) into the intake, and their last ones (FLUSH) when the
    run stops before its burst is done."""

    def __init__(self, environment, options, intake):
        self.options = options
        self.intake = intake
        self.flushed = set()  # the workers that handed over their last answers of a stopping run
        self.received = EventHook()  # (node_id, records): a worker's answers, as they come
        runner = environment.runner
        runner.register_message(ANSWERS, self.on_answers)
        runner.register_message(FLUSHED, lambda msg, **kwargs: self.flushed.add(msg.node_id))
        environment.events.test_stopping.add_listener(self.collect_last_answers)

    def on_answers(self, msg, **kwargs):
        self.intake.take(msg.data)
        self.received.fire(node_id=msg.node_id, records=msg.data)

    def collect_last_answers(self, environment, **kwargs):
        """Have every worker hand over what it holds before the report.

        Locust's master stops (Ctrl-C, --run-time) without waiting for its workers; their answers
        of the last moment would arrive after the report and count as still in flight.
        """
        if not self.options.settings.burst or not self.intake.open:
            return
        runner = environment.runner
        # Not a worker the master lost (lab.plugin.lost_workers): it answers no FLUSH.
        expected = {client.id for client in runner.clients.all if client.state != STATE_MISSING}
        self.flushed = set()
        runner.send_message(FLUSH)
        deadline = time.monotonic() + FLUSH_PATIENCE
        while not expected <= self.flushed and time.monotonic() < deadline:
            gevent.sleep(0.05)
