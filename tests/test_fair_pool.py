"""FairQueuePool against stock QueuePool, on real green workers and a real PostgreSQL."""

import threading
import time

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from support import SLEEP
from lab.waves import group_waves

# Real Gunicorn modes, Locust runs or PostgreSQL servers: seconds each.
pytestmark = pytest.mark.slow

POOL = {"POOL_SIZE": 2, "MAX_OVERFLOW": 3}
LIMIT = 2 + 3
REQUESTS = 4 * LIMIT
POSTGRES = f"/sleep/postgres/?seconds={SLEEP}"


def tagged(database_url, name):
    """The URL with an application_name, so pg_stat_activity tells this server's connections apart."""
    url = make_url(database_url)
    return url.update_query_dict({"application_name": name}).render_as_string(hide_password=False)


def connection_count(database_url, name):
    url = make_url(database_url)
    query = dict(url.query)
    with psycopg2.connect(host=query.get("host", url.host), port=url.port, user=url.username,
                          password=url.password, dbname=url.database) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))
            count = cursor.fetchone()[0]
    connection.close()
    return count


def burst_waves(fire, server):
    results = fire(server, POSTGRES, REQUESTS)
    assert [status for _, status, _ in results] == [200] * REQUESTS
    return [w.size for w in group_waves([c for c, _, _ in results], SLEEP)]


def test_fair_pool_keeps_every_wave_full(running_mode, fire, database_url):
    # Whether stock QueuePool's later waves shrink depends on how closely a wave's queries end together,
    # which the machine's load decides (docs/uneven-waves.md measures both); tests/test_pool_handover.py
    # shows the mechanism for certain. The fair pool's waves are full however they end.
    fair = running_mode("green", POOL_CLASS="fair", DATABASE_URL=tagged(database_url, "fair-waves"), **POOL)
    assert fair.get_json("/pool")[1]["pool_class"] == "server.pool.FairQueuePool"

    peak = 0
    sampling = threading.Event()

    def sample():
        nonlocal peak
        while not sampling.is_set():
            peak = max(peak, connection_count(database_url, "fair-waves"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fair_waves = burst_waves(fire, fair)
    finally:
        sampling.set()
        sampler.join()
    assert fair_waves == [LIMIT] * 4
    # The pool filled up, and never beyond its limit.
    assert peak == LIMIT


def test_fair_pool_shrinks_back_to_pool_size_after_a_burst(running_mode, fire, database_url):
    server = running_mode("green", POOL_CLASS="fair", DATABASE_URL=tagged(database_url, "fair-shrink"), **POOL)
    burst_waves(fire, server)
    status, pool = server.get_json("/pool")
    assert (pool["checked_out"], pool["checked_in"], pool["overflow"]) == (0, 2, 0)
    assert connection_count(database_url, "fair-shrink") == 2


def test_fair_pool_still_times_out(running_mode, fire):
    server = running_mode("green", POOL_CLASS="fair", POOL_SIZE=1, MAX_OVERFLOW=0, POOL_TIMEOUT=1)
    results = fire(server, f"/sleep/postgres/?seconds={3 * SLEEP}", 2)
    assert sorted(status for _, status, _ in results) == [200, 503]
    refused = next(body for _, status, body in results if status == 503)
    assert b'"error":"pool_timeout"' in refused
    assert server.get_json(f"/sleep/postgres/?seconds={SLEEP}")[0] == 200


@pytest.mark.parametrize("mode", ["sync", "gevent"])
def test_fair_pool_changes_nothing_where_queries_do_not_overlap(running_mode, fire, mode):
    server = running_mode(mode, POOL_CLASS="fair", **POOL)
    results = fire(server, POSTGRES, LIMIT)
    assert [status for _, status, _ in results] == [200] * LIMIT
    assert [w.size for w in group_waves([c for c, _, _ in results], SLEEP)] == [1] * LIMIT
