"""The lab against apps that are not its own: --path, the limit inferred from a burst, --ignore-facts on
the lab's own modes, a bad --path refused before anything is sent, and the example locustfile run
from outside the checkout with the lab pip-installed."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from lab.servers import ROOT, BIN_PATH, free_port
from support import SLEEP

APPS = ROOT / "examples" / "apps"
SEMAPHORE = 3


def locust(*args, cwd=ROOT, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "locust", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def inferred(prefix):
    """{endpoint: its "inferred" in the run's result file}."""
    with open(f"{prefix}_result.json") as result:
        return {s["endpoint"]: s["inferred"] for s in json.load(result)["summaries"]}


@pytest.fixture(scope="module")
def semaphore_app(tmp_path_factory):
    """examples/apps/semaphore_app.py under Gunicorn's thread worker: at most SEMAPHORE at once, no /pool.
    Started from its own directory: the checkout's gunicorn.conf.py is the lab's server's."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("app") / "semaphore.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "16", "-b", f"127.0.0.1:{port}",
         "semaphore_app:app"], cwd=APPS, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": BIN_PATH, "SEMAPHORE": str(SEMAPHORE), "SLEEP": str(SLEEP)})
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "the semaphore app did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.mark.slow
def test_a_path_of_an_app_without_pool_shows_its_limit(semaphore_app, tmp_path):
    prefix = tmp_path / "sem"
    # -u 8 on one path: 8 requests at once against a semaphore of 3 answer in waves of 3 3 2.
    result = locust("--config", "profiles/5-users.conf", "-u", "8", "-H", semaphore_app, "--path", "/work",
                    "--sleep-seconds", str(SLEEP), "--csv", str(prefix))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "/work: 8 requests" in out and "waves 3 3 2" in out
    assert "prediction: unavailable (the server's /pool did not answer)" in out
    assert f"inferred: at most {SEMAPHORE} at once, about 0.5" in out
    # No ?seconds= for an app that is not the lab's: it would refuse it (400 bad_parameter).
    assert "failures: none" in out
    found = inferred(prefix)["/work"]
    assert (found["limit"], found["verdict"]) == (SEMAPHORE, "limit")
    assert found["service_seconds"] == pytest.approx(SLEEP, rel=0.3)
    assert "waves 3 3 2" in found["evidence"]


@pytest.mark.slow
def test_the_lab_infers_a_modes_limit_with_its_facts_ignored(running_mode, tmp_path):
    prefix = tmp_path / "threads"
    # 10 requests per endpoint against 8 threads: waves of 8 and 2, whatever /pool would have said.
    result = locust("--config", "profiles/5-users.conf", "-u", "20", "-H", running_mode("threads").url,
                    "--sleep-seconds", str(SLEEP), "--ignore-facts", "--csv", str(prefix))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("prediction: unavailable (/pool ignored: --ignore-facts)") == 2
    assert {e: (i["limit"], i["verdict"]) for e, i in inferred(prefix).items()} == {
        "python": (8, "limit"), "postgres": (8, "limit")}
    with open(f"{prefix}_result.json") as result_file:
        assert json.load(result_file)["facts"] is None  # ignored: nothing was predicted from them


class Listener:
    """A loopback port that counts the connections made to it: what a refused run must not send."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            connection, _ = self.socket.accept()
            self.connections += 1
            connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("path, line", [
    ("work", "pool-lab: --path work has no leading slash: write --path /work"),
    ("", "pool-lab: --path is empty: give a path such as --path /items"),
])
@pytest.mark.parametrize("headless", [True, False])
def test_a_bad_path_is_refused_in_one_line_before_anything_is_sent(tmp_path, path, line, headless):
    server = Listener()
    result = locust("-f", "locustfile.py", "-H", server.url, "--path", "/ok", "--path", path,
                    *(["--headless", "-u", "2"] if headless else ["--web-port", str(free_port())]),
                    "--csv", str(tmp_path / "bad"), timeout=30)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [line]
    assert server.connections == 0 and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_the_example_locustfile_runs_outside_the_checkout_with_the_lab_installed(semaphore_app, tmp_path):
    site, elsewhere = tmp_path / "site", tmp_path / "my-project"
    # What `pip install .` of a checkout installs, without its requirements (already in this venv).
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                              str(ROOT)], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stderr
    assert {"lab", "contract.py"} <= {p.name for p in site.iterdir()} and not (site / "tests").exists()
    elsewhere.mkdir()
    shutil.copy(ROOT / "examples" / "locustfile.py", elsewhere)
    env = {**os.environ, "PATH": BIN_PATH, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import lab.plugin; print(lab.plugin.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, env=env)
    assert where.stdout.startswith(str(site)), where.stderr
    result = locust("-f", "locustfile.py", "--headless", "-u", "8", "-H", semaphore_app, "--csv", "out/example",
                    cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stderr
    # Locust splits the 8 users over the two classes: 4 requests each, in waves of 3 and 1.
    for endpoint in ("/work", "report"):
        assert f"{endpoint}: 4 requests, total" in result.stdout
    assert result.stdout.count(f"inferred: at most {SEMAPHORE} at once") == 2
    assert set(inferred(elsewhere / "out" / "example")) == {"/work", "report"}
