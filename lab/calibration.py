"""The CPU one request costs a mode, measured before a burst and never from it.

gevent overlaps waiting, not CPU: a worker runs every request's Python code (accept, parse,
route, answer) one after another, so a burst of N requests pays its CPU beyond its sleeps,
spread over the worker processes that can run at once (lab.waves.cpu_model). c is measured
here with a burst of its own: K concurrent `/sleep/python/` requests sent from this (gevent)
process as a burst's users send theirs, each on a connection of its own with Locust's client,
all waiting for one release as the users wait at their gate, while the server's Gunicorn
workers' CPU time (psutil finds them: /pool's pid and its master's other children) and this
process's own are read before and after: c is the workers' CPU over K, and the load
generator's CPU per request is measured beside it, with the part of it that releases the
requests before the server can read any. CPU per request does not change with the number of
workers or Locust processes; how they share the cores is the model's (lab.waves).
On an overlapping worker the requests sleep SPLIT_SLEEP seconds, and the workers' CPU read just
before the first answer could begin, once it had stopped growing, is the part of c before the sleep.
A server on another machine has no CPU time to read here: then c is the burst's wall time over K,
as the model's line says. The python endpoint never touches the database, so the calibration
leaves the pool as it found it.

One c per load-generating machine, server host, mode and number of workers, kept in `calibration.json` beside
the run's CSV files and reused for every N; `--calibrate` (or deleting the file) measures again,
as does an entry of an older kind.
"""

import ctypes
import json
import logging
import platform
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit

import gevent
import psutil
from gevent.event import Event
from locust.contrib.fasthttp import FastHttpSession
from locust.event import EventHook

from contract import sleep_path

from .single_attempt import send_once
from .waves import parallel_workers

# K, and how many times: the median of the rounds stands for c. 300 overlapped requests take
# a fraction of a second on any mode (serial ones too, at seconds=0) and sit far below a gevent
# worker's 1000 connections.
REQUESTS = 300
ROUNDS = 5
TIMEOUT = 30.0
FILE_NAME = "calibration.json"
# What an entry holds: entries of another kind (or none, c from wall time before) are measured again.
KIND = "cpu-3"
# The sleep of a round on a worker that overlaps K requests: long enough for every request's
# Python before its sleep to run before the first answer (300 x well under 1 ms, a few times that
# on a machine whose cores other programs hold), short enough to keep the calibration to seconds.
SPLIT_SLEEP = 1.0
# The part of c before the sleep counts when the workers' CPU had stopped growing this share of the
# sleep before the first answer could begin (sampled every SAMPLE_EVERY seconds): every request asleep.
IDLE_BEFORE_FIRST = 0.2
SAMPLE_EVERY = 0.02
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# Locust shows the logger's name before each message ("INFO/pool-lab: ..."): messages carry no prefix of their own.
log = logging.getLogger("pool-lab")


class CalibrationError(Exception):
    """The calibration burst did not answer as it must: no c can be told from it."""


def path_for(seconds):
    # Nothing but the worker's own work: the python endpoint.
    return f"{sleep_path('python')}?seconds={seconds:g}"


# The request as a burst user sends it (lab.plugin.users.BurstUser.burst_request): the path, its query.
PATH = sleep_path("python")


def client(host):
    """A client as a burst user's (lab.plugin.users.BurstUser): Locust's FastHttpSession sending each request
    once, on a connection of its own, its request events heard by nobody (a calibration request is no
    answer of the run)."""
    # Without a trailing slash, as BurstUser takes its host: the web UI keeps one as typed.
    return send_once(FastHttpSession(host.rstrip("/"), request_event=EventHook(), user=None,
                                     connection_timeout=TIMEOUT, network_timeout=TIMEOUT))


