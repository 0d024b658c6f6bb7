"""Several Gunicorn workers (WEB_CONCURRENCY): a pool each, the sizing check, and bad values, on real processes.

Which worker serves a request is decided when a connection is accepted, not when its request
arrives: every worker waits in accept on the same listening socket, the kernel wakes them, and
the first to run accepts (Gunicorn's gevent worker takes one connection per wake-up when there are several).
Measured with the suite's burst helper (connections opened one after another, then the requests
at once) on two green workers: one worker took a whole burst of 6 in 2 of 60, of 10 in 3 of 90,
of 40 in none of 75 (the busiest one's share: median 0.67, 0.60, 0.57); with Locust, 150 postgres
users went 134 to one worker of 8 in one run of 3. So a burst alone does not make both workers
take part every time; a burst sent on connections each worker is known to have accepted does.
"""

import http.client
import json
import re
import threading
import time

import psycopg2
import pytest

from lab.servers import start_mode
from support import SLEEP

# Real Gunicorn modes, Locust runs or PostgreSQL servers: seconds each.
pytestmark = pytest.mark.slow

# Two of the suite's sleeps: each worker's waves stand a second apart, far above the accept spread's noise.
WAVE = 2 * SLEEP
SMALL_POOL = {"WEB_CONCURRENCY": 2, "POOL_SIZE": 2, "MAX_OVERFLOW": 0}


def connections_by_worker(server, per_worker, workers=2, attempts=200):
    """{pid: [open keep-alive connections that worker accepted]}, `per_worker` for each of `workers`.

    Each connection asks /pool, whose answer names the worker; Gunicorn keeps the connection
    (keepalive, 2 s), so the next request on it goes to the same worker.
    """
    held = {}
    for _ in range(attempts):
        connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
        connection.request("GET", "/pool")
        pool = json.loads(connection.getresponse().read())
        mine = held.setdefault(pool["pid"], [])
        if len(mine) < per_worker:
            mine.append((connection, pool))
        else:
            connection.close()
        if len(held) == workers and all(len(mine) == per_worker for mine in held.values()):
            return held
    raise AssertionError(f"{attempts} connections reached only {len(held)} worker(s): {sorted(held)}")


def sleeping_queries(database_url):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                       "AND query LIKE 'SELECT pg_sleep%'")
        count = cursor.fetchone()[0]
    connection.close()
    return count


def test_two_workers_run_two_pools_worth_of_queries_at_once(running_mode, database_url):
    server = running_mode("green", **SMALL_POOL)
    # Three requests per worker, one more than its pool of 2: each worker runs 2 at once.
    held = connections_by_worker(server, per_worker=3)
    assert all(pool["workers"] == 2 and pool["pool_limit"] == 2 for mine in held.values() for _, pool in mine)
    connections = [connection for mine in held.values() for connection, _ in mine]
    barrier = threading.Barrier(len(connections) + 1)
    answers = []

    def one(connection):
        barrier.wait()
        connection.request("GET", f"/sleep/postgres/?seconds={WAVE}")
        answer = json.loads(connection.getresponse().read())
        answers.append((time.monotonic(), answer))
        connection.close()

    threads = [threading.Thread(target=one, args=(connection,)) for connection in connections]
    for thread in threads:
        thread.start()
    barrier.wait()
    started, peak = time.monotonic(), 0
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, sleeping_queries(database_url))
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    # Two pools of 2 at once: more than one pool's worth, never more than both.
    assert peak == 4
    assert sorted(answer["pid"] for _, answer in answers) == sorted(pid for pid in held for _ in range(3))
    # Per worker: 2 in the first wave, its third in a second; 2 waves in all, not 3 (one pool) nor 1.
    finished = sorted(at - started for at, _ in answers)
    assert finished[3] < 1.5 * WAVE < finished[4] and finished[-1] < 2.5 * WAVE


def warnings_of(server):
    master = server.process.pid  # the Procfile's exec: the shell became Gunicorn's master
    return re.findall(rf"\[{master}\] \[WARNING\] (pool-lab: .*)", server.log())


def test_the_master_warns_once_when_the_pools_exceed_what_postgresql_accepts(running_mode, database_url):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = int(cursor.fetchone()[0])
    connection.close()
    pool_size = max_connections // 2 + 1  # two of them are more than the database has at all
    server = running_mode("green", WEB_CONCURRENCY=2, POOL_SIZE=pool_size, MAX_OVERFLOW=0)
    [warning] = warnings_of(server)
    numbers = re.fullmatch(
        r"pool-lab: 2 workers x \(pool_size (\d+) \+ max_overflow 0\) = (\d+) connections at most, more than "
        r"PostgreSQL accepts: max_connections (\d+) - reserved (\d+) - open (\d+) = (\d+); a burst past \6 "
        r"postgres requests gets 503 too_many_connections", warning)
    assert numbers, warning
    size, most, ceiling, reserved, open_, accepts = map(int, numbers.groups())
    assert (size, most, ceiling) == (pool_size, 2 * pool_size, max_connections)
    _, db = server.get_json("/db")
    assert reserved == (0 if db["superuser"] else db["superuser_reserved_connections"])
    assert open_ >= 1 and accepts == ceiling - reserved - open_


@pytest.mark.parametrize("mode, settings", [("green", {"WEB_CONCURRENCY": 2}),  # 2 x 15, the default pool
                                            ("nullpool", {"WEB_CONCURRENCY": 2})])  # no pool limit to check
def test_no_sizing_warning_when_the_pools_fit_or_there_is_no_pool(running_mode, mode, settings):
    server = running_mode(mode, **settings)
    assert server.get_json("/pool")[1]["workers"] == 2
    assert "todo table ready" in server.log() and warnings_of(server) == []


@pytest.mark.parametrize("value, line", [
    ("0", "pool-lab: WEB_CONCURRENCY must be at least 1, got 0"),
    ("abc", "pool-lab: WEB_CONCURRENCY must be a whole number, got 'abc'"),
])
def test_a_bad_worker_count_is_refused_with_one_line(database_url, tmp_path, value, line):
    with pytest.raises(RuntimeError) as failed:
        start_mode("green", {"DATABASE_URL": database_url, "WEB_CONCURRENCY": value}, tmp_path / "green.log")
    assert "exited with 1" in str(failed.value)
    assert (tmp_path / "green.log").read_text().strip() == line
