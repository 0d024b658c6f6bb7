"""The concurrency probe's run, in the process that reports (a single Locust process, or the master).

Closed-loop users in steps, one endpoint after the other (python, then postgres, like the burst:
they never share the worker). Each step is Locust's own runner.start(users, spawn_rate,
user_classes=[the endpoint's class]), as a LoadTestShape's tick would ask it; once the step's users
are all up and one round of answers has passed, the step is measured from Locust's own statistics,
read at the window's start and end (on a master they are its workers', aggregated). The requests
sent come from lab.plugin.sent, counted where the users run and, on a worker, handed over with each of its
statistics reports, so that sent and answered are read at the same moment.
"""

import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import gevent
import locust.runners
import locust.stats
from locust.event import EventHook

from .. import probe
from ..render import steady_failure_cause
from .gates import OPEN_GATE

log = logging.getLogger("pool-lab")

# The most a step waits for its users to come up, or the last endpoint's in-flight requests to end.
PATIENCE = 60.0


def probe_endpoints(environment, endpoints):
    """The run's `endpoints` (lab.endpoints.Endpoints), in probe order: (name, user class, the name Locust
    reports its requests by), of the user classes that send (--tags leaves some without tasks)."""
    classes = {cls.endpoint: cls for cls in environment.user_classes if getattr(cls, "endpoint", None) and cls.tasks}
    return [(e.name, classes[e.name], e.request_name) for e in endpoints.items if e.name in classes]


@dataclass(frozen=True)
class Reading:
    """One endpoint's statistics at one moment."""
    at: float
    requests: int
    failures: int
    response_times: dict
    total_ms: float  # the sum of their response times, exact (response_times rounds them)
    errors: Counter
    sent: int


def read(environment, sent, endpoint, name):
    stats = environment.runner.stats
    entry = stats.entries.get((name, "GET"))
    errors = Counter()
    for error in stats.errors.values():
        if error.name == name:
            errors[error.error] += error.occurrences
    if entry is None:
        return Reading(time.monotonic(), 0, 0, {}, 0.0, errors, sent.of(endpoint))
    return Reading(time.monotonic(), entry.num_requests, entry.num_failures, dict(entry.response_times),
                   entry.total_response_time, errors, sent.of(endpoint))


def step_between(endpoint, users, first, last, seconds):
    """The step measured between two readings, `seconds` apart."""
    requests = last.requests - first.requests
    failed = last.failures - first.failures
    times = {t: n - first.response_times.get(t, 0) for t, n in last.response_times.items()}
    times = {t: n for t, n in times.items() if n > 0}
    failures = Counter()
    for error, n in last.errors.items():
        if n - first.errors.get(error, 0) > 0:
            failures[steady_failure_cause(error)] += n - first.errors.get(error, 0)
    if sum(failures.values()) != failed:  # an error Locust kept under another name: counted, cause unknown
        failures["other"] += failed - sum(failures.values())
    answered = requests - failed
    median = p95 = mean = None
    if answered > 0 and times:
        count = sum(times.values())
        median = locust.stats.calculate_response_time_percentile(times, count, 0.5)
        p95 = locust.stats.calculate_response_time_percentile(times, count, 0.95)
        mean = (last.total_ms - first.total_ms) / requests
    return probe.Step(endpoint, users, seconds, requests, answered / seconds if seconds > 0 else 0.0,
                      median, p95, +failures, last.sent, last.sent - last.requests, mean,
                      last.requests - last.failures, last.failures)


