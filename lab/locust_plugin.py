"""The lab's part of a Locust run, as one object that registers its own listeners.

Like locust.contrib.csv_request_logger.CsvRequestLogger: locustfile.py creates it once and
calls register(environment) from its init listener; the users read `query` and `gates`.

One process, or Locust's distributed mode (--processes, --master/--worker): the processes
that run users (a single one, or the workers) keep each burst request's record and hand
it to the one that reports (itself, or the master, with Locust's own messages, as in
examples/custom_messages.py); the reporting one decides the burst's order, writes every
file and prints the summary. A worker writes nothing.
"""

import json
import logging
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import gevent
import locust.runners
import locust.stats
from locust.contrib.csv_request_logger import CsvRequestLogger
from locust.event import EventHook
from locust.runners import MasterRunner, WorkerRunner

from contract import BadParameter, SecondsOption, endpoint_of

from . import calibration, kernel, memory, report
from .burst import Burst, Gates

# Where the per-request log goes when no --csv prefix is given (web UI runs); each web UI
# burst then writes its own waves, timings and result under a prefix with its mode and time.
DEFAULT_PREFIX = "reports/webui"
# The Waves tab: one row per endpoint of the last burst.
WAVES_TAB = (("endpoint", "Endpoint"), ("requests", "Answered"), ("waves", "Waves"), ("predicted", "Predicted"),
             ("total_s", "Total (s)"), ("ideal_s", "Ideal (s)"), ("ratio", "Measured/ideal"),
             ("model_s", "Model (s)"), ("model_ratio", "Measured/model"),
             ("failures", "Failures by cause"), ("note", "Note"))

# Locust messages between the master and its workers.
OPEN_GATE = "pool-lab:open-gate"  # master -> workers: an endpoint's users send now
ANSWERS = "pool-lab:answers"  # a worker -> master: records of answered burst requests
FLUSH = "pool-lab:flush"  # master -> workers: the run stops, hand over every answer now
FLUSHED = "pool-lab:flushed"  # a worker -> master: every answer handed over
# How long a stopping master waits for its workers' last answers before it reports without them.
FLUSH_PATIENCE = 2.0
# How often a worker hands over the answers of an endpoint it has not finished (progress,
# and what a stopped run still reports); an endpoint's last answer goes at once.
ANSWERS_INTERVAL = 1.0

log = logging.getLogger("pool-lab")


def fetch_facts(host):
    """The server's /pool, with its database's /db as "db": the facts its prediction is made from."""
    facts = {}
    for path in ("/pool", "/db"):
        try:
            with urllib.request.urlopen(f"{host.rstrip('/')}{path}", timeout=5) as answer:
                facts[path] = json.load(answer)
        except (OSError, ValueError) as error:
            log.warning("%s%s did not answer (%s)", host, path, error)
    if "/pool" not in facts:
        log.warning("no prediction: without /pool the server's facts are unknown")
        return None
    return {**facts["/pool"], "db": facts.get("/db")}


def answer_record(request_type, name, response_time, response_length, response=None, exception=None,
                  start_time=None, **kwargs):
    """One answered request as plain data (Locust's messages carry msgpack): the request event's
    fields for the request log, and the server's timestamps from the answer, for the timings."""
    status_code = getattr(response, "status_code", 0) or 0
    record = {"request_type": request_type, "name": name, "response_time": response_time,
              "response_length": response_length, "start_time": start_time, "status_code": status_code,
              "exception": str(exception) if exception else None, "timing": None}
    if exception or response is None:
        return record
    try:
        answer = json.loads(response.text)
        record["timing"] = {
            "endpoint": endpoint_of(name), "sent": start_time, "done": start_time + response_time / 1000,
            "server_started": answer["started_at"], "server_finished": answer["finished_at"],
            "pool_wait": answer.get("pool_wait", ""), "connect_seconds": answer.get("connect_seconds", ""),
            "query_seconds": answer.get("query_seconds", ""), "pid": answer["pid"]}
    except (TypeError, ValueError, KeyError):
        pass
    return record


