"""The lab's claim, measured on real Gunicorn workers and a real PostgreSQL.

A wave is a run of responses that finished together (lab.waves). Serial means five
waves of one; overlapped means one wave of five. Bounds on total time are loose
ratios of the ideal, since the machine is shared.
"""

import pytest

from conftest import SLEEP, WORKER_FACTS
from lab.waves import group_waves

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
])
def test_what_each_mode_overlaps(lab, fire, mode, python_shape, postgres_shape):
    server = lab(mode)
    python_shape(*measure(fire, server, PYTHON))
    postgres_shape(*measure(fire, server, POSTGRES))


def test_green_past_the_pool_limit_answers_in_waves_of_the_pool(lab, fire):
    server = lab("green", POOL_SIZE=2, MAX_OVERFLOW=3)
    limit = 2 + 3
    waves, total = measure(fire, server, POSTGRES, count=3 * limit)
    # No request can finish before its own sleep, and only `limit` can sleep at once.
    assert waves[0].first >= SLEEP
    assert waves[0].size == limit
    assert sum(w.size for w in waves) == 3 * limit
    assert total >= 3 * SLEEP


@pytest.mark.parametrize("mode, worker_class, psycogreen", [
    ("sync", "gunicorn.workers.sync.SyncWorker", False),
    ("gevent", "gunicorn.workers.ggevent.GeventWorker", False),
    ("green", "gunicorn.workers.ggevent.GeventWorker", True),
])
def test_pool_reports_the_real_pool_and_worker(lab, mode, worker_class, psycogreen):
    status, pool = lab(mode).get_json("/pool")
    assert status == 200
    assert pool["pool_class"] == "sqlalchemy.pool.impl.QueuePool"
    assert (pool["pool_size"], pool["max_overflow"], pool["timeout"]) == (5, 10, 30)
    assert (pool["sleep_seconds"], pool["max_sleep_seconds"]) == (5, 60)
    assert pool["worker_class"] == worker_class
    assert pool["psycogreen"] is psycogreen
    assert pool["mode"] == mode and pool["concurrency"] == mode
    assert pool["checked_out"] == 0
    assert isinstance(pool["pid"], int) and isinstance(pool["overflow"], int)
    # The facts the tests of the prediction take for this mode are the real server's.
    assert {key: pool[key] for key in (*WORKER_FACTS[mode], "workers", "pool_limit")} == {
        **WORKER_FACTS[mode], "workers": 1, "pool_limit": 15}


def test_sleep_answers_say_what_ran(lab):
    server = lab("green")
    status, body = server.get_json("/sleep/postgres/?seconds=0.2")
    assert status == 200
    assert body["endpoint"] == "postgres" and body["mode"] == "green"
    assert body["seconds"] == 0.2 and body["elapsed"] >= 0.2
    assert body["todo_count"] == 50
    status, body = server.get_json("/sleep/python/?seconds=0.2")
    assert (status, body["endpoint"], body["seconds"]) == (200, "python", 0.2)
