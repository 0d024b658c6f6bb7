"""Locust's distributed mode: one burst across worker processes, one report from the master."""

import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from contract import endpoint_of
from lab.servers import ROOT, free_port
from support import SLEEP, read_csv

# Real Gunicorn modes, Locust runs or PostgreSQL servers: seconds each.
pytestmark = pytest.mark.slow

LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py")]
# Run from a directory of their own, where the lab's locust.conf (which says the same) is not read.
LOOPBACK = ["--master-bind-host", "127.0.0.1"]


def check_one_burst(prefix, users_per_endpoint):
    """Exact counts per endpoint, and every python answer in before the first postgres request left."""
    rows = read_csv(f"{prefix}_requests.csv")
    by_endpoint = {}
    for row in rows:
        sent = float(row["timestamp"])
        by_endpoint.setdefault(endpoint_of(row["name"]), []).append(
            (sent, sent + float(row["response_time_ms"]) / 1000, row["status_code"]))
    assert {e: len(r) for e, r in by_endpoint.items()} == {"python": users_per_endpoint,
                                                           "postgres": users_per_endpoint}
    assert {code for requests in by_endpoint.values() for _, _, code in requests} == {"200"}
    last_python_answer = max(done for _, done, _ in by_endpoint["python"])
    first_postgres_sent = min(sent for sent, _, _ in by_endpoint["postgres"])
    assert last_python_answer < first_postgres_sent
    waves = {}
    for row in read_csv(f"{prefix}_waves.csv"):
        if row["wave"]:  # not a row of counts or notes
            waves.setdefault(row["endpoint"], []).append(int(row["size"]))
    assert waves == {"python": [users_per_endpoint], "postgres": [users_per_endpoint]}


def master_port():
    """A free port for the master, known to --processes' workers too (they don't read --master-bind-port)."""
    port = str(free_port())
    return ["--master-bind-port", port, "--master-port", port]


def headless(prefix, host, *args):
    return [*LOCUST, "--config", str(ROOT / "profiles" / "5-users.conf"), "-H", host, "--sleep-seconds",
            str(SLEEP), "--csv", str(prefix), "--html", f"{prefix}.html", "--run-time", "60s", *LOOPBACK, *args]


def test_processes_run_one_burst_and_the_master_writes_the_one_report(running_mode, tmp_path):
    prefix = tmp_path / "out" / "two"
    # From an empty directory: whatever a worker wrote by default (reports/...) would show there.
    result = subprocess.run(headless(prefix, running_mode("green").url, "--processes", "2", *master_port(), "-u", "12"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    check_one_burst(prefix, 6)
    assert result.stdout.count("pool-lab burst on the green mode") == 1
    assert "python: 6 requests" in result.stdout and "postgres: 6 requests" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("two_")) == sorted(
        f"two_{name}" for name in ("requests.csv", "waves.csv", "server_timing.csv", "result.json", "memory.csv",
                                   "stats.csv", "stats_history.csv", "failures.csv", "exceptions.csv"))
    result_file = json.loads((tmp_path / "out" / "two_result.json").read_text())
    assert len(result_file["completions"]["postgres"]) == 6


def test_a_master_and_two_workers_run_one_burst(running_mode, tmp_path):
    port = free_port()
    prefix = tmp_path / "master"
    master = subprocess.Popen(headless(prefix, running_mode("green").url, "--master", "--expect-workers", "2",
                                       "--master-bind-port", str(port), "-u", "8"),
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = [subprocess.Popen([*LOCUST, "--worker", "--master-port", str(port)], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        output, _ = master.communicate(timeout=90)
        assert master.returncode == 0, output
        for worker in workers:
            assert worker.wait(timeout=30) == 0
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
    check_one_burst(prefix, 4)
    assert output.count("pool-lab burst on the green mode") == 1


def test_a_steady_run_across_processes_counts_every_worker(running_mode, tmp_path):
    prefix = tmp_path / "steady"
    result = subprocess.run(headless(prefix, running_mode("green").url, "--processes", "2", *master_port(), "--behaviour", "steady",
                                     "-u", "4", "--run-time", "2s", "--sleep-seconds", "0.1"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    summary = result.stdout.split("pool-lab steady run", 1)[1]
    stats = {row["Name"]: int(row["Request Count"]) for row in read_csv(f"{prefix}_stats.csv")}
    # The summary counts what Locust's own statistics count, the workers' last reports included; and what the
    # workers' users sent (their reports carry it), so what the stop cut short is in flight: at most a request per user.
    for endpoint in ("python", "postgres"):
        counts = re.search(rf"{endpoint}: sent (\d+) = answered {stats[f'/sleep/{endpoint}/']} \+ failed 0 \+ in "
                           rf"flight (\d+);", summary)
        assert counts and int(counts.group(1)) == stats[f"/sleep/{endpoint}/"] + int(counts.group(2)), summary
        assert int(counts.group(2)) <= 2, summary
    assert stats["Aggregated"] >= 4 * 2 / 0.1 / 2  # half of what 4 users could send in 2 s, at least


def test_the_web_ui_of_a_master_runs_one_burst(running_mode, tmp_path):
    port = free_port()
    prefix = tmp_path / "ui"
    ui = subprocess.Popen([*LOCUST, *LOOPBACK, "--processes", "2", "--web-host", "127.0.0.1", "--web-port", str(port),
                           *master_port(), "--csv", str(prefix)],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                state = json.load(urllib.request.urlopen(f"{base}/stats/requests", timeout=2))
                if state["workers"] and len(state["workers"]) == 2:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and ui.poll() is None
            time.sleep(0.2)
        form = urllib.parse.urlencode({"user_count": 6, "spawn_rate": 1, "host": running_mode("green").url,
                                       "behaviour": "burst", "sleep_seconds": SLEEP}).encode()
        assert json.load(urllib.request.urlopen(f"{base}/swarm", data=form, timeout=10))["success"]
        while True:
            stats = json.load(urllib.request.urlopen(f"{base}/stats/requests", timeout=5))
            waves = {row["endpoint"]: row for row in next(
                (tab["data"] for tab in stats.get("extended_stats", []) if tab["key"] == "waves"), [])}
            if stats["state"] == "stopped" and waves:
                break
            assert time.monotonic() < deadline + 30
            time.sleep(0.2)
        assert (waves["python"]["waves"], waves["postgres"]["waves"]) == ("3", "3")
        check_one_burst(prefix, 3)
    finally:
        ui.terminate()
        ui.wait(timeout=30)


@pytest.mark.parametrize("option", ["--processes", "--master"])
def test_the_master_listens_on_loopback_only(tmp_path, option):
    """Locust's master binds all interfaces by default; the lab's locust.conf keeps it on 127.0.0.1."""
    import psutil

    port = free_port()
    args = ["--processes", "1", "--master-port", str(port)] if option == "--processes" else ["--master"]
    ui = subprocess.Popen([*LOCUST, *args, "--web-port", str(free_port()), "--master-bind-port", str(port)],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (listening := [c.laddr for c in psutil.Process(ui.pid).net_connections()
                                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]):
            assert time.monotonic() < deadline and ui.poll() is None
            time.sleep(0.2)
        assert [address.ip for address in listening] == ["127.0.0.1"]
    finally:
        ui.terminate()
        ui.wait(timeout=30)
