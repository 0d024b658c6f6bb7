"""PgBouncer in front of PostgreSQL: the bouncer mode on a real pooler and a real database.

A database of the module's own with max_connections 20, so NullPool alone hits its wall with a
burst of 30, and a pooler in front of it (embedded_pg.pgbouncer) with a pool of 10; the modes
reach it through POOLER_URL, as a PgBouncer you run yourself.
"""

import json
import os
import shutil
import subprocess
import time
from collections import Counter

import psutil
import pytest

from support import SLEEP, private_directory
from embedded_pg import pgbouncer
from lab.servers import BIN_PATH, PROCFILE, ROOT, RunningMode, free_port, start_mode
from lab.waves import group_waves, predict
from server.pooler import admin_facts
import embedded_pg

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(pgbouncer.program() is None, reason=f"no pgbouncer program: {pgbouncer.INSTALL}")]

MAX_CONNECTIONS = 20
POOL = 10
SETTINGS = pgbouncer.Settings(default_pool_size=POOL, max_client_conn=1000, reserve_pool_size=0,
                              query_wait_timeout=120)


@pytest.fixture(scope="module")
def walled():
    root = private_directory("pool-lab-bouncer-")
    database = embedded_pg.start(root / "pgdata", MAX_CONNECTIONS)
    pooler = pgbouncer.start(root / "pgdata", SETTINGS)
    yield database, pooler
    pooler.cleanup()
    database.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def configure(pooler, root_pgdata, settings):
    """Restart the pooler with `settings` (this process alone holds it)."""
    pgbouncer.start(root_pgdata, settings)
    assert admin_facts(pooler.url)["default_pool_size"] == settings.default_pool_size


@pytest.fixture(scope="module")
def bouncer(walled, tmp_path_factory):
    database, pooler = walled
    server = start_mode("bouncer", {"DATABASE_URL": database.get_uri(), "POOLER_URL": pooler.url},
                        tmp_path_factory.mktemp("bouncer") / "bouncer.log")
    yield server
    server.stop()


def causes(results):
    return Counter(json.loads(body)["error"] if status != 200 else "ok" for _, status, body in results)


def facts_of(server):
    _, facts = server.get_json("/pool")
    facts["db"] = server.get_json("/db")[1]
    return facts


def test_only_the_poolers_own_user_can_reach_its_socket(walled):
    """auth_type trust and admin_users postgres: whoever reaches the socket is the superuser and may
    SHUTDOWN the pooler, so its directory and socket are its own user's alone."""
    import stat

    _, pooler = walled
    directory = pooler.directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert directory.stat().st_uid == psutil.Process(pooler.pid).uids().real
    socket_mode = stat.S_IMODE((directory / f".s.PGSQL.{pgbouncer.PORT}").stat().st_mode)
    assert socket_mode & 0o077 == 0, oct(socket_mode)


def test_a_forked_child_leaves_the_poolers_handle_to_its_parent(walled):
    """Gunicorn's workers inherit their master's atexit cleanup: a child's exit must neither take
    the machine-wide start lock (here held by another process for 5 s) nor touch the pooler."""
    import sys

    _, pooler = walled
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom embedded_pg import lock\nwith lock.held():\n"
                               "    print('held', flush=True)\n    time.sleep(5)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        child = os.fork()
        if child == 0:
            try:
                pooler.cleanup()
            finally:
                os._exit(0)
        os.waitpid(child, 0)
        assert time.monotonic() - started < 2
    finally:
        holder.kill()
        holder.wait()
    assert pooler.pid is not None and os.getpid() in json.loads((pooler.directory / ".handle_pids.json").read_text())


def test_a_start_after_a_killed_pooler_waits_for_the_new_one_to_answer(walled):
    """A SIGKILLed pooler leaves its socket file behind: the start returns once the new pooler
    answers on its admin console, not as soon as a socket file is there."""
    import signal

    database, pooler = walled
    for _ in range(5):
        os.kill(pooler.pid, signal.SIGKILL)
        while pooler.pid is not None:
            time.sleep(0.01)
        assert (pooler.directory / f".s.PGSQL.{pgbouncer.PORT}").exists()
        pgbouncer.start(database.pgdata, SETTINGS)
        assert admin_facts(pooler.url)["default_pool_size"] == POOL


