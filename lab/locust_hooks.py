"""What locustfile.py wires to Locust's events: the lab's options, burst control, and the report."""

import argparse
import json
import logging
import math
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import locust.stats
from locust.contrib.csv_request_logger import CsvRequestLogger

from . import report
from .burst import Burst

# Where the per-request log and waves CSV go when no --csv prefix is given (web UI runs).
DEFAULT_PREFIX = "reports/locust"
BEHAVIOURS = ("steady", "burst")

log = logging.getLogger("pool-lab")


def sleep_seconds_option(raw):
    """--sleep-seconds: empty for the server's SLEEP_SECONDS, else a finite number >= 0."""
    raw = str(raw).strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {raw!r}")
    return raw


def add_options(parser):
    # On the parser itself, not an argument group: only Locust's add_argument puts them in the web UI.
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default="steady",
                       help="burst: every user sends one request at once (python first, then "
                            "postgres) and the run ends when all are answered; steady: users loop "
                            "with no wait, for the charts")
    parser.add_argument("--sleep-seconds", type=sleep_seconds_option, default="",
                       help="?seconds= sent with every request; empty: the server's SLEEP_SECONDS")


@dataclass
class LabRun:
    """The lab's state for the current run; the web UI may start many runs in one process."""
    environment: object
    prefix: Path
    request_log: CsvRequestLogger
    burst: Burst
    behaviour: str = "steady"
    query: dict = field(default_factory=dict)
    started: float = 0.0
    pool: dict | None = None
    # Per answered request: the server's own timestamps next to the load generator's.
    server_timings: list = field(default_factory=list)


state: LabRun = None


def failure_message(response):
    return report.failure_message(response.status_code, response.text)


def on_init(environment):
    """Start the per-request log next to Locust's own CSV files."""
    global state
    options = environment.parsed_options
    prefix = Path((options.csv_prefix if options else None) or DEFAULT_PREFIX)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    request_log = CsvRequestLogger(f"{prefix}_requests.csv")
    request_log.register(environment)
    state = LabRun(environment, prefix, request_log, Burst(lambda: finish_burst(environment)))


def finish_burst(environment):
    # Headless runs end on their own; the web UI keeps its charts and can start another burst.
    if environment.parsed_options.headless:
        # Locust rewrites its --csv files once per CSV_STATS_INTERVAL_SEC and not at quit:
        # quitting sooner would leave the last answers out of <prefix>_stats.csv.
        gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.2)
        environment.runner.quit()
    else:
        environment.runner.stop()


def fetch_pool(host):
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/pool", timeout=5) as answer:
            return json.load(answer)
    except (OSError, ValueError) as error:
        log.warning("no prediction: %s/pool did not answer (%s)", host, error)
        return None


def on_test_start(environment):
    options = environment.parsed_options
    try:
        seconds = sleep_seconds_option(options.sleep_seconds)
    except argparse.ArgumentTypeError as error:
        log.error("--sleep-seconds %s", error)
        environment.runner.quit()
        return
    state.behaviour = options.behaviour
    state.query = {"seconds": seconds} if seconds else {}
    state.started = time.time()
    state.server_timings = []
    state.pool = fetch_pool(environment.host)
    state.burst.reset()


def on_request(name, start_time, response_time, response, exception):
    """Keep the server's timestamps of each answer, for splitting its time by part."""
    # Burst runs only: a steady run may answer millions, which the timings have no use for.
    if exception or response is None or state is None or state.behaviour != "burst":
        return
    try:
        answer = json.loads(response.text)
        state.server_timings.append({
            "endpoint": report.endpoint_of(name), "sent": start_time, "done": start_time + response_time / 1000,
            "server_started": answer["started_at"], "server_finished": answer["finished_at"],
            "pool_wait": answer.get("pool_wait", ""), "query_seconds": answer.get("query_seconds", "")})
    except (TypeError, ValueError, KeyError):
        pass


def on_spawning_complete():
    if state.behaviour != "burst":
        return
    environment = state.environment
    counts = environment.runner.user_classes_count
    # A class left without tasks by --tags spawns users that never send: don't wait for them.
    state.burst.begin({cls.endpoint: counts.get(cls.__name__, 0) if cls.tasks else 0
                       for cls in environment.user_classes})


def on_test_stop(environment):
    """Print the summary and write <prefix>_waves.csv from this run's rows of the request log."""
    completions = report.read_request_log(state.request_log.filepath, since=state.started)
    if not completions:
        print("pool-lab: no request was answered", flush=True)
        return
    if state.behaviour != "burst":
        summary = report.format_summary(report.summarize(completions))
        print(f"pool-lab steady run (waves are measured in burst runs)\n{summary}", flush=True)
        return
    sleep = float(state.query["seconds"]) if state.query else (state.pool or {}).get("sleep_seconds")
    summaries = report.summarize(completions, sleep, state.pool)
    report.write_waves_csv(f"{state.prefix}_waves.csv", summaries)
    report.write_server_timings(f"{state.prefix}_server_timing.csv", state.server_timings)
    print(f"{report.format_summary(summaries, state.pool)}\nwaves: {state.prefix}_waves.csv", flush=True)