class LabRun:
    """Burst control, the server's timings of each answer, and the waves report of each run."""

    def __init__(self):
        self.environment = None
        self.behaviour = "steady"
        self.query = {}
        self.gates = Gates()
        self.burst = Burst(self._open_gate, self._finish_burst)
        self.request_log = None
        self.overflows_before = None  # the kernel's ListenOverflows when the burst began, if it counts here
        self.hand_over = None  # a worker's greenlet that hands over answers every ANSWERS_INTERVAL
        self.unsent = []  # answers of this process's users not yet handed over
        self.flushed = set()  # the workers that handed over their last answers of a stopping run
        self.reported = True
        self.waves_rows = []  # the last burst, for the web UI's Waves tab
        self.waves_csv = None

    def register(self, environment):
        """Listen to the run's events as this process's part requires: users, report, or both."""
        self.environment = environment
        runner = environment.runner
        # This process's part, decided once: a master runs no users, a worker reports nothing.
        self.master = isinstance(runner, MasterRunner)
        self.runs_users = not self.master
        self.reports = not isinstance(runner, WorkerRunner)
        events = environment.events
        events.test_start.add_listener(self.on_test_start)
        events.test_stop.add_listener(self.on_test_stop)
        if self.runs_users:
            events.request.add_listener(self.on_request)
        if not self.reports:
            runner.register_message(OPEN_GATE, lambda msg, **kwargs: self._open_gate_here(msg.data))
            runner.register_message(FLUSH, lambda **kwargs: (self._hand_over(), runner.send_message(FLUSHED)))
        if self.master:
            runner.register_message(ANSWERS, lambda msg, **kwargs: self._take_answers(msg.data))
            runner.register_message(FLUSHED, lambda msg, **kwargs: self.flushed.add(msg.node_id))
            events.test_stopping.add_listener(self.collect_last_answers)
        if self.reports:
            events.quitting.add_listener(lambda **kwargs: self.request_log and self.request_log.close())
            options = environment.parsed_options
            self.csv_prefix = options.csv_prefix if options else None
            self.prefix = Path(self.csv_prefix or DEFAULT_PREFIX)
            events.spawning_complete.add_listener(self.on_spawning_complete)
            if environment.web_ui:
                self.extend_web_ui(environment.web_ui)

    def on_test_start(self, environment, **kwargs):
        options = environment.parsed_options
        try:
            # Checked again: the web UI's form sets options as typed, past the option's type.
            seconds = SecondsOption("--sleep-seconds")(options.sleep_seconds)
            patience = float(SecondsOption("--idle-wait")(options.idle_wait) or 0)
        except BadParameter as error:
            log.error("%s", error)
            environment.runner.quit()
            return
        self.behaviour = options.behaviour
        self.query = {"seconds": seconds} if seconds else {}
        if self.runs_users:
            self.gates.reset()
            self.left, self.unsent = {}, []
            if not self.reports and self.behaviour == "burst":
                self.hand_over = gevent.spawn(self._hand_over_every, ANSWERS_INTERVAL)
        if not self.reports:
            return
        self.server_timings = []
        self.warnings = []
        self.facts = fetch_facts(environment.host)
        # What each request sleeps: the option, else the server's default (unknown without /pool).
        self.sleep = float(seconds) if seconds else (self.facts or {}).get("sleep_seconds")
        if self.behaviour == "burst":
            # A connection still held by an earlier client would skew the waves.
            self.wait_until_idle(environment.host, patience)
            self.facts = calibration.with_cpu_cost(self.facts, environment.host, self.prefix.parent, options.calibrate)
            self.memory_sample, self.sampler = None, gevent.spawn(self.sample_memory)
            # The kernel's count is this machine's: it tells about a server on this machine only.
            local = urllib.parse.urlsplit(environment.host).hostname in ("127.0.0.1", "localhost", "::1")
            self.overflows_before = kernel.listen_overflows() if local else None
        if not self.csv_prefix and self.facts:
            # A web UI run: its files must not overwrite the last run's.
            self.prefix = Path(f"{DEFAULT_PREFIX}-{self.facts['mode']}-{time.strftime('%Y%m%d-%H%M%S')}")
        self.open_request_log()
        self.burst.reset()
        self.reported = False

    def open_request_log(self):
        """Locust's per-request log of this run's burst, fed with every process's answers."""
        if self.request_log:
            self.request_log.close()
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.request_log = CsvRequestLogger(f"{self.prefix}_requests.csv")
        # The logger listens to a request event of its own: the answers, wherever they were sent from.
        # (Its quitting hook is never fired: register() closes the current log at quitting, once.)
        self.answers = EventHook()
        self.request_log.register(SimpleNamespace(events=SimpleNamespace(request=self.answers, quitting=EventHook())))

    def wait_until_idle(self, host, patience):
        deadline = time.monotonic() + patience
        while self.facts and self.facts["checked_out"] and time.monotonic() < deadline:
            gevent.sleep(0.2)
            self.facts = fetch_facts(host) or self.facts
        if self.facts and self.facts["checked_out"]:
            self.warnings.append(f"the pool had {self.facts['checked_out']} connection(s) checked out when the "
                                 f"burst began, still after {patience:g} s (--idle-wait): an earlier client's requests")
            log.warning("pool-lab: %s", self.warnings[-1])

    def sample_memory(self):
        """Sample PostgreSQL's client backends halfway through the postgres burst's first wave, when
        its connections are all open and sleeping (if the database runs on this machine).

        Once, not on a timer: psutil reads each backend's /proc files in this process, which
        would hold up Locust's users for as long; half a sleep from any answer, it delays none.
        """
        postmaster = ((self.facts or {}).get("db") or {}).get("postmaster_pid")
        self.burst.wait_begun("postgres")
        gevent.sleep((self.sleep or 0) / 2)
        self.memory_sample = memory.sample_backends(postmaster)

    # The users' side, in every process that runs users.

    def _open_gate_here(self, endpoint):
        counts = self.environment.runner.user_classes_count
        self.left[endpoint] = sum(counts.get(cls.__name__, 0) for cls in self.environment.user_classes
                                  if cls.endpoint == endpoint and cls.tasks)
        self.gates.open(endpoint)

    def on_request(self, name, **kwargs):
        """Keep each burst request's record until it goes to the reporting process."""
        # Burst runs only: a steady run may answer millions, which the waves have no use for.
        if self.behaviour != "burst":
            return
        endpoint = endpoint_of(name)
        self.unsent.append(answer_record(name=name, **kwargs))
        self.left[endpoint] = self.left.get(endpoint, 0) - 1
        if self.reports or self.left[endpoint] == 0:
            self._hand_over()

    def _hand_over(self):
        records, self.unsent = self.unsent, []
        if not records:
            return
        if self.reports:
            self._take_answers(records)
        else:
            self.environment.runner.send_message(ANSWERS, records)

    def _hand_over_every(self, seconds):
        while True:
            gevent.sleep(seconds)
            self._hand_over()

    # The reporting side: one process, or the master.

    def _take_answers(self, records):
        if self.reported:
            return  # a worker's late answers of a run already reported
        for record in records:
            self.answers.fire(**{**record, "response": SimpleNamespace(status_code=record["status_code"])})
            if record["timing"]:
                self.server_timings.append(record["timing"])
            self.burst.answered(endpoint_of(record["name"]))

    def _open_gate(self, endpoint):
        if self.master:
            self.environment.runner.send_message(OPEN_GATE, endpoint)
        else:
            self._open_gate_here(endpoint)

    def on_spawning_complete(self, user_count, **kwargs):
        if self.behaviour != "burst":
            return
        runner = self.environment.runner
        if self.master:
            gevent.spawn(self._begin_when_reported, runner)
        else:
            self._begin(runner.target_user_classes_count)

    def _begin_when_reported(self, runner):
        # The master fires spawning_complete after waiting at most a second for the workers'
        # reports: the burst waits for every worker to have spawned its users.
        target = dict(runner.target_user_classes_count)
        warn_at = time.monotonic() + 10
        while any(runner.reported_user_classes_count.get(name, 0) != n for name, n in target.items()):
            if runner.state not in ("spawning", "running"):
                return
            if warn_at and time.monotonic() > warn_at:
                warn_at = None
                log.warning("pool-lab: the burst still waits for every worker to report its users spawned "
                            "(%s of %s so far)", dict(runner.reported_user_classes_count), target)
            gevent.sleep(0.05)
        self._begin(target)

    def _begin(self, users_per_class):
        # A class left without tasks by --tags spawns users that never send: don't wait for them.
        self.burst.begin({cls.endpoint: users_per_class.get(cls.__name__, 0) if cls.tasks else 0
                          for cls in self.environment.user_classes})

    def collect_last_answers(self, environment, **kwargs):
        """A run stopping before its burst is done: have every worker hand over what it holds first.

        Locust's master stops (Ctrl-C, --run-time) without waiting for its workers; their answers
        of the last moment would arrive after the report and count as still in flight.
        """
        if self.behaviour != "burst" or self.reported:
            return
        runner = environment.runner
        expected = {client.id for client in runner.clients.all}
        self.flushed = set()
        runner.send_message(FLUSH)
        deadline = time.monotonic() + FLUSH_PATIENCE
        while not expected <= self.flushed and time.monotonic() < deadline:
            gevent.sleep(0.05)

    def _finish_burst(self):
        try:
            # Reported before the stop, so the web UI's last poll of a running test already shows it.
            self.report_burst()
        finally:
            self._stop()

    def _stop(self):
        # Headless runs end on their own; the web UI keeps its charts and can start another burst.
        if self.environment.parsed_options.headless:
            # Locust rewrites its --csv files once per CSV_STATS_INTERVAL_SEC and not at quit:
            # quitting sooner would leave the last answers out of <prefix>_stats.csv. A master
            # first waits for its workers' next statistics report.
            reports = locust.runners.WORKER_REPORT_INTERVAL if self.master else 0
            gevent.sleep(reports + locust.stats.CSV_STATS_INTERVAL_SEC + 0.2)
            self.environment.runner.quit()
        else:
            self.environment.runner.stop()

    def on_test_stop(self, environment, **kwargs):
        if self.hand_over:
            # What a stopped worker still holds: sent before it reports stopped (or on the master's flush).
            self.hand_over.kill(block=False)
            self.hand_over = None
            self._hand_over()
        if not self.reports:
            return
        if self.behaviour == "burst":
            self.report_burst()  # at once if the run stopped before its burst was done
        elif not self.master:
            self.print_steady_summary()
        elif environment.parsed_options.headless:
            # The workers send their last statistics when told to quit, after this event.
            environment.events.quitting.add_listener(self.print_steady_summary)
        else:
            # A stopped worker sends its statistics on its next report, at most this late.
            gevent.spawn_later(locust.runners.WORKER_REPORT_INTERVAL + 0.5, self.print_steady_summary)

    def print_steady_summary(self, **kwargs):
        print(f"pool-lab steady run (waves are measured in burst runs)\n{self.steady_summary()}", flush=True)

    def steady_summary(self):
        lines = []
        for entry in sorted(self.environment.stats.entries.values(), key=lambda e: e.name):
            lines.append(f"{endpoint_of(entry.name)}: {entry.num_requests} requests, "
                         f"{entry.num_failures} failed; response time median {entry.median_response_time:.0f} ms, "
                         f"95th percentile {entry.get_response_time_percentile(0.95):.0f} ms")
        return "\n".join(lines) or "no request was sent"

    def report_burst(self):
        """Print the summary and write the waves, server timings and result files, once per burst."""
        if self.reported:
            return
        self.reported = True
        self.sampler.kill()
        self.request_log.close()
        completions = report.read_request_log(self.request_log.filepath)
        never_began = self.burst.never_began()
        if not completions and not self.burst.sent:
            print("pool-lab: no request was answered", flush=True)
            return
        summaries = report.summarize(completions, self.sleep, self.facts, dict(self.burst.sent), self.server_timings)
        self.waves_csv = f"{self.prefix}_waves.csv"
        report.write_waves_csv(self.waves_csv, summaries, self.warnings, never_began)
        report.write_server_timings(f"{self.prefix}_server_timing.csv", self.server_timings)
        costs = report.connection_costs(self.server_timings, self.memory_sample, None if (
            self.memory_sample or not self.burst.sent["postgres"]) else (
            "cannot be sampled: the database does not run on this machine (or /db did not answer)"))
        if self.overflows_before is not None:
            costs["listen_overflows"] = kernel.listen_overflows() - self.overflows_before
            costs["somaxconn"] = kernel.somaxconn()
        if self.memory_sample:
            memory.write_sample(f"{self.prefix}_memory.csv", (self.sleep or 0) / 2, self.memory_sample)
        report.write_result(f"{self.prefix}_result.json", self.facts, summaries, completions, costs)
        self.waves_rows = report.waves_tab_rows(summaries, self.facts, self.warnings, never_began)
        print("\n".join([report.format_summary(summaries, self.facts, self.warnings, never_began),
                         *report.format_costs(costs), f"waves: {self.waves_csv}"]), flush=True)

    def extend_web_ui(self, web_ui):
        """A Waves tab and its CSV, options that keep their last values, and bursts that spawn at once."""
        from flask import request, send_file

        web_ui.template_args.update(
            extended_tabs=[{"title": "Waves", "key": "waves"}],
            extended_tables=[{"key": "waves", "structure": [{"key": k, "title": t} for k, t in WAVES_TAB]}],
            extended_csv_files=[{"href": "./waves/csv", "title": "Download the waves CSV of the last burst"}])

        @web_ui.app.after_request
        def add_waves(response):
            if request.path.endswith("/stats/requests") and response.is_json:
                response.set_data(json.dumps({**response.json, "extended_stats": [
                    {"key": "waves", "data": self.waves_rows}]}))
            return response

        @web_ui.app.route("/waves/csv")
        def waves_csv():
            if not self.waves_csv:
                return {"error": "not_found", "message": "no burst has ended yet"}, 404
            return send_file(Path(self.waves_csv).resolve(), mimetype="text/csv", as_attachment=True)

        @web_ui.app.before_request
        def burst_spawns_at_once():
            # A burst begins once every user is spawned: a ramp-up would only delay it.
            if request.path.endswith("/swarm") and request.form.get("behaviour") == "burst":
                form = request.form.copy()
                try:
                    form["spawn_rate"] = str(max(float(form["spawn_rate"]), min(int(form["user_count"]), 100)))
                except (KeyError, ValueError):
                    return None  # Locust itself answers a form it cannot read
                request.form = form

        update_template_args = web_ui.update_template_args

        def keep_last_options():
            # Locust fills the form's extra options from the command line; show what the last run used.
            update_template_args()
            options = vars(self.environment.parsed_options)
            for name, option in web_ui.template_args["extra_options"].items():
                option["default_value"] = options.get(name, option["default_value"])
        web_ui.update_template_args = keep_last_options
