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

from . import report
from .burst import Burst

# Where the per-request log and waves CSV go when no --csv prefix is given (web UI runs).
DEFAULT_PREFIX = "reports/locust"

log = logging.getLogger("pool-lab")


def fetch_facts(host):
    """The server's /pool: the facts its prediction is made from, before the burst."""
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/pool", timeout=5) as answer:
            return json.load(answer)
    except (OSError, ValueError) as error:
        log.warning("no prediction: %s/pool did not answer (%s)", host, error)
        return None


class LabRun:
    """Burst control, the server's timings of each answer, and the waves report of each run."""

    def __init__(self):
        self.environment = None
        self.behaviour = "steady"
        self.query = {}
        self.burst = Burst(self._finish_burst)

    def register(self, environment):
        """Start the per-request log next to Locust's own CSV files and listen to the run's events."""
        self.environment = environment
        options = environment.parsed_options
        self.prefix = Path((options.csv_prefix if options else None) or DEFAULT_PREFIX)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.request_log = CsvRequestLogger(f"{self.prefix}_requests.csv")
        self.request_log.register(environment)
        events = environment.events
        events.test_start.add_listener(self.on_test_start)
        events.request.add_listener(self.on_request)
        events.spawning_complete.add_listener(self.on_spawning_complete)
        events.test_stop.add_listener(self.on_test_stop)

    def on_test_start(self, environment, **kwargs):
        options = environment.parsed_options
        try:
            # Checked again: the web UI's form sets options as typed, past the option's type.
            seconds = seconds_option(options.sleep_seconds)
        except BadParameter as error:
            log.error("%s", error)
            environment.runner.quit()
            return
        self.behaviour = options.behaviour
        self.query = {"seconds": seconds} if seconds else {}
        self.started = time.time()
        self.server_timings = []
        self.facts = fetch_facts(environment.host)
        self.burst.reset()

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
                "pool_wait": answer.get("pool_wait", ""), "query_seconds": answer.get("query_seconds", "")})
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
        # Headless runs end on their own; the web UI keeps its charts and can start another burst.
        if self.environment.parsed_options.headless:
            # Locust rewrites its --csv files once per CSV_STATS_INTERVAL_SEC and not at quit:
            # quitting sooner would leave the last answers out of <prefix>_stats.csv.
            gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.2)
            self.environment.runner.quit()
        else:
            self.environment.runner.stop()

    def on_test_stop(self, environment, **kwargs):
        """Print the summary; for a burst, write the waves, server timings and result files."""
        completions = report.read_request_log(self.request_log.filepath, since=self.started)
        if not completions:
            print("pool-lab: no request was answered", flush=True)
            return
        if self.behaviour != "burst":
            summary = report.format_summary(report.summarize(completions))
            print(f"pool-lab steady run (waves are measured in burst runs)\n{summary}", flush=True)
            return
        sleep = float(self.query["seconds"]) if self.query else (self.facts or {}).get("sleep_seconds")
        summaries = report.summarize(completions, sleep, self.facts)
        report.write_waves_csv(f"{self.prefix}_waves.csv", summaries)
        report.write_server_timings(f"{self.prefix}_server_timing.csv", self.server_timings)
        report.write_result(f"{self.prefix}_result.json", self.facts, summaries, completions)
        print(f"{report.format_summary(summaries, self.facts)}\nwaves: {self.prefix}_waves.csv", flush=True)
