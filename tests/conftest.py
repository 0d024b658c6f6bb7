"""Fixtures that hand tests a real PostgreSQL, an app and client on it, and real Gunicorn modes."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from honcho.environ import parse_procfile

from lab.waves import Completion
from server import create_app, embedded

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = parse_procfile((ROOT / "Procfile").read_text()).processes
# The Procfile calls `gunicorn` by name: find the one installed beside this Python.
BIN_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# Short enough to keep the suite fast, long enough to stand far above the machine's noise.
SLEEP = 0.5


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    """DATABASE_URL when set, else an embedded PostgreSQL of the suite's own."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    server = embedded.start(tmp_path_factory.mktemp("embedded") / "pgdata")
    yield server.get_uri()
    server.cleanup()


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


@dataclass
class LabServer:
    """One mode of the lab, started from its Procfile line."""
    mode: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def get(self, path, timeout=30):
        connection = http.client.HTTPConnection(self.url.removeprefix("http://"), timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def get_json(self, path):
        status, _, body = self.get(path)
        return status, json.loads(body)

    def log(self):
        return self.log_path.read_text()

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_mode(mode, environment, log_path, timeout=60):
    """Run one Procfile process on a free port and wait until it answers /pool."""
    port = free_port()
    env = {**os.environ, "PATH": BIN_PATH, **environment, f"{mode.upper()}_PORT": str(port)}
    log = log_path.open("w")
    process = subprocess.Popen(PROCFILE[mode], shell=True, cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = LabServer(mode, f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{mode} exited with {process.returncode}:\n{server.log()}")
        try:
            if server.get("/pool", timeout=2)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{mode} did not answer within {timeout}s:\n{server.log()}")


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