def test_db_reports_the_poolers_settings_and_state(bouncer, walled):
    facts = facts_of(bouncer)
    assert facts["pool_class"] == "sqlalchemy.pool.impl.NullPool" and facts["pgbouncer"] is True
    pooler = facts["db"]["pooler"]
    assert {key: pooler[key] for key in ("pool_mode", "default_pool_size", "max_client_conn", "reserve_pool_size",
                                         "query_wait_timeout")} == {
        "pool_mode": "transaction", "default_pool_size": POOL, "max_client_conn": 1000, "reserve_pool_size": 0,
        "query_wait_timeout": 120.0}
    assert pooler["clients_waiting"] == 0 and pooler["pid"] == walled[1].pid
    # The database's own facts come straight from it, not through the pooler.
    assert facts["db"]["max_connections"] == MAX_CONNECTIONS


def test_bouncer_answers_in_waves_of_default_pool_size_as_predicted(bouncer, fire):
    facts = facts_of(bouncer)
    requests = 2 * POOL + 5
    prediction = predict("postgres", requests, 2 * SLEEP, facts)
    assert prediction.wave_sizes == (POOL, POOL, 5) and "default_pool_size 10" in prediction.reason
    results = fire(bouncer, f"/sleep/postgres/?seconds={2 * SLEEP}", requests)
    assert causes(results) == {"ok": requests}
    assert tuple(w.size for w in group_waves([c for c, _, _ in results], 2 * SLEEP)) == prediction.wave_sizes


def test_no_refusal_past_max_connections_where_nullpool_alone_refuses(walled, bouncer, fire, tmp_path):
    database, _ = walled
    nullpool = start_mode("nullpool", {"DATABASE_URL": database.get_uri()}, tmp_path / "nullpool.log")
    try:
        accepts = nullpool.get_json("/db")[1]["accepts"]
        requests = accepts + 10
        refused = causes(fire(nullpool, f"/sleep/postgres/?seconds={2 * SLEEP}", requests))
        assert refused == {"ok": accepts, "too_many_connections": 10}
    finally:
        nullpool.stop()
    # The same burst through the pooler: it alone faces max_connections, with its pool of 10.
    facts = facts_of(bouncer)
    prediction = predict("postgres", requests, 2 * SLEEP, facts)
    assert prediction.refused == 0
    results = fire(bouncer, f"/sleep/postgres/?seconds={2 * SLEEP}", requests)
    assert causes(results) == {"ok": requests}
    assert tuple(w.size for w in group_waves([c for c, _, _ in results], 2 * SLEEP)) == prediction.wave_sizes
    assert max(answer["connect_seconds"] for answer in (json.loads(body) for _, _, body in results)) > 0


def test_a_wait_past_query_wait_timeout_is_named_as_the_poolers(walled, bouncer, fire):
    database, pooler = walled
    short = pgbouncer.Settings(default_pool_size=2, max_client_conn=1000, reserve_pool_size=0,
                               query_wait_timeout=1.5)
    configure(pooler, database.pgdata, short)
    try:
        # Sleeps of 1 s in waves of 2: the third wave would wait 2 s for a server connection.
        facts = facts_of(bouncer)
        prediction = predict("postgres", 6, 1.0, facts)
        assert (prediction.wave_sizes, prediction.timed_out) == ((2, 2), 2)
        results = fire(bouncer, "/sleep/postgres/?seconds=1", 6)
        assert causes(results) == {"ok": 4, "pooler_query_wait_timeout": 2}
        failed = [json.loads(body) for _, status, body in results if status == 503]
        assert "query_wait_timeout" in failed[0]["message"]
        assert all(1.5 <= c.at < 2.9 for c, status, _ in results if status == 503)
        assert "503 pooler_query_wait_timeout" in bouncer.log()
    finally:
        configure(pooler, database.pgdata, SETTINGS)


def test_the_pooler_stopped_mid_burst_is_named_and_the_server_recovers_when_it_is_back(walled, bouncer, fire):
    import threading

    database, pooler = walled
    results = []
    burst = threading.Thread(target=lambda: results.extend(fire(bouncer, "/sleep/postgres/?seconds=2", 5)))
    burst.start()
    time.sleep(0.5)
    pgbouncer.stop(pooler.directory)
    try:
        burst.join()
        assert causes(results) == {"pooler_unavailable": 5}
        # The server keeps serving what needs no database, and names the cause for what does.
        assert bouncer.get_json(f"/sleep/python/?seconds={SLEEP}")[0] == 200
        status, answer = bouncer.get_json("/sleep/postgres/?seconds=0")
        assert (status, answer["error"]) == (503, "pooler_unavailable")
        assert "unavailable" in bouncer.get_json("/db")[1]["pooler"]
    finally:
        pgbouncer.start(database.pgdata, SETTINGS)  # back, as the lab's next start brings it
    status, answer = bouncer.get_json("/sleep/postgres/?seconds=0")
    assert (status, answer["todo_count"]) == (200, 50)


