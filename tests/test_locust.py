"""Real headless Locust runs of the lab's profiles against real modes."""

import json
import re
import subprocess
import sys
import time

import pytest

from lab.files import WAVES_COLUMNS
from lab.servers import ROOT, free_port
from support import SLEEP, read_csv, run_locust

# Real Gunicorn modes, Locust runs or PostgreSQL servers: seconds each.
pytestmark = pytest.mark.slow

def wave_sizes(prefix):
    rows = read_csv(f"{prefix}_waves.csv")
    assert tuple(rows[0]) == WAVES_COLUMNS
    sizes = {}
    for row in rows:
        if row["wave"]:  # not a row of counts or notes
            sizes.setdefault(row["endpoint"], []).append(int(row["size"]))
    return sizes


@pytest.mark.parametrize("mode, python_waves, postgres_waves", [
    ("sync", [1] * 5, [1] * 5),
    ("gevent", [5], [1] * 5),
    ("green", [5], [5]),
])
def test_five_user_profile_shows_each_mode_and_ends_by_itself(running_mode, tmp_path, mode, python_waves, postgres_waves):
    prefix = tmp_path / "five"
    result, seconds = run_locust(running_mode(mode).url, prefix)
    assert result.returncode == 0, result.stderr
    # Ended by itself: far sooner than the 90 s cap (sync needs about 2 x 5 x SLEEP).
    assert seconds < 45
    assert wave_sizes(prefix) == {"python": python_waves, "postgres": postgres_waves}
    stats = {row["Name"]: row for row in read_csv(f"{prefix}_stats.csv")}
    for name in ("/sleep/python/", "/sleep/postgres/"):
        assert (stats[name]["Request Count"], stats[name]["Failure Count"]) == ("5", "0")
    assert len(read_csv(f"{prefix}_requests.csv")) == 10
    assert (tmp_path / "five.html").stat().st_size > 0
    assert f"pool-lab burst on the {mode} mode" in result.stdout
    assert "failures: none" in result.stdout and "UNEVEN" not in result.stdout
    # Inferred from the answers alone, beside the prediction: the same limit (1: serial; none below 5 else).
    for endpoint, waves in (("python", python_waves), ("postgres", postgres_waves)):
        said = "at most 1 at once" if len(waves) > 1 else "no limit below 5"
        assert f"inferred: {said}" in result.stdout.split(f"{endpoint}: 5 requests")[1]
    assert "INFERRED DIFFERS" not in result.stdout


def test_hundred_user_profile_in_green_mode_fills_the_pool_first(running_mode, tmp_path):
    prefix = tmp_path / "hundred"
    result, _ = run_locust(running_mode("green").url, prefix, "100-users")
    assert result.returncode == 0, result.stderr
    sizes = wave_sizes(prefix)
    assert sizes["python"] == [100]
    assert sizes["postgres"][0] == 5 + 10
    assert sum(sizes["postgres"]) == 100
    rows = read_csv(f"{prefix}_waves.csv")
    assert [int(r["predicted_size"]) for r in rows if r["endpoint"] == "postgres" and r["wave"]][:7] == [15] * 6 + [10]
    assert f"first wave 15, measured 15; ideal total {7 * SLEEP:.2f} s" in result.stdout  # 7 waves of 15
    # The same limit inferred from the answers alone, its cause named from /pool.
    postgres = result.stdout.split("postgres: 100 requests")[1]
    assert "inferred: at most 15 at once" in postgres, postgres
    assert "cause, from /pool: limit 15: waves of the pool limit: pool_size 5 + max_overflow 10" in postgres
    with open(f"{prefix}_result.json") as result_file:
        inferred = {s["endpoint"]: s["inferred"] for s in json.load(result_file)["summaries"]}
    assert (inferred["postgres"]["limit"], inferred["python"]["limit"]) == (15, None)
    assert "spawn rate is very high" not in result.stderr


def test_pool_timeouts_are_counted_by_cause(running_mode, tmp_path):
    server = running_mode("green", POOL_SIZE=1, MAX_OVERFLOW=0, POOL_TIMEOUT=1)
    prefix = tmp_path / "timeouts"
    # One request holds the only connection for 1.5 s; the other four give up after 1 s.
    result, _ = run_locust(server.url, prefix, "5-users", "PostgresSleepUser", "-u", "5",
                           "--sleep-seconds", "1.5")
    # Locust exits 1 when requests failed; the report says why they failed.
    assert result.returncode == 1, result.stderr
    assert "failures: pool_timeout 4" in result.stdout
    assert "pool timeout 1 s" in result.stdout
    rows = read_csv(f"{prefix}_waves.csv")
    assert sum(int(r["failures"]) for r in rows if r["wave"]) == 4
    assert "COUNTS: sent 5 = answered 1 + failed 4 (pool_timeout 4) + in flight 0" in [r["note"] for r in rows]


