"""Failures that name their cause, on real servers and a real PostgreSQL; the worker keeps serving.

Each test counts what it sent, what was answered, what failed and why, and what was
lost (sent but never answered): lost must be 0.
"""

import json
import socket
import signal
import threading
import time
from collections import Counter

import psutil
import pytest

from support import SLEEP
from lab.servers import start_mode
import embedded_pg

BAD_QUERIES = ["seconds=", "seconds=abc", "seconds=-1", "seconds=nan", "seconds=inf", "seconds=1e309",
               "seconds=61", "seconds=1&seconds=2", "seconds=" + "9" * 200]


def tally(answers):
    """{'sent', 'answered', 'lost', and a count per error code} for a list of (status, body) or None."""
    counts = Counter(sent=len(answers), answered=sum(a is not None for a in answers))
    counts["lost"] = counts["sent"] - counts["answered"]
    for answer in filter(None, answers):
        status, body = answer
        counts["ok" if status == 200 else json.loads(body)["error"]] += 1
    return counts


def get_in_thread(server, path, answers):
    def one():
        try:
            status, _, body = server.get(path)
        except OSError:
            answers.append(None)  # never answered: lost
        else:
            answers.append((status, body))
    thread = threading.Thread(target=one)
    thread.start()
    return thread


@pytest.mark.slow
def test_bad_input_is_refused_at_once_without_touching_the_database(running_mode):
    # A default sleep of 30 s: a bad request that slept would be obvious.
    server = running_mode("sync", SLEEP_SECONDS=30)
    for endpoint in ("python", "postgres"):
        for query in BAD_QUERIES:
            started = time.monotonic()
            status, headers, body = server.get(f"/sleep/{endpoint}/?{query}")
            assert (status, headers["Content-Type"]) == (400, "application/json"), query
            assert json.loads(body)["error"] == "bad_parameter"
            assert time.monotonic() - started < 5
    status, pool = server.get_json("/pool")
    # No connection was ever opened: nothing reached the database.
    assert (pool["checked_in"], pool["checked_out"]) == (0, 0)
    assert server.get_json("/sleep/python/?seconds=0")[0] == 200


@pytest.mark.parametrize("method, path, status, error", [
    ("GET", "/nowhere", 404, "not_found"),
    ("GET", "/sleep/", 404, "not_found"),
    ("POST", "/sleep/python/", 405, "method_not_allowed"),
    ("DELETE", "/pool", 405, "method_not_allowed"),
    ("OPTIONS", "/pool", 405, "method_not_allowed"),
])
def test_unknown_paths_and_wrong_methods_get_json_errors(client, method, path, status, error):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.json["error"] == error and response.json["message"]
    if status == 405:
        assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD"}


def test_the_root_lists_what_the_lab_serves(client):
    response = client.get("/")
    assert response.status_code == 200
    assert set(response.json["endpoints"]) == {"/sleep/python/?seconds=S", "/sleep/postgres/?seconds=S", "/pool", "/db"}


@pytest.mark.slow
def test_pool_timeout_is_a_503_that_names_the_limit_with_retry_after(running_mode):
    server = running_mode("green", POOL_SIZE=1, MAX_OVERFLOW=0, POOL_TIMEOUT=1)
    answers = []
    # One request holds the only connection for 3 sleeps; the next waits 1 s and gives up.
    holder = get_in_thread(server, f"/sleep/postgres/?seconds={3 * SLEEP}", answers)
    time.sleep(SLEEP / 2)
    status, headers, body = server.get(f"/sleep/postgres/?seconds={SLEEP}")
    holder.join()
    assert status == 503 and headers["Retry-After"] == "1"
    error = json.loads(body)
    assert error["error"] == "pool_timeout"
    assert "POOL_TIMEOUT=1s" in error["message"] and "pool_size 1 + max_overflow 0" in error["message"]
    assert tally(answers + [(status, body)]) == Counter(sent=2, answered=2, lost=0, ok=1, pool_timeout=1)
    assert "503 pool_timeout: no database connection free within POOL_TIMEOUT=1s" in server.log()
    assert server.get_json(f"/sleep/postgres/?seconds={SLEEP}")[0] == 200


@pytest.fixture
def own_database(pgdata):
    """An embedded PostgreSQL of this test's own, which it may stop and start."""
    database = embedded_pg.start(pgdata)
    yield database
    database.cleanup()