def test_a_backend_terminated_through_the_pooler_is_the_databases_cause(walled, tmp_path):
    """A closed connection is the pooler's query_wait_timeout only within the window PgBouncer drops
    a waiting client in: a backend terminated 1.8 s into its sleep, past a query_wait_timeout of
    0.5 s, is the database's. The sync mode: its blocking psycopg2 reports the termination as a
    closed connection only (green's, through psycogreen, passes PostgreSQL's FATAL on)."""
    import threading

    import psycopg2

    database, pooler = walled
    configure(pooler, database.pgdata, pgbouncer.Settings(default_pool_size=POOL, max_client_conn=1000,
                                                          reserve_pool_size=0, query_wait_timeout=0.5))
    server = start_mode("sync", {"DATABASE_URL": database.get_uri(), "POOLER_URL": pooler.url, "PGBOUNCER": "true"},
                        tmp_path / "sync.log")
    try:
        answers = []
        request = threading.Thread(target=lambda: answers.append(server.get_json("/sleep/postgres/?seconds=3")))
        request.start()
        time.sleep(1.8)
        with psycopg2.connect(database.get_uri()) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()")
            assert cursor.fetchall() == [(True,)]
        request.join()
        [(status, answer)] = answers
        assert (status, answer["error"]) == (503, "database_unavailable"), answer
    finally:
        server.stop()
        configure(pooler, database.pgdata, SETTINGS)


def test_the_database_down_is_the_databases_cause_not_the_poolers(tmp_path):
    """/db's facts come straight from PostgreSQL: with it stopped and the pooler up, the cause is the database's."""
    root = private_directory("pool-lab-bouncer-down-")
    database = embedded_pg.start(root / "pgdata", MAX_CONNECTIONS)
    pooler = pgbouncer.start(root / "pgdata", SETTINGS)
    server = start_mode("bouncer", {"DATABASE_URL": database.get_uri(), "POOLER_URL": pooler.url},
                        tmp_path / "bouncer.log")
    try:
        database.cleanup()  # this process alone holds it: stopped
        status, answer = server.get_json("/db")
        assert (status, answer["error"]) == (503, "database_unavailable"), answer
    finally:
        server.stop()
        pooler.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_psycopg3_works_through_the_pooler_without_prepared_statements(walled, fire, tmp_path):
    """The psycopg3 mode through the pooler, on pooled connections. Its requests roll back, which
    clears psycopg's prepared statements: the next test is the one that needs prepare_threshold=None."""
    database, pooler = walled
    server = start_mode("psycopg3", {"DATABASE_URL": database.get_uri(), "POOLER_URL": pooler.url,
                                     "PGBOUNCER": "true", "POOL_SIZE": "3", "MAX_OVERFLOW": "0"},
                        tmp_path / "psycopg3.log")
    try:
        assert server.get_json("/pool")[1]["driver"] == "psycopg"
        for _ in range(4):
            results = fire(server, "/sleep/postgres/?seconds=0", 6)
            assert causes(results) == {"ok": 6}
            assert all(json.loads(body)["todo_count"] == 50 for _, _, body in results)
    finally:
        server.stop()


def test_psycopg3_through_the_pooler_never_prepares_a_statement_another_client_holds(walled):
    """The app's own engine (DRIVER=psycopg, through the pooler) in transactions that run a query
    past psycopg's prepare_threshold (5) and commit, which keeps psycopg's prepared statements (a
    rollback clears them, so the postgres endpoint, which rolls back, never gets there): three
    connections taking turns on the pooler's single server connection would each prepare _pg3_0
    on it, and the second would fail (prepared statement "_pg3_0" already exists)."""
    from sqlalchemy import text

    from server import create_app
    from server.db import db

    database, pooler = walled
    configure(pooler, database.pgdata, pgbouncer.Settings(default_pool_size=1, max_client_conn=1000,
                                                          reserve_pool_size=0, query_wait_timeout=120))
    app = create_app({"DATABASE_URL": database.get_uri(), "POOLER_URL": pooler.url, "PGBOUNCER": True,
                      "DRIVER": "psycopg", "POOL_CLASS": "queue", "POOL_SIZE": 3, "MAX_OVERFLOW": 0})
    try:
        with app.app_context():
            connections = [db.engine.connect() for _ in range(3)]
            try:
                for connection in connections:
                    for _ in range(7):
                        assert connection.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": 0}).all()
                    connection.commit()
            finally:
                for connection in connections:
                    connection.close()
                db.engine.dispose()
    finally:
        configure(pooler, database.pgdata, SETTINGS)


