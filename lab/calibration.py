"""The CPU one request costs a mode, measured before a burst and never from it.

gevent overlaps waiting, not CPU: a worker runs every request's Python code (accept, parse,
route, answer) one after another, so a burst of N requests pays N x c beyond its sleeps,
spread over the worker processes that can run at once (lab.waves.predict). c is measured
here with a burst of its own: K concurrent `/sleep/python/?seconds=0` requests, each on a
new connection as a Locust user's first request is, sent from this (gevent) process; its
wall time over K is what one request costs end to end, the load generator's share included,
which the real burst pays too. The python endpoint never touches the database, so the
calibration leaves the pool as it found it.

One c per load-generating machine, server host, mode and number of workers, kept in `calibration.json` beside
the run's CSV files and reused for every N; `--calibrate` (or deleting the file) measures again.
"""

import json
import logging
import platform
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit

import gevent
from geventhttpclient import HTTPClient

from contract import sleep_path

from .waves import parallel_workers

# Nothing but the worker's own work: the python endpoint, no sleep.
PATH = f"{sleep_path('python')}?seconds=0"

# K, and how many times: the median of the rounds stands for c. 300 overlapped requests take
# a fraction of a second on any mode (serial ones too, at seconds=0) and sit far below a gevent
# worker's 1000 connections.
REQUESTS = 300
ROUNDS = 5
TIMEOUT = 30.0
FILE_NAME = "calibration.json"

# Locust shows the logger's name before each message ("INFO/pool-lab: ..."): messages carry no prefix of their own.
log = logging.getLogger("pool-lab")


class CalibrationError(Exception):
    """The calibration burst did not answer as it must: no c can be told from it."""


def one_request(host):
    """One seconds=0 python request on a connection of its own; None, or why it failed."""
    try:
        client = HTTPClient.from_url(host, concurrency=1, connection_timeout=TIMEOUT, network_timeout=TIMEOUT)
    except Exception as error:  # a host it cannot even parse
        return f"{type(error).__name__}: {error}"
    try:
        response = client.get(PATH)
        response.read()
        return None if response.status_code == 200 else f"{PATH} answered HTTP {response.status_code}"
    except Exception as error:  # refused, reset, timed out, no HTTP: whatever it was, no c comes of it
        return f"{type(error).__name__}: {error}"
    finally:
        client.close()  # before the burst it calibrates for: no connection of ours left open


def burst_seconds(host, requests):
    """Wall time of `requests` concurrent seconds=0 python requests, each on a connection of its own."""
    started = time.perf_counter()
    # Failures are returned, not raised: a greenlet that raises prints its traceback.
    greenlets = [gevent.spawn(one_request, host) for _ in range(requests)]
    gevent.joinall(greenlets)
    seconds = time.perf_counter() - started
    failed = [g.value for g in greenlets if g.value]
    if failed:
        raise CalibrationError(f"{len(failed)} of {requests} requests failed, the first with {failed[0]}")
    return seconds


def measure(host, facts, requests=REQUESTS, rounds=ROUNDS, progress=None):
    """c, the CPU seconds one request costs one worker, with what it was measured on; `progress(done, rounds)`
    hears of each round (the web UI shows it)."""
    # One request first: a server that does not answer is told in one line, not in K.
    failed = one_request(host)
    if failed:
        raise CalibrationError(failed)
    walls = []
    for _ in range(rounds):
        if progress:
            progress(len(walls), rounds)
        walls.append(burst_seconds(host, requests))
    per_request = statistics.median(walls) / requests
    # Per worker: the K requests ran spread over the workers that run at once, as the model spreads a burst.
    return {"cpu_per_request": per_request * parallel_workers(facts), "requests": requests, "rounds": rounds,
            "wall_per_request": [round(wall / requests, 7) for wall in walls],
            "workers": facts["workers"], "cpus": facts.get("cpus"),
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}


def cache_key(host, facts):
    # With the workers: on 2 cores two workers share them with the load generator, so one
    # worker's c (its wall time per request) does not hold for two.
    workers = "" if facts["workers"] == 1 else f" x {facts['workers']} workers"
    return f"{platform.node()} -> {urlsplit(host).hostname} {facts['mode']}{workers}"


def with_cpu_cost(facts, host, directory, again=False, progress=None):
    """The server's facts with "calibration": its mode's c, from the cache in `directory` or measured
    now (`again`: measured now whatever the cache holds). A failure is a warning and
    {"error": why}: the burst still runs, with the plain ideal and no model."""
    if not facts:
        return facts  # no /pool: no prediction to add a model to
    path = Path(directory) / FILE_NAME
    key = cache_key(host, facts)
    try:
        cache = json.loads(path.read_text())
    except FileNotFoundError:
        cache = {}
    except (OSError, ValueError) as error:
        log.warning("%s cannot be read (%s): measuring the CPU per request again", path, error)
        cache = {}
    if not isinstance(cache, dict) or not all(isinstance(entry, dict) for entry in cache.values()):
        log.warning("%s is not the lab's calibration file: measuring the CPU per request again", path)
        cache = {}
    if key in cache and not again:
        return {**facts, "calibration": {**cache[key], "cached": str(path)}}
    try:
        calibration = measure(host, facts, progress=progress)
    except Exception as error:  # CalibrationError, or anything else: a burst must never hang on its model
        error = error if isinstance(error, CalibrationError) else f"{type(error).__name__}: {error}"
        log.warning("no CPU model: the calibration burst failed (%s)", error)
        return {**facts, "calibration": {"error": f"the calibration burst failed ({error})"}}
    cache[key] = calibration
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=2) + "\n")
    except OSError as error:
        log.warning("%s cannot be written (%s): the next run measures again", path, error)
    log.info("%s: %.3f ms of CPU per request, written to %s", key,
             1000 * calibration["cpu_per_request"], path)
    return {**facts, "calibration": calibration}