def one_request(host, seconds=0, session=None, release=None):
    """One python request on a connection of its own (`session`'s, made before the `release` opens, as a
    user is made before its gate opens); None, or why it failed."""
    try:
        session = session or client(host)
    except Exception as error:  # a host it cannot even parse
        return f"{type(error).__name__}: {error}"
    try:
        if release is not None:
            release.wait()
        with session.request("GET", PATH, params={"seconds": f"{seconds:g}"}, name=PATH,
                             catch_response=True) as response:
            # An answer that is not a 200 says its status (Locust would call it a bad status code); refused,
            # reset, timed out, no HTTP: whatever it was, no c comes of it.
            if response.status_code and response.status_code != 200:
                return f"{path_for(seconds)} answered HTTP {response.status_code}"
            error = response.request_meta["exception"]
            return f"{type(error).__name__}: {error}" if error else None
    except Exception as error:  # a URL it would not send
        return f"{type(error).__name__}: {error}"
    finally:
        session.client.close()  # before the burst it calibrates for: no connection of ours left open


# POSIX's, in the C library Python runs on (Linux's; None where there is none: psutil alone then).
_getcpuclockid = getattr(ctypes.CDLL(None, use_errno=True), "clock_getcpuclockid", None)


def cpu_seconds(processes):
    """The processes' CPU time (user + system, every thread), in seconds.

    Each process's CPU clock (clock_getcpuclockid) counts in nanoseconds; psutil's cpu_times
    counts in clock ticks (10 ms), as coarse as a whole calibration round, so it is the fallback."""
    total = 0.0
    for process in processes:
        clock = ctypes.c_int()
        if _getcpuclockid and _getcpuclockid(process.pid, ctypes.byref(clock)) == 0:
            try:
                total += time.clock_gettime(clock.value)
                continue
            except OSError:
                pass  # the process is gone, or its clock is not ours to read: psutil says why
        times = process.cpu_times()
        total += times.user + times.system
    return total


def worker_processes(host, facts):
    """The server's Gunicorn workers when it runs on this machine (else []): /pool's pid and its
    master's other children that run the same command."""
    if urlsplit(host).hostname not in LOOPBACK or not facts.get("pid"):
        return []
    try:
        worker = psutil.Process(facts["pid"])
        master = worker.parent()
        command = worker.cmdline()
    except psutil.Error:
        return []

    def same_command(child):
        try:
            return child.cmdline() == command
        except psutil.Error:  # gone, or a zombie (a reaper that gave up) the master has not waited for yet
            return False

    try:
        workers = [child for child in master.children() if same_command(child)] if master else []
    except psutil.Error:
        workers = []
    return workers if worker in workers else [worker]


def burst(host, requests, seconds=0, workers=()):
    """One round: `requests` concurrent python requests of `seconds`, each on a connection of its own.

    The requests wait for one release, as a burst's users wait at their gate, and go when it opens.
    Returns its wall time, the workers' and this process's CPU time over it, this process's CPU
    until every request had left the release (gevent runs each woken request up to its first wait,
    gevent's resolver thread before it connects, before the server can read any of them: lab.waves
    counts it before the rest; the resolver threads' CPU meanwhile is in it too), and both CPU times
    until the sleep of the first request sent could end, before any answer (None when it cannot tell
    the part before the sleep: no sleep, or the workers' CPU was still growing IDLE_BEFORE_FIRST of
    the sleep before then, some request not yet asleep)."""
    me = [psutil.Process()]
    release = Event()
    # Failures are returned, not raised: a greenlet that raises prints its traceback.
    greenlets = [gevent.spawn(one_request, host, seconds, client(host), release) for _ in range(requests)]
    gevent.sleep(0)  # every request waiting at the release
    started, server_before, own_before = time.perf_counter(), cpu_seconds(workers), cpu_seconds(me)
    no_answer_before = started + seconds
    samples = []

    def sample():
        # Both CPU times every SAMPLE_EVERY while no answer can have begun: where they stopped growing.
        while True:
            server, own = cpu_seconds(workers), cpu_seconds(me)
            if time.perf_counter() >= no_answer_before:
                return
            samples.append((time.perf_counter(), server, own))
            gevent.sleep(SAMPLE_EVERY)

    release.set()
    # Resumed after the release has woken every request (its one callback runs them all, in turn).
    gevent.sleep(0)
    released = cpu_seconds(me) - own_before
    sampler = gevent.spawn(sample) if seconds and workers else None
    gevent.joinall(greenlets)
    wall = time.perf_counter() - started
    server, own = cpu_seconds(workers) - server_before, cpu_seconds(me) - own_before
    if sampler is not None:
        sampler.kill()
    failed = [g.value for g in greenlets if g.value]
    if failed:
        raise CalibrationError(f"{len(failed)} of {requests} requests failed, the first with {failed[0]}")
    before = own_until_then = None
    if samples:
        last_at, last_server, last_own = samples[-1]
        before, own_until_then = last_server - server_before, last_own - own_before
        # Idle for a while by then: a sample that long before the last, with (almost) all of the CPU.
        idle_since = last_at - IDLE_BEFORE_FIRST * seconds
        if not any(at <= idle_since and last_server - cpu <= 0.05 * before for at, cpu, _ in samples):
            before = own_until_then = None
    return {"wall": wall, "server": server, "own": own, "before": before, "own_before": own_until_then,
            "own_release": released}


