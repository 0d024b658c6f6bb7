"""Fixtures that hand tests a real PostgreSQL, an app and client on it, and real Gunicorn modes.

Fixtures only: what tests import (constants, helpers) is in support.py."""

import os
import shutil

import psutil
import pytest

import embedded_pg
from fresh_machine import FreshMachine
from lab.servers import start_mode, stop_all
from server import create_app
from support import burst, private_directory


@pytest.fixture(scope="session", autouse=True)
def one_calibration_per_mode(tmp_path_factory):
    """Every Locust run of the suite keeps its CPU calibration in one file (--calibration-file, by its
    LOCUST_CALIBRATION_FILE), as a user's runs may: a mode is calibrated once, not once per test's
    directory. A test of the default file beside the CSV files unsets it (monkeypatch.delenv)."""
    before = os.environ.get("LOCUST_CALIBRATION_FILE")
    os.environ["LOCUST_CALIBRATION_FILE"] = str(tmp_path_factory.mktemp("calibration") / "calibration.json")
    yield
    if before is None:
        os.environ.pop("LOCUST_CALIBRATION_FILE", None)
    else:
        os.environ["LOCUST_CALIBRATION_FILE"] = before


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
def running_mode(database_url, tmp_path_factory):
    """running_mode(mode, **env): a running mode with that environment, shared by the whole session."""
    running = {}
    logs = tmp_path_factory.mktemp("logs")

    def get(mode, **env):
        key = (mode, tuple(sorted(env.items())))
        if key not in running:
            environment = {"DATABASE_URL": database_url, **{k: str(v) for k, v in env.items()}}
            running[key] = start_mode(mode, environment, logs / f"{mode}-{len(running)}.log")
        return running[key]

    yield get
    stop_all(list(running.values()))


@pytest.fixture
def fire():
    """fire(server, path, count): the burst helper, handed to tests like any fixture."""
    return burst
