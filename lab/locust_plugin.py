"""The lab's part of a Locust run, as one object that registers its own listeners.

Like locust.contrib.csv_request_logger.CsvRequestLogger: locustfile.py creates it once and
calls register(environment) from its init listener; the users read `query` and `burst`.
"""

import json
import logging
import time
import urllib.request
from pathlib import Path

import gevent
import locust.stats
from locust.contrib.csv_request_logger import CsvRequestLogger

from server.params import BadParameter, seconds_option

from . import memory, report
from .burst import Burst

# Where the per-request log goes when no --csv prefix is given (web UI runs); each web UI
# burst then writes its own waves, timings and result under a prefix with its mode and time.
DEFAULT_PREFIX = "reports/webui"
# The Waves tab: one row per endpoint of the last burst.
WAVES_TAB = (("endpoint", "Endpoint"), ("requests", "Answered"), ("waves", "Waves"), ("predicted", "Predicted"),
             ("total_s", "Total (s)"), ("ideal_s", "Ideal (s)"), ("ratio", "Measured/ideal"),
             ("failures", "Failures by cause"), ("note", "Note"))

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


class BurstRequestLog(CsvRequestLogger):
    """Locust's per-request log, kept during bursts only: a steady run may send millions."""

    def __init__(self, filepath, lab):
        super().__init__(filepath)
        self.lab = lab

    def _on_request(self, **kwargs):
        if self.lab.behaviour == "burst":
            super()._on_request(**kwargs)


class LabRun:
    """Burst control, the server's timings of each answer, and the waves report of each run."""

    def __init__(self):
        self.environment = None
        self.behaviour = "steady"
        self.query = {}
        self.burst = Burst(self._finish_burst)
        self.reported = True
        self.waves_rows = []  # the last burst, for the web UI's Waves tab
        self.waves_csv = None

    def register(self, environment):
        """Start the per-request log next to Locust's own CSV files and listen to the run's events."""
        self.environment = environment
        options = environment.parsed_options
        self.csv_prefix = options.csv_prefix if options else None
        self.prefix = Path(self.csv_prefix or DEFAULT_PREFIX)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.request_log = BurstRequestLog(f"{self.prefix}_requests.csv", self)
        self.request_log.register(environment)
        events = environment.events
        events.test_start.add_listener(self.on_test_start)
        events.request.add_listener(self.on_request)
        events.spawning_complete.add_listener(self.on_spawning_complete)
        events.test_stop.add_listener(self.on_test_stop)
        if environment.web_ui:
            self.extend_web_ui(environment.web_ui)

    def on_test_start(self, environment, **kwargs):
        options = environment.parsed_options
        try:
            # Checked again: the web UI's form sets options as typed, past the option's type.
            seconds = seconds_option(options.sleep_seconds)
            patience = float(seconds_option(options.idle_wait) or 0)
        except BadParameter as error:
            log.error("%s", error)
            environment.runner.quit()
            return
        self.behaviour = options.behaviour
        self.query = {"seconds": seconds} if seconds else {}
        self.started = time.time()
        self.server_timings = []
        self.warnings = []
        self.facts = fetch_facts(environment.host)
        # What each request sleeps: the option, else the server's default (unknown without /pool).
        self.sleep = float(seconds) if seconds else (self.facts or {}).get("sleep_seconds")
        if self.behaviour == "burst":
            # A connection still held by an earlier client would skew the waves.
            self.wait_until_idle(environment.host, patience)
            self.memory_sample, self.sampler = None, gevent.spawn(self.sample_memory)
        if not self.csv_prefix and self.facts:
            # A web UI run: its files must not overwrite the last run's.
            self.prefix = Path(f"{DEFAULT_PREFIX}-{self.facts['mode']}-{time.strftime('%Y%m%d-%H%M%S')}")
        self.burst.reset()
        self.reported = False

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

    def on_request(self, name, start_time, response_time, response, exception, **kwargs):
        """Keep the server's timestamps of each answer, for splitting its time by part."""
        # Burst runs only: a steady run may answer millions, which the timings have no use for.
        if exception or response is None or self.behaviour != "burst":
            return
        try:
            answer = json.loads(response.text)
            self.server_timings.append({
                "endpoint": report.endpoint_of(name), "sent": start_time, "done": start_time + response_time / 1000,
                "server_started": answer["started_at"], "server_finished": answer["finished_at"],
                "pool_wait": answer.get("pool_wait", ""), "connect_seconds": answer.get("connect_seconds", ""),
                "query_seconds": answer.get("query_seconds", ""), "pid": answer["pid"]})
        except (TypeError, ValueError, KeyError):
            pass

    def on_spawning_complete(self, user_count, **kwargs):
        if self.behaviour != "burst":
            return
        counts = self.environment.runner.user_classes_count
        # A class left without tasks by --tags spawns users that never send: don't wait for them.
        self.burst.begin({cls.endpoint: counts.get(cls.__name__, 0) if cls.tasks else 0
                          for cls in self.environment.user_classes})

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
            # quitting sooner would leave the last answers out of <prefix>_stats.csv.
            gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.2)
            self.environment.runner.quit()
        else:
            self.environment.runner.stop()

    def on_test_stop(self, environment, **kwargs):
        if self.behaviour == "burst":
            self.report_burst()  # at once if the run stopped before its burst was done
        else:
            print(f"pool-lab steady run (waves are measured in burst runs)\n{self.steady_summary()}", flush=True)

    def steady_summary(self):
        lines = []
        for entry in sorted(self.environment.stats.entries.values(), key=lambda e: e.name):
            lines.append(f"{report.endpoint_of(entry.name)}: {entry.num_requests} requests, "
                         f"{entry.num_failures} failed; response time median {entry.median_response_time:.0f} ms, "
                         f"95th percentile {entry.get_response_time_percentile(0.95):.0f} ms")
        return "\n".join(lines) or "no request was sent"

    def report_burst(self):
        """Print the summary and write the waves, server timings and result files, once per burst."""
        if self.reported:
            return
        self.reported = True
        self.sampler.kill()
        completions = report.read_request_log(self.request_log.filepath, since=self.started)
        never_began = self.burst.never_began()
        if not completions and not self.burst.sent:
            print("pool-lab: no request was answered", flush=True)
            return
        summaries = report.summarize(completions, self.sleep, self.facts, dict(self.burst.sent), self.server_timings)
        self.waves_csv = f"{self.prefix}_waves.csv"
        report.write_waves_csv(self.waves_csv, summaries, self.warnings, never_began)
        report.write_server_timings(f"{self.prefix}_server_timing.csv", self.server_timings)
        costs = report.connection_costs(self.server_timings, self.memory_sample, None if self.memory_sample else (
            "cannot be sampled: the database does not run on this machine (or /db did not answer)"))
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
