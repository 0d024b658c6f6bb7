"""Past the pool: NullPool, PostgreSQL's max_connections, and what a connection costs.

A server of the suite's own with max_connections 20, so the wall is reached by a burst of 30.
"""

import json
import shutil
from collections import Counter

import psycopg2
import pytest

from support import SLEEP, private_directory
from lab.servers import start_mode
from lab.waves import group_waves, predict
import embedded_pg

# Real Gunicorn modes, Locust runs or PostgreSQL servers: seconds each.
pytestmark = pytest.mark.slow

MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def walled_database():
    root = private_directory("pool-lab-walled-")
    database = embedded_pg.start(root / "pgdata", MAX_CONNECTIONS)
    yield database
    database.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def nullpool(walled_database, tmp_path_factory):
    server = start_mode("nullpool", {"DATABASE_URL": walled_database.get_uri()},
                        tmp_path_factory.mktemp("nullpool") / "nullpool.log")
    yield server
    server.stop()


def show(database, setting):
    with psycopg2.connect(database.get_uri()) as connection, connection.cursor() as cursor:
        cursor.execute(f"SHOW {setting}")
        value = cursor.fetchone()[0]
    connection.close()
    return value


def test_pool_and_db_report_nullpool_and_the_ceiling_truthfully(nullpool, walled_database):
    status, pool = nullpool.get_json("/pool")
    assert status == 200 and pool["pool_class"] == "sqlalchemy.pool.impl.NullPool"
    # Settings that do not apply to NullPool are null, never invented numbers.
    assert [pool[key] for key in ("pool_size", "max_overflow", "pool_limit", "timeout", "checked_out")] == [None] * 5
    status, db = nullpool.get_json("/db")
    assert status == 200
    assert db["max_connections"] == int(show(walled_database, "max_connections")) == MAX_CONNECTIONS
    assert db["superuser_reserved_connections"] == int(show(walled_database, "superuser_reserved_connections"))
    assert db["superuser"] is True and db["server_version"] == show(walled_database, "server_version")
    assert db["open_connections"] >= 1 and db["accepts"] == MAX_CONNECTIONS - db["open_connections"]
    assert db["postmaster_pid"] == walled_database.get_pid()


def burst_counts(fire, server, count):
    results = fire(server, f"/sleep/postgres/?seconds={2 * SLEEP}", count)
    causes = Counter(json.loads(body)["error"] if status != 200 else "ok" for _, status, body in results)
    return results, causes


def test_nullpool_below_the_ceiling_answers_in_one_wave(nullpool, fire):
    results, causes = burst_counts(fire, nullpool, 10)
    assert causes == {"ok": 10}
    assert [w.size for w in group_waves([c for c, _, _ in results], 2 * SLEEP)] == [10]
    connects = [json.loads(body)["connect_seconds"] for _, _, body in results]
    assert all(seconds > 0 for seconds in connects)  # every request opened a connection of its own


def test_nullpool_past_the_ceiling_fails_exactly_as_predicted_and_keeps_serving(nullpool, fire):
    _, facts = nullpool.get_json("/pool")
    facts["db"] = nullpool.get_json("/db")[1]
    accepts = facts["db"]["accepts"]
    requests = accepts + 10
    prediction = predict("postgres", requests, 2 * SLEEP, facts)
    assert (prediction.wave_sizes, prediction.refused) == ((10, accepts), 10)
    results, causes = burst_counts(fire, nullpool, requests)
    assert causes == {"ok": accepts, "too_many_connections": 10}
    refused = [json.loads(body) for _, status, body in results if status == 503]
    assert "max_connections" in refused[0]["message"] and "too many clients" in refused[0]["message"]
    assert "503 too_many_connections" in nullpool.log()
    # The wall leaves the server serving.
    assert nullpool.get_json(f"/sleep/postgres/?seconds={SLEEP}")[0] == 200


def test_a_new_connection_costs_more_than_a_warm_pooled_one(nullpool, running_mode, fire):
    pooled = running_mode("green")
    fire(pooled, "/sleep/postgres/?seconds=0", 5)  # warms the pool
    warm = [json.loads(body)["connect_seconds"] for _, _, body in fire(pooled, "/sleep/postgres/?seconds=0", 5)]
    fresh = [json.loads(body)["connect_seconds"] for _, _, body in fire(nullpool, "/sleep/postgres/?seconds=0", 5)]
    assert warm == [0.0] * 5 and min(fresh) > 0


def test_backend_memory_can_be_sampled(nullpool, walled_database):
    from lab.memory import sample_backends

    sample = sample_backends(nullpool.get_json("/db")[1]["postmaster_pid"])
    assert sample.backends >= 1
    assert 0.1 < sample.uss_mib / sample.backends < 50


def test_nullpool_over_loopback_tcp_opens_a_connection_per_request(pgdata, tmp_path, fire):
    from lab.servers import free_port

    database, tcp_url, socket_url = embedded_pg.start_on_tcp(pgdata, free_port())
    server = start_mode("nullpool", {"DATABASE_URL": tcp_url}, tmp_path / "nullpool-tcp.log")
    try:
        assert "@127.0.0.1:" in server.get_json("/pool")[1]["database"]
        answers = [json.loads(body) for _, status, body in fire(server, "/sleep/postgres/?seconds=0", 5)]
        assert all(answer["connect_seconds"] > 0 and answer["todo_count"] == 50 for answer in answers)
        # The same server through its Unix socket: both ways in work.
        with psycopg2.connect(socket_url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM todo")
            assert cursor.fetchone() == (50,)
        connection.close()
    finally:
        server.stop()
        database.cleanup()
