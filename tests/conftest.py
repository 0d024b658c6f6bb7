"""Fixtures that hand tests a real PostgreSQL, an app and client on it, and real Gunicorn modes."""

import http.client
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from fresh_machine import FreshMachine
from lab.servers import start_mode
from lab.waves import Completion
import embedded_pg
from server import create_app

# Short enough to keep the suite fast, long enough to stand far above the machine's noise.
SLEEP = 0.5


def private_directory(prefix):
    """A directory for data directories of embedded servers, outside pytest's tmp_path: every
    pytest session that starts makes /tmp/pytest-of-<user> 0700 again, which, as root, locks the
    pgserver user out of a server below it (another session's) in mid-start."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def database_url():
    """DATABASE_URL when set, else an embedded PostgreSQL of the suite's own, with PostgreSQL's own
    max_connections (test_ceiling starts a walled one of its own)."""
    root = private_directory("pool-lab-suite-")
    yield embedded_pg.database_url(os.environ.get("DATABASE_URL"), root / "pgdata")
    if (root / "pgdata").exists():
        embedded_pg.start(root / "pgdata").cleanup()  # this process's handle: the server stops first
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pgdata():
    """A data directory, not yet created, for an embedded server of the test's own, which the
    test stops before it ends."""
    root = private_directory("pool-lab-test-")
    yield root / "pgdata"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_machine():
    """A machine where the lab never ran (see tests/fresh_machine.py)."""
    root = private_directory("pool-lab-machine-")
    machine = FreshMachine(root)
    yield machine
    # Only after a failed test: what it left would hold its port or data directory for good.
    leftovers = machine.leftovers()
    for process in leftovers:
        process.terminate()
    for process in psutil.wait_procs(leftovers, timeout=10)[1]:
        process.kill()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def app(database_url):
    app = create_app({"DATABASE_URL": database_url, "TESTING": True})
    with app.app_context():
        from server.db import init_db

        init_db()
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def lab(database_url, tmp_path_factory):
    """lab(mode, **env): a running mode with that environment, shared by the whole session."""
    running = {}
    logs = tmp_path_factory.mktemp("logs")

    def get(mode, **env):
        key = (mode, tuple(sorted(env.items())))
        if key not in running:
            environment = {"DATABASE_URL": database_url, **{k: str(v) for k, v in env.items()}}
            running[key] = start_mode(mode, environment, logs / f"{mode}-{len(running)}.log")
        return running[key]

    yield get
    for server in running.values():
        server.stop()


def burst(server, path, count, timeout=60):
    """Send `count` requests at the same moment; return their Completions and responses.

    Every connection is open before the barrier releases, so the requests leave together
    and completion times are measured from one common start.
    """
    start = []
    barrier = threading.Barrier(count, action=lambda: start.append(time.monotonic()))
    results = [None] * count

    def one(index):
        connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=timeout)
        try:
            connection.connect()
            barrier.wait()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            at = time.monotonic() - start[0]
            failure = None if response.status == 200 else f"HTTP {response.status}"
            results[index] = (Completion(path, at, failure), response.status, body)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results), "a request of the burst raised instead of answering"
    return results


@pytest.fixture
def fire():
    """fire(server, path, count): the burst helper, handed to tests like any fixture."""
    return burst


# What each Procfile mode's /pool reports about its worker (test_modes checks these on the real servers).
WORKER_FACTS = {
    "sync": {"worker_class": "gunicorn.workers.sync.SyncWorker", "worker_concurrency": 1, "driver": "psycopg2",
             "query_yields": True},
    "gevent": {"worker_class": "gunicorn.workers.ggevent.GeventWorker", "worker_concurrency": 1000,
               "driver": "psycopg2", "query_yields": False},
    "green": {"worker_class": "gunicorn.workers.ggevent.GeventWorker", "worker_concurrency": 1000,
              "driver": "psycopg2", "query_yields": True},
    "threads": {"worker_class": "gunicorn.workers.gthread.ThreadWorker", "worker_concurrency": 8,
                "driver": "psycopg2", "query_yields": True},
    "psycopg3": {"worker_class": "gunicorn.workers.ggevent.GeventWorker", "worker_concurrency": 1000,
                 "driver": "psycopg", "query_yields": True},
}


def facts(mode, pool_size=5, max_overflow=10, pool_class="sqlalchemy.pool.impl.QueuePool"):
    """/pool's facts for a mode and pool shape, for tests of the prediction and the report."""
    return {"mode": mode, **WORKER_FACTS[mode], "workers": 1, "pool_size": pool_size, "max_overflow": max_overflow,
            "pool_limit": pool_size + max_overflow, "timeout": 30, "pool_class": pool_class}