def stop_postgres(database):
    postmaster = psutil.Process(database.get_pid())
    postmaster.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown: ends running queries
    postmaster.wait(timeout=30)


@pytest.mark.slow
def test_database_outage_gives_503s_python_keeps_answering_and_recovery_needs_no_restart(own_database, tmp_path):
    server = start_mode("green", {"DATABASE_URL": own_database.get_uri()}, tmp_path / "green.log")
    try:
        in_flight = []
        threads = [get_in_thread(server, f"/sleep/postgres/?seconds={4 * SLEEP}", in_flight) for _ in range(3)]
        time.sleep(SLEEP)
        stop_postgres(own_database)
        for thread in threads:
            thread.join()
        # Queries cut off by the shutdown: 503s naming the database, nothing lost.
        assert tally(in_flight) == Counter(sent=3, answered=3, lost=0, database_unavailable=3)
        assert "database" in json.loads(in_flight[0][1])["message"]

        status, headers, body = server.get(f"/sleep/postgres/?seconds={SLEEP}")
        assert status == 503 and json.loads(body)["error"] == "database_unavailable"
        assert "Retry-After" in headers
        assert server.get_json(f"/sleep/python/?seconds={SLEEP}")[0] == 200

        own_database.ensure_postgres_running()
        # The very next request succeeds: the pool pings and replaces dead connections.
        status, body = server.get_json(f"/sleep/postgres/?seconds={SLEEP}")
        assert status == 200 and body["todo_count"] == 50
        assert server.process.poll() is None
        assert "503 database_unavailable: FATAL:  terminating connection due to administrator command" in server.log()
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode, in_flight_paths, refuses_late", [
    ("sync", ["/sleep/python/"], True),
    # A gevent worker blocked in an unpatched query sees SIGTERM only when the query returns;
    # a connection that arrived meanwhile may be accepted before it closes its listener.
    # It also accepts nothing while blocked: only one query can be in flight, the rest would wait unaccepted.
    ("gevent", ["/sleep/python/"] * 3 + ["/sleep/postgres/"], False),
    ("green", ["/sleep/python/"] * 3 + ["/sleep/postgres/"] * 3, True),
])
def test_sigterm_lets_in_flight_requests_finish_and_then_refuses(database_url, tmp_path, mode, in_flight_paths,
                                                                  refuses_late):
    server = start_mode(mode, {"DATABASE_URL": database_url}, tmp_path / f"{mode}.log")
    try:
        answers = []
        threads = []
        for path in in_flight_paths:
            threads.append(get_in_thread(server, f"{path}?seconds={6 * SLEEP}", answers))
            time.sleep(0.1)  # in order: each accepted before the next, python before postgres
        time.sleep(SLEEP / 2)
        server.process.send_signal(signal.SIGTERM)
        # Gunicorn's gevent worker checks for shutdown once a second, then stops accepting.
        time.sleep(1.5)
        try:
            late = server.get("/sleep/python/?seconds=0", timeout=30)[0]
        except OSError:
            late = None  # refused or reset: not served
        for thread in threads:
            thread.join()
        assert tally(answers) == Counter(sent=len(in_flight_paths), answered=len(in_flight_paths), lost=0,
                                         ok=len(in_flight_paths))
        if refuses_late:
            assert late is None
        assert server.process.wait(timeout=30) == 0
        assert "Handling signal: term" in server.log()
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["green", "fair", "psycopg3"])
def test_a_client_that_leaves_gets_its_query_cancelled_and_its_connection_back(running_mode, mode):
    server = running_mode(mode)
    host, port = server.url.removeprefix("http://").split(":")
    sleep = 10 * SLEEP
    client = socket.create_connection((host, int(port)))
    client.sendall(f"GET /sleep/postgres/?seconds={sleep} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
    time.sleep(SLEEP)
    assert server.get_json("/pool")[1]["checked_out"] == 1
    left = time.monotonic()
    client.close()  # as curl --max-time does
    while server.get_json("/pool")[1]["checked_out"]:
        # Without the cancel the connection stays out for the rest of the sleep.
        assert time.monotonic() - left < sleep / 4, "the connection was not returned"
        time.sleep(0.02)
    print(f"{mode}: connection back {time.monotonic() - left:.3f} s after the client left")
    assert "499 client_closed_request" in server.log()
    assert server.get_json(f"/sleep/postgres/?seconds={SLEEP}")[0] == 200