class ProbeRun:
    """A probe whose users run in this process: it steps them, measures each step and hands the steps
    to `finished` (endpoint -> [Step]); then ends the run as a burst does."""

    # How late Locust's statistics reach this process: they are its own.
    statistics_lag = 0.0

    def __init__(self, environment, options, preparation, sent, gates=None):
        self.environment = environment
        self.options = options
        self.preparation = preparation
        self.sent = sent
        self.gates = gates
        self.finished = EventHook()  # (steps, plan): the probe's steps per endpoint; plan: its words on timing
        self.reset()
        options.run_starting.add_listener(self.reset)
        environment.events.spawning_complete.add_listener(self.on_spawning_complete)

    def reset(self, **kwargs):
        self.began = False
        self.steps = {}
        self.status = "no probe yet"
        self.plan = ""
        self.stopped_early = False

    def on_spawning_complete(self, **kwargs):
        # The first spawn is Locust's own (-u users, idle at their gates); every later one is a step's.
        if self.options.settings.probe and not self.began:
            self.began = True
            gevent.spawn(self.run).link_exception(self._failed)

    def _failed(self, greenlet):
        log.error("the probe failed: %s", greenlet.exception)
        self._stop()

    def open_gate(self, endpoint):
        self.gates.open(endpoint)

    def users_up(self, cls, users):
        counts = self.environment.runner.user_classes_count
        return counts.get(cls.__name__, 0) == users and sum(counts.values()) == users and self.spawned()

    def spawned(self):
        """The runner's spawning is over: the next runner.start would kill its greenlet midway, which can
        leave the next dispatch stuck (seen stopping 1,000 users)."""
        greenlet = getattr(self.environment.runner, "spawning_greenlet", None)
        return greenlet is None or greenlet.dead

    def running(self):
        return self.environment.runner.state in ("spawning", "running")

    def wait(self, until, patience=PATIENCE):
        deadline = time.monotonic() + patience
        while not until():
            if not self.running() or time.monotonic() > deadline:
                return False
            gevent.sleep(0.05)
        return True

    def plan_for(self):
        settings, options = self.options.settings, self.environment.parsed_options
        users = int(options.num_users or 1)
        steps = list(settings.probe_steps) or probe.default_steps(users)
        sleep = self.preparation.sleep
        seconds = settings.step_seconds or probe.default_step_seconds(sleep)
        how = "--step-seconds" if settings.step_seconds else (
            f"the default, max(2 s, 4 x the {sleep:g} s sleep)" if sleep else
            "the default for an unknown sleep, 2 s")
        self.plan = f"steps of {', '.join(map(str, steps))} users, each measured for {seconds:g} s ({how})"
        return steps, seconds

    def run(self):
        runner, environment = self.environment.runner, self.environment
        steps, seconds = self.plan_for()
        rate = max(float(environment.parsed_options.spawn_rate or 1), 1.0)
        endpoints = probe_endpoints(environment, self.options.settings.endpoints)
        stop_timeout = environment.stop_timeout
        # The first step stops Locust's idle users at once; later ones let the users of an endpoint
        # whose turn is over finish their request, so the next endpoint starts on an idle server.
        environment.stop_timeout = 0
        try:
            for endpoint, cls, name in endpoints:
                self.steps[endpoint] = []
                for users in steps:
                    if not self.running():
                        self.stopped_early = True
                        return
                    self.status = f"probe: {endpoint} at {users} users"
                    if users == steps[0]:
                        # Locust's dispatcher stops the newest users, whatever their class: every user
                        # stops first (the endpoint before finishes its last requests, or has them stopped).
                        # Locust stops them at the spawn rate, as it starts them.
                        patience = (runner.user_count / rate + (environment.stop_timeout or 0)
                                    + 2 * self.statistics_lag + 5)
                        runner.start(0, rate)
                        self.wait(lambda: self.users_up(cls, 0) and all(
                            self.in_flight(e, n) <= 0 for e, _, n in endpoints if e != endpoint), patience=patience)
                        environment.stop_timeout = stop_timeout
                    runner.start(users, min(rate, max(users, 1)), user_classes=[cls])
                    if not self.wait(lambda: self.users_up(cls, users)):
                        log.warning("probe: %s did not reach %d users within %g s", endpoint, users, PATIENCE)
                    if users == steps[0]:
                        self.open_gate(endpoint)
                    step = self.measure(endpoint, name, users, seconds)
                    if step is None:
                        self.stopped_early = True
                        return
                    self.steps[endpoint].append(step)
                    # The next endpoint's first step lets this one's users finish a request of this length.
                    environment.stop_timeout = max(stop_timeout or 0, 2 * (step.p95_ms or 0) / 1000 + 1)
        finally:
            environment.stop_timeout = stop_timeout
            self.status = "probe done" if not self.stopped_early else "probe stopped early"
            self.finished.fire(steps=self.steps, plan=self.plan, stopped_early=self.stopped_early)
            if not self.stopped_early:
                gevent.spawn(self._stop)

    def in_flight(self, endpoint, name):
        return self.sent.of(endpoint) - read_count(self.environment, name)

    def hold(self, first, seconds, endpoint, name):
        """The reading that ends the step's window: at least `seconds` after `first`, and a whole number of
        rounds of one request alone (the first step's mean latency; for the first step, its own). Answers
        that come in waves (a hard limit, equal sleeps) come one such round apart, below the limit and
        past it: a window of whole rounds holds whole waves, not cut at its edges."""
        gevent.sleep(seconds)
        mid = read(self.environment, self.sent, endpoint, name)
        deadline = first.at + PATIENCE
        while mid.requests == first.requests and self.running() and time.monotonic() < deadline:
            gevent.sleep(0.1)  # not one answer yet: a round longer than the step
            mid = read(self.environment, self.sent, endpoint, name)
        done = self.steps.get(endpoint) or []
        if done and done[0].mean_ms:
            round_s = done[0].mean_ms / 1000
        elif mid.requests > first.requests:
            round_s = (mid.total_ms - first.total_ms) / (mid.requests - first.requests) / 1000
        else:
            round_s = 0
        if round_s > 0:
            rounds = max(1, math.ceil((mid.at - first.at) / round_s - 0.02))
            gevent.sleep(max(0.0, first.at + rounds * round_s - time.monotonic()))
        return read(self.environment, self.sent, endpoint, name)

    def settle(self, endpoint, name, users):
        """One round of answers at this step's load before it is measured: for an endpoint's first step,
        its first answer (which opened the server's connection); then the last step's latency, grown
        with the users as a saturated server's would (at most doubled: the first window may hold the
        rest of a larger jump's transient)."""
        done = self.steps.get(endpoint) or []
        if not done:
            before = read_count(self.environment, name)
            self.wait(lambda: read_count(self.environment, name) > before)
            return 0.2
        if not done[-1].median_ms:
            return 0.2
        return min(30.0, max(0.2, done[-1].median_ms / 1000 * min(2.0, users / done[-1].users)))

    def measure(self, endpoint, name, users, seconds):
        gevent.sleep(self.settle(endpoint, name, users) + self.statistics_lag)
        first = read(self.environment, self.sent, endpoint, name)
        last = self.hold(first, seconds, endpoint, name)
        if not self.running():
            return None
        return step_between(endpoint, users, first, last, last.at - first.at)

    def _stop(self):
        if self.environment.parsed_options.headless:
            gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + self.statistics_lag + 0.2)
            self.environment.runner.quit()
        else:
            self.environment.runner.stop()