def test_web_ui_offers_the_lab_options_and_runs_a_burst(running_mode, tmp_path):
    import json
    import urllib.parse
    import urllib.request

    port = free_port()
    prefix = tmp_path / "ui"
    ui = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", "locustfile.py", "--web-host", "127.0.0.1",
         "--web-port", str(port), "--csv", str(prefix)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = urllib.request.urlopen(base, timeout=2).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and ui.poll() is None
                time.sleep(0.2)
        assert '"behaviour": {"choices": ["steady", "burst", "probe"]' in page
        assert '"probe_steps": {' in page and '"step_seconds": {' in page
        assert '"sleep_seconds": {' in page
        form = urllib.parse.urlencode({"user_count": 4, "spawn_rate": 4, "host": running_mode("green").url,
                                       "behaviour": "burst", "sleep_seconds": SLEEP}).encode()
        assert json.load(urllib.request.urlopen(f"{base}/swarm", data=form, timeout=10))["success"]
        waves = tmp_path / "ui_waves.csv"
        while True:
            stats = json.load(urllib.request.urlopen(f"{base}/stats/requests", timeout=5))
            # Locust sets "stopped" just before firing test_stop, which writes the waves.
            if stats["state"] == "stopped" and waves.exists():
                break
            assert time.monotonic() < deadline + 30
            time.sleep(0.2)
        # The burst stopped the test by itself, and the UI is still there for the next one.
        assert {s["name"]: s["num_requests"] for s in stats["stats"]}["Aggregated"] == 4
        assert wave_sizes(prefix) == {"python": [2], "postgres": [2]}
    finally:
        ui.terminate()
        ui.wait(timeout=30)


@pytest.mark.parametrize("processes", [0, 2])
def test_a_run_stopped_early_says_what_it_left_behind(running_mode, tmp_path, processes):
    """Also across Locust worker processes, whose answers of the last moment the master collects first."""
    import signal

    prefix = tmp_path / "stopped"
    port = str(free_port())
    distributed = ["--processes", str(processes), "--master-bind-port", port, "--master-port", port] if processes else []
    locust = subprocess.Popen(
        [sys.executable, "-m", "locust", "--config", "profiles/5-users.conf", "-H", running_mode("sync").url,
         "--sleep-seconds", "1", "--csv", str(prefix), "--html", f"{prefix}.html", *distributed],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Serial 1 s sleeps: stopped once the first python answer is in, the rest are in flight
    # and the postgres burst has not begun.
    deadline = time.monotonic() + 60
    while not (prefix.parent / "stopped_requests.csv").exists() or not read_csv(f"{prefix}_requests.csv"):
        assert time.monotonic() < deadline and locust.poll() is None
        time.sleep(0.1)
    locust.send_signal(signal.SIGTERM)
    output, _ = locust.communicate(timeout=60)
    stopped = re.search(r"STOPPED EARLY: 5 sent, (\d) answered, 0 failed, (\d) still in flight", output)
    assert stopped, output
    answered, in_flight = map(int, stopped.groups())
    assert answered + in_flight == 5 and 0 < answered < 5
    assert "predicted: 1 1 1 1 1" in output  # for the 5 sent, not the answered
    assert "postgres: STOPPED EARLY: never began (the run stopped first)" in output
    notes = [row["note"] for row in read_csv(f"{prefix}_waves.csv") if row["note"]]
    assert notes == [f"COUNTS: sent 5 = answered {answered} + failed 0 + in flight {in_flight}", stopped.group(0),
                     "STOPPED EARLY: never began (the run stopped first)"]


def test_a_burst_waits_for_a_busy_pool_then_warns(running_mode, tmp_path):
    import socket

    server = running_mode("green")
    host, port = server.url.removeprefix("http://").split(":")
    # An earlier client's request holds a connection through the whole burst.
    holder = socket.create_connection((host, int(port)))
    holder.sendall(f"GET /sleep/postgres/?seconds={30 * SLEEP} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
    try:
        time.sleep(SLEEP)
        result, _ = run_locust(server.url, tmp_path / "busy", "5-users", "--idle-wait", "0.5")
    finally:
        holder.close()
    assert result.returncode == 0, result.stderr
    warning = "WARNING: the pool had 1 connection(s) checked out when the burst began, still after 0.5 s"
    assert warning in result.stdout
    assert any(row["note"].startswith(warning) for row in read_csv(tmp_path / "busy_waves.csv"))


def test_a_steady_run_reports_response_times_and_keeps_no_request_log(running_mode, tmp_path):
    prefix = tmp_path / "steady"
    result, _ = run_locust(running_mode("green").url, prefix, "5-users", "--behaviour", "steady", "-u", "2",
                           "--run-time", "2s", "--sleep-seconds", "0.1")
    assert result.returncode == 0, result.stderr
    assert "pool-lab steady run" in result.stdout
    steady = re.search(r"python: sent (\d+) = answered (\d+) \+ failed 0 \+ in flight (\d+); response time median "
                       r"(\d+) ms", result.stdout)
    assert steady and int(steady.group(4)) >= 100, result.stdout  # no answer before its 0.1 s sleep
    # Sent is counted as each request leaves, answers as they come: what the stop cut short is in flight,
    # at most one request per user.
    sent, answered, in_flight = map(int, steady.groups()[:3])
    assert sent == answered + in_flight and answered > 0 and in_flight <= 1, result.stdout
    assert "total" not in result.stdout.split("pool-lab steady run", 1)[1]
    assert read_csv(f"{prefix}_requests.csv") == []  # the header only
