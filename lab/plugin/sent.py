"""Requests sent, per endpoint, counted where users run: what a steady run's summary needs to say how
many were still in flight when it stopped, and a probe's steps (lab.plugin.probe) the same (Locust's statistics count a request once it finishes, and a
user stopped mid-request is never counted). A burst counts its own (lab.plugin.burst: every user sends one).

A worker hands its count to the master in Locust's own reports (the report_to_master and worker_report
events, as locust-plugins' listeners do), the last one after the run stops.
"""

from collections import Counter

SENT = "pool_lab_sent"  # the key of a worker's report that carries its count


class SentCount:
    """In a process that runs users: the requests they sent this run (BurstUser.burst_request adds each)."""

    def __init__(self, environment, options):
        self.sent = Counter()
        options.run_starting.add_listener(self.reset)
        environment.events.report_to_master.add_listener(self.on_report_to_master)

    def reset(self, **kwargs):
        self.sent = Counter()

    def add(self, endpoint):
        self.sent[endpoint] += 1

    def of(self, endpoint):
        return self.sent[endpoint]

    def on_report_to_master(self, client_id, data, **kwargs):
        data[SENT] = dict(self.sent)


class WorkersSent:
    """On the master: the requests every worker's users sent this run, from their last reports."""

    def __init__(self, environment, options):
        self.by_worker = {}
        options.run_starting.add_listener(self.reset)
        environment.events.worker_report.add_listener(self.on_worker_report)

    def reset(self, **kwargs):
        self.by_worker = {}

    def on_worker_report(self, client_id, data, **kwargs):
        if SENT in data:
            self.by_worker[client_id] = Counter(data[SENT])  # each report holds the worker's whole count

    @property
    def sent(self):
        return sum(self.by_worker.values(), Counter())

    def of(self, endpoint):
        return sum(counts.get(endpoint, 0) for counts in self.by_worker.values())
