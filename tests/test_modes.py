"""The lab's claim, measured on real Gunicorn workers and a real PostgreSQL.

A wave is a run of responses that finished together (lab.waves). Serial means five
waves of one; overlapped means one wave of five. Bounds on total time are loose
ratios of the ideal, since the machine is shared.
"""

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from lab.servers import ROOT
from lab.waves import group_waves
from support import SLEEP, WORKER_FACTS

# Real Gunicorn modes, Locust runs or PostgreSQL servers: seconds each.
pytestmark = pytest.mark.slow

N = 5
PYTHON = f"/sleep/python/?seconds={SLEEP}"
POSTGRES = f"/sleep/postgres/?seconds={SLEEP}"


def measure(fire, server, path, count=N):
    results = fire(server, path, count)
    assert [status for _, status, _ in results] == [200] * count
    completions = [completion for completion, _, _ in results]
    return group_waves(completions, SLEEP), max(c.at for c in completions)


def assert_serial(waves, total):
    assert [w.size for w in waves] == [1] * N
    # One by one: each answer about a sleep after the one before.
    assert 0.9 * N * SLEEP <= total <= 1.6 * N * SLEEP


def assert_overlapped(waves, total):
    assert [w.size for w in waves] == [N]
    assert SLEEP <= total <= 2 * SLEEP


@pytest.mark.parametrize("mode, python_shape, postgres_shape", [
    ("sync", assert_serial, assert_serial),
    ("gevent", assert_overlapped, assert_serial),
    ("green", assert_overlapped, assert_overlapped),
    ("threads", assert_overlapped, assert_overlapped),
    ("psycopg3", assert_overlapped, assert_overlapped),
])
def test_what_each_mode_overlaps(running_mode, fire, mode, python_shape, postgres_shape):
    server = running_mode(mode)
    python_shape(*measure(fire, server, PYTHON))
    postgres_shape(*measure(fire, server, POSTGRES))


@pytest.mark.parametrize("mode, settings, requests", [
    ("green", {"POOL_SIZE": 2, "MAX_OVERFLOW": 3}, 15),
    ("psycopg3", {"POOL_SIZE": 2, "MAX_OVERFLOW": 3}, 15),
    # All six run at once, one per thread, but only the pool's 3 get a connection.
    ("threads", {"THREADS": 6, "POOL_SIZE": 1, "MAX_OVERFLOW": 2}, 6),
])
def test_past_the_pool_limit_queries_answer_in_waves_of_the_pool(running_mode, fire, mode, settings, requests):
    server = running_mode(mode, **settings)
    limit = settings["POOL_SIZE"] + settings["MAX_OVERFLOW"]
    waves, total = measure(fire, server, POSTGRES, count=requests)
    # No request can finish before its own sleep, and only `limit` can sleep at once.
    assert waves[0].first >= SLEEP
    assert waves[0].size == limit
    assert sum(w.size for w in waves) == requests
    assert total >= requests // limit * SLEEP


def test_threads_past_their_count_answer_in_waves_of_threads(running_mode, fire):
    threads = 3
    server = running_mode("threads", THREADS=threads)
    assert server.get_json("/pool")[1]["worker_concurrency"] == threads
    # Both endpoints: 3 threads are fewer than the pool's 15 connections, so the threads are the limit.
    for path in (PYTHON, POSTGRES):
        waves, total = measure(fire, server, path, count=2 * threads)
        # The worker accepts all six and queues them for its threads: one wave per sleep.
        assert [w.size for w in waves] == [threads, threads]
        assert 2 * SLEEP <= total <= 3 * SLEEP


@pytest.mark.parametrize("mode, worker_class, psycogreen, concurrency", [
    ("sync", "gunicorn.workers.sync.SyncWorker", False, "sync"),
    ("gevent", "gunicorn.workers.ggevent.GeventWorker", False, "gevent"),
    ("green", "gunicorn.workers.ggevent.GeventWorker", True, "green"),
    ("threads", "gunicorn.workers.gthread.ThreadWorker", False, "threads"),
    # psycopg 3 overlaps its queries as green does, without psycogreen.
    ("psycopg3", "gunicorn.workers.ggevent.GeventWorker", False, "green"),
])
def test_pool_reports_the_real_pool_and_worker(running_mode, mode, worker_class, psycogreen, concurrency):
    status, pool = running_mode(mode).get_json("/pool")
    assert status == 200
    assert pool["pool_class"] == "sqlalchemy.pool.impl.QueuePool"
    assert (pool["pool_size"], pool["max_overflow"], pool["timeout"]) == (5, 10, 30)
    assert (pool["sleep_seconds"], pool["max_sleep_seconds"]) == (5, 60)
    assert pool["worker_class"] == worker_class
    assert pool["psycogreen"] is psycogreen
    assert pool["mode"] == mode and pool["concurrency"] == concurrency
    distribution = {"psycopg2": "psycopg2-binary", "psycopg": "psycopg"}[pool["driver"]]
    assert pool["driver_version"] == version(distribution)
    assert pool["checked_out"] == 0
    assert isinstance(pool["pid"], int) and isinstance(pool["overflow"], int)
    # The cores the worker may run on (the same machine as this test): what the CPU model spreads over.
    assert pool["cpus"] == len(os.sched_getaffinity(0))
    # The facts the tests of the prediction take for this mode are the real server's.
    assert {key: pool[key] for key in (*WORKER_FACTS[mode], "workers", "pool_limit")} == {
        **WORKER_FACTS[mode], "workers": 1, "pool_limit": 15}


# A gevent process querying through psycopg 3: what the lab detects (query_yields) and what happens.
PSYCOPG_UNDER_GEVENT = f"""
import sys, time
if sys.argv[2] == "before":
    import psycopg  # as a master that loaded the app before forking would
from gevent import monkey
monkey.patch_all()
import gevent, psycopg
from server.worker import psycopg_waits_through_gevent

def query():
    with psycopg.connect(sys.argv[1]) as connection:
        connection.execute("SELECT pg_sleep(%s)", [{SLEEP}])

started = time.monotonic()
gevent.joinall([gevent.spawn(query) for _ in range({N})], raise_error=True)
print(psycopg_waits_through_gevent(), time.monotonic() - started)
"""


@pytest.mark.parametrize("imported, yields", [("after", True), ("before", False)])
def test_psycopg3_yields_to_gevent_only_if_imported_after_the_patching(database_url, imported, yields):
    probe = subprocess.run([sys.executable, "-c", PSYCOPG_UNDER_GEVENT, database_url, imported],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    detected, total = probe.stdout.split()
    assert detected == str(yields)
    if yields:
        assert SLEEP <= float(total) <= 2 * SLEEP
    else:
        assert 0.9 * N * SLEEP <= float(total) <= 1.6 * N * SLEEP


def test_sleep_answers_say_what_ran(running_mode):
    server = running_mode("green")
    status, body = server.get_json("/sleep/postgres/?seconds=0.2")
    assert status == 200
    assert body["endpoint"] == "postgres" and body["mode"] == "green"
    assert body["seconds"] == 0.2 and body["elapsed"] >= 0.2
    assert body["todo_count"] == 50
    status, body = server.get_json("/sleep/python/?seconds=0.2")
    assert (status, body["endpoint"], body["seconds"]) == (200, "python", 0.2)