def read_count(environment, name):
    entry = environment.runner.stats.entries.get((name, "GET"))
    return entry.num_requests if entry else 0


class DistributedProbeRun(ProbeRun):
    """A probe whose users run on the workers: the master's statistics are theirs as of their last report,
    every WORKER_REPORT_INTERVAL. Each window is a whole number of those intervals and starts one
    interval late, so every worker's share of it is as long as the window itself (answers in waves
    can still be cut at its edges: its throughput is coarser than one process's)."""

    statistics_lag = locust.runners.WORKER_REPORT_INTERVAL

    def open_gate(self, endpoint):
        self.environment.runner.send_message(OPEN_GATE, endpoint)

    def users_up(self, cls, users):
        counts = self.environment.runner.reported_user_classes_count
        return counts.get(cls.__name__, 0) == users and sum(counts.values()) == users and self.spawned()

    def hold(self, first, seconds, endpoint, name):
        """A whole number of report intervals: each worker's share of the window is as long as the window."""
        interval = locust.runners.WORKER_REPORT_INTERVAL
        gevent.sleep(max(1, math.ceil(seconds / interval - 0.05)) * interval)
        return read(self.environment, self.sent, endpoint, name)


class ProbeReporter:
    """Once per probe, when its last step is measured or the run stops: the inference per endpoint, the
    terminal's table and verdict, <prefix>_probe.csv, .png and _result.json, and the Probe tab's rows."""

    def __init__(self, environment, options, preparation, run, summary):
        self.environment = environment
        self.options = options
        self.preparation = preparation
        self.run = run
        self.summary = summary
        self.clear()
        options.run_starting.add_listener(self.clear)
        run.finished.add_listener(self.report)
        environment.events.test_stop.add_listener(self.on_test_stop)

    def clear(self, **kwargs):
        self.reported = False
        self.rows, self.verdict, self.csv, self.png, self.written = [], "", None, None, []

    def on_test_stop(self, **kwargs):
        if self.options.settings.probe and self.run.began:
            # At once if the run stopped before the probe was done: the steps measured so far.
            self.report(self.run.steps, self.run.plan, stopped_early=True)

    def report(self, steps, plan, stopped_early=False):
        from .. import files, plot, probe_report  # matplotlib: only once a probe has something to show

        if self.reported:
            return
        self.reported = True
        prep = self.preparation
        steps = {endpoint: list(done) for endpoint, done in steps.items()}
        inferences = {endpoint: probe.infer(endpoint, done) for endpoint, done in steps.items()}
        if not steps:
            self.summary.say("pool-lab: the probe stopped before its first step")
            return
        header = probe_report.title(prep.facts, self.environment.host, prep.started)
        labs = {e.name: e.lab for e in self.options.settings.endpoints.items}
        self.csv, self.png = f"{prep.prefix}_probe.csv", f"{prep.prefix}_probe.png"
        probe_report.write_probe_csv(self.csv, steps)
        plot.plot_probe(self.png, header, steps, inferences)
        entries = {e: probe_report.result_entry(inferences[e], steps[e], prep.facts, labs) for e in steps}
        files.write_result(f"{prep.prefix}_result.json", prep.facts, [], {}, probe=entries)
        self.written = [self.csv, self.png, f"{prep.prefix}_result.json"]
        self.rows = [probe_report.step_row(s) for done in steps.values() for s in done]
        self.verdict = "\n".join(line for e in steps
                                 for line in probe_report.verdict_lines(inferences[e], prep.facts, labs))
        self.summary.say(probe_report.format_probe(steps, inferences, prep.facts, plan, header, stopped_early, labs)
                         + f"\nprobe: {self.csv}")