def test_without_the_pgbouncer_program_the_bouncer_mode_comes_up_and_names_what_to_install(tmp_path):
    """The embedded start (no DATABASE_URL), with /usr/sbin/pgbouncer hidden behind /dev/null in a
    private mount namespace: the mode must come up (honcho would stop every mode), say in one line
    what to install, and answer its postgres endpoint with that cause."""
    if os.geteuid() != 0:
        pytest.skip("hiding the pgbouncer program needs a private mount namespace, as root")
    root = private_directory("pool-lab-no-bouncer-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PATH=BIN_PATH, EMBEDDED_PGDATA=str(root / "pgdata"), BOUNCER_PORT=str(port))
    hide = f'mount --bind /dev/null "{pgbouncer.program()}" && exec sh -c "$0"'
    log_path = tmp_path / "bouncer.log"
    process = subprocess.Popen(["unshare", "-m", "sh", "-c", hide, PROCFILE["bouncer"]], cwd=ROOT, env=env,
                               stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningMode("bouncer", f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + 60
        while "pool-lab: bouncer ready at" not in server.log():
            assert process.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        lines = [line for line in server.log().splitlines() if "pgbouncer" in line and "pool-lab:" in line]
        assert len(lines) == 1 and lines[0].endswith(
            "pool-lab: the pgbouncer program is not installed: apt-get install pgbouncer; until then bouncer answers "
            "postgres requests with 503 pooler_unavailable")
        status, answer = server.get_json("/sleep/postgres/?seconds=0")
        assert (status, answer["error"]) == (503, "pooler_unavailable")
        assert answer["message"] == "the pgbouncer program is not installed: apt-get install pgbouncer"
        assert server.get_json("/sleep/python/?seconds=0")[0] == 200
        assert server.get_json("/pool")[0] == 200
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert "Traceback" not in log_path.read_text()


def test_the_start_up_sizing_warning_knows_the_poolers_pool_faces_max_connections(tmp_path):
    """A real start of the bouncer mode on an embedded PostgreSQL of max_connections 30: a pooler's
    pool of 40 is warned of at start-up (the warning docs/pgbouncer.md quotes), one of 20 is not."""
    root = private_directory("pool-lab-bouncer-sizing-")
    env = {"DATABASE_URL": "", "EMBEDDED_PGDATA": str(root / "pgdata"), "PG_MAX_CONNECTIONS": "30"}
    try:
        server = start_mode("bouncer", {**env, "PGBOUNCER_DEFAULT_POOL_SIZE": "40"}, tmp_path / "oversized.log")
        server.stop()
        assert ("pool-lab: PgBouncer's pool (default_pool_size 40 + reserve_pool_size 0 = 40) is more than "
                "PostgreSQL accepts: max_connections 30") in server.log(), server.log()
        server = start_mode("bouncer", env, tmp_path / "fits.log")
        server.stop()
        assert "more than PostgreSQL accepts" not in server.log(), server.log()
        assert "Traceback" not in server.log()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_pooler_directory_with_a_space_and_a_percent_sign_works(walled):
    """Its path goes into the pooler's URL percent-encoded and into its configuration quoted. The
    pooler's files alone in such a directory (pgserver's pg_ctl cannot start PostgreSQL in one)."""
    database, _ = walled
    root = private_directory("pool-lab-bouncer-path-")
    directory = root / "lab 100% here"
    directory.mkdir(mode=0o700)
    try:
        pgbouncer._write(directory, pgbouncer.config_text(directory, database.pgdata,
                                                          pgbouncer.postgres_address(database.pgdata)[1], SETTINGS))
        pgbouncer._launch(directory)
        url = pgbouncer.url(directory)
        assert "lab%20100%25%20here" in url
        assert admin_facts(url)["default_pool_size"] == POOL
        import psycopg2

        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    finally:
        pgbouncer.stop(directory)
        shutil.rmtree(root, ignore_errors=True)


def test_a_query_queued_in_pgbouncer_is_not_cut_by_the_database_bound(walled, fire, tmp_path):
    """The later waves wait in PgBouncer's queue longer than seconds + DB_GRACE_SECONDS: that queue is bounded by
    its query_wait_timeout, which the query's bound adds, so they answer 200 (without it: 504 database_timeout)."""
    database, pooler = walled
    grace = 0.2
    server = start_mode("bouncer", {"DATABASE_URL": database.get_uri(), "POOLER_URL": pooler.url,
                                    "DB_GRACE_SECONDS": str(grace)}, tmp_path / "bouncer.log")
    try:
        results = fire(server, f"/sleep/postgres/?seconds={SLEEP}", 3 * POOL)
        assert causes(results) == Counter(ok=3 * POOL)
        # The last wave's query waited two sleeps in the queue: far past seconds + the grace.
        assert max(json.loads(body)["query_seconds"] for _, _, body in results) > SLEEP + grace + SLEEP
    finally:
        server.stop()
