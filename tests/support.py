"""What the tests import: the suite's sleep, the burst helper, Locust runs, and /pool's facts per mode.

conftest.py holds the fixtures; everything a test file imports by name is here.
"""

import csv
import http.client
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lab.servers import ROOT
from lab.waves import Completion

# Short enough to keep the suite fast, long enough to stand far above the machine's noise.
SLEEP = 0.5


def private_directory(prefix):
    """A directory for data directories of embedded servers, outside pytest's tmp_path: every
    pytest session that starts makes /tmp/pytest-of-<user> 0700 again, which, as root, locks the
    pgserver user out of a server below it (another session's) in mid-start."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


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



def run_locust(host, prefix, profile="5-users", *args):
    """A headless Locust run of a profile against `host`, with the suite's sleep; (result, seconds it took)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "locust", "--config", f"profiles/{profile}.conf", "-H", host,
         "--sleep-seconds", str(SLEEP), "--csv", str(prefix), "--html", f"{prefix}.html",
         "--run-time", "90s", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=150,
    )
    return result, time.monotonic() - started


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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