class ProbeTab:
    """The web UI's Probe tab: a row per step of the last probe, its run, state, verdict and files above
    the table and its picture under it (the page's script of lab.plugin.web_ui follows it too)."""

    def __init__(self, environment, extension, preparation, run, reporter):
        from flask import request

        from ..probe_report import PROBE_TAB

        self.environment, self.preparation, self.run, self.reporter = environment, preparation, run, reporter
        self.request = request
        web_ui = environment.web_ui
        web_ui.template_args["extended_tabs"].append({"title": "Probe", "key": "probe"})
        web_ui.template_args["extended_tables"].append(
            {"key": "probe", "structure": [{"key": k, "title": t} for k, t in PROBE_TAB]})
        web_ui.template_args["extended_csv_files"] += [
            {"href": "./probe/csv", "title": "Download the probe CSV of the last probe"},
            {"href": "./probe/png", "title": "Throughput and latency of the last probe (PNG)"}]
        extension.tabs.append(("probe", "pool-lab-probe-run", "pool-lab-probe-png",
                               "throughput and latency against users, the inferred limit marked, per endpoint"))
        web_ui.app.after_request(self.add_rows)
        web_ui.app.route("/probe/csv")(self.probe_csv)
        web_ui.app.route("/probe/png")(self.probe_png)
        web_ui.app.route("/probe/info")(self.probe_info)

    def add_rows(self, response):
        if self.request.path.endswith("/stats/requests") and response.is_json:
            stats = {**response.json, "extended_stats": [*response.json.get("extended_stats", []),
                                                         {"key": "probe", "data": self.reporter.rows}]}
            response.set_data(json.dumps(stats))
        return response

    def _file(self, path, mimetype, **kwargs):
        from flask import send_file

        if not path:
            return {"error": "not_found", "message": "no probe has ended since the last run started"}, 404
        return send_file(Path(path).resolve(), mimetype=mimetype, **kwargs)

    def probe_csv(self):
        return self._file(self.reporter.csv, "text/csv", as_attachment=True)

    def probe_png(self):
        return self._file(self.reporter.png, "image/png", max_age=0)

    def probe_info(self):
        from ..probe_report import title

        prep = self.preparation
        if not (prep.started and self.run.began):
            return {"run": None, "status": self.run.status, "files": [], "png": None}
        status = self.reporter.verdict if self.reporter.reported else f"{self.run.status} ({self.run.plan})"
        return {"run": title(prep.facts, self.environment.host, prep.started), "status": status,
                "files": self.reporter.written, "png": self.reporter.png}