def measure(host, facts, requests=REQUESTS, rounds=ROUNDS, progress=None):
    """c, the CPU seconds one request costs the server's workers, with what it was measured on;
    `progress(done, rounds)` hears of each round (the web UI shows it)."""
    # One request first: a server that does not answer is told in one line, not in K.
    failed = one_request(host)
    if failed:
        raise CalibrationError(failed)
    workers = worker_processes(host, facts)
    # Only a worker that overlaps all K requests can sleep through them: serial ones answer at once.
    overlaps = facts.get("worker_concurrency", 1) * facts["workers"] >= requests
    seconds = SPLIT_SLEEP if workers and overlaps else 0
    measured = []
    for _ in range(rounds):
        if progress:
            progress(len(measured), rounds)
        measured.append(burst(host, requests, seconds, workers))

    def median(part):
        values = [m[part] for m in measured if m[part] is not None]
        return statistics.median(values) / requests if values else None

    walls = [m["wall"] for m in measured]
    calibration = {"kind": KIND, "requests": requests, "rounds": rounds, "sleep_s": seconds,
                   "wall_per_request": [round(wall / requests, 7) for wall in walls],
                   "workers": facts["workers"], "cpus": facts.get("cpus"),
                   "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    if workers:
        calibration.update(measured_as="cpu", cpu_per_request=median("server"), cpu_before_sleep=median("before"),
                           load_cpu_per_request=median("own"), load_cpu_before_sleep=median("own_before"),
                           load_cpu_release=median("own_release"),
                           server_cpu_per_request=[round(m["server"] / requests, 7) for m in measured])
    else:
        # Per worker: the K requests ran spread over the workers that run at once, as the model spreads a burst.
        calibration.update(measured_as="wall", cpu_per_request=statistics.median(walls) / requests
                           * parallel_workers(facts), cpu_before_sleep=None, load_cpu_per_request=None)
    return calibration


def cache_key(host, facts):
    # With the workers: on 2 cores two workers share them with the load generator, so one
    # worker's c (its wall time per request) does not hold for two.
    workers = "" if facts["workers"] == 1 else f" x {facts['workers']} workers"
    return f"{platform.node()} -> {urlsplit(host).hostname} {facts['mode']}{workers}"


def with_cpu_cost(facts, host, directory, again=False, progress=None, path=None):
    """The server's facts with "calibration": its mode's c, from the cache in `directory` (or the file
    `path`, --calibration-file) or measured now (`again`: measured now whatever the cache holds). A
    failure is a warning and {"error": why}: the burst still runs, with the plain ideal and no model."""
    if not facts:
        return facts  # no /pool: no prediction to add a model to
    path = Path(path) if path else Path(directory) / FILE_NAME
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
    if key in cache and cache[key].get("kind") == KIND and not again:
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
    log.info("%s: %.3f ms of CPU per request (%s), written to %s", key, 1000 * calibration["cpu_per_request"],
             calibration["measured_as"], path)
    return {**facts, "calibration": calibration}
