"""Faults of the load's path, injected mid-burst on real processes: the server's worker killed or
stopped, a Locust worker process killed. Every request is counted: sent = answered + failed (by
cause) + in flight, per endpoint, in the summary, the waves CSV and the result file."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from lab import calibration
from lab.servers import ROOT, free_port, start_mode
from support import read_csv

pytestmark = pytest.mark.slow

LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py")]


@pytest.fixture(scope="module")
def green(database_url, tmp_path_factory):
    """A green mode of this module's own: its worker is killed and stopped here."""
    mode = start_mode("green", {"DATABASE_URL": database_url}, tmp_path_factory.mktemp("faults") / "green.log")
    yield mode
    mode.stop()


@pytest.fixture(autouse=True)
def calibration_beside_the_files(monkeypatch):
    """Each run here calibrates into its own directory: wait_for_requests tells the calibration's end by its file."""
    monkeypatch.delenv("LOCUST_CALIBRATION_FILE", raising=False)


def worker_pid(mode):
    return mode.get_json("/pool")[1]["pid"]


def locust(prefix, host, sleep, *args):
    """A headless run of profiles/5-users.conf, in the background."""
    return subprocess.Popen([*LOCUST, "--config", str(ROOT / "profiles" / "5-users.conf"), "-H", host,
                             "--sleep-seconds", str(sleep), "--csv", str(prefix), "--html", f"{prefix}.html", *args],
                            cwd=prefix.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_requests(pid, count, run, directory, timeout=60):
    """Until the server's worker `pid` holds `count` connections after the run's CPU calibration (whose
    requests come first, its file in `directory`): the burst is out."""
    worker = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    while not (directory / "calibration.json").exists() or len(
            [c for c in worker.net_connections() if c.status == psutil.CONN_ESTABLISHED]) < count:
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.02)


def counts_add_up(prefix):
    """Per endpoint, from the result file: sent = answered + failed + in flight, failed = the sum of the causes;
    the waves CSV's COUNTS rows say the same. Returns the result's summaries by endpoint."""
    result = json.loads((prefix.parent / f"{prefix.name}_result.json").read_text())
    summaries = {s["endpoint"]: s for s in result["summaries"]}
    notes = {r["endpoint"]: r["note"] for r in read_csv(f"{prefix}_waves.csv") if r["note"].startswith("COUNTS")}
    for endpoint, s in summaries.items():
        c = s["counts"]
        assert c["sent"] == c["answered"] + c["failed"] + c["in_flight"], s
        assert c["failed"] == sum(s["failures"].values()), s
        assert notes[endpoint].startswith(f"COUNTS: sent {c['sent']} = answered {c['answered']} + failed "
                                          f"{c['failed']}"), notes
        assert notes[endpoint].endswith(f"+ in flight {c['in_flight']}"), notes
    return {e: s["counts"] for e, s in summaries.items()}


def test_a_worker_killed_mid_burst_loses_its_requests_counted_and_the_next_burst_is_clean(green, tmp_path):
    prefix = tmp_path / "killed"
    before = worker_pid(green)
    run = locust(prefix, green.url, 1)
    wait_for_requests(before, 5, run, tmp_path)
    time.sleep(0.3)  # mid-burst: every python request is in the handler's 1 s sleep
    os.kill(before, signal.SIGKILL)
    out, err = run.communicate(timeout=90)
    # Lost requests are failures: Locust exits 1, as for any failure.
    assert run.returncode == 1, err
    assert "sent 5 = answered 0 + failed 5 + in flight 0; failures: connection_lost 5" in out, out
    # The postgres burst came after, on the worker Gunicorn started in its place: clean.
    assert "sent 5 = answered 5 + failed 0 + in flight 0; failures: none" in out, out
    after = worker_pid(green)
    assert after != before
    assert (f"WORKER STOPPED: pid {before}, the server's worker before the burst, stopped during it and took 5 "
            f"requests with it (connection_lost: python 5); later answers came from pid {after}") in out, out
    # Sent once each, never re-sent: the server timings hold no python answer at all.
    assert [r for r in read_csv(f"{prefix}_server_timing.csv") if r["endpoint"] == "python"] == []
    assert counts_add_up(prefix) == {"python": {"sent": 5, "answered": 0, "failed": 5, "in_flight": 0},
                                     "postgres": {"sent": 5, "answered": 5, "failed": 0, "in_flight": 0}}


def test_a_stopped_worker_stalls_the_burst_which_says_so_and_run_time_ends_it_in_flight(green, tmp_path):
    prefix = tmp_path / "stopped"
    pid = worker_pid(green)
    # The mode's calibration cached beside the files before the run, so --run-time's 6 s are the burst's own
    # (measured within them, it took 5.4 s of them on a busy machine, and the stall had no time to show).
    calibration.with_cpu_cost(green.get_json("/pool")[1], green.url, tmp_path)
    run = locust(prefix, green.url, 0.5, "--run-time", "6s")
    try:
        wait_for_requests(pid, 5, run, tmp_path)
        os.kill(pid, signal.SIGSTOP)
        out, err = run.communicate(timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
    # Said while it waited (2 x the predicted 0.5 s + 1 s of silence), before --run-time stopped it.
    stalled = [line for line in err.splitlines() if "STALLED: python: 5 of 5 requests in flight" in line]
    assert stalled and "predicted total 0.5" in stalled[0], err
    assert len(stalled) == 1  # said again only every 10 s
    assert "STOPPED EARLY: 5 sent, 0 answered, 0 failed, 5 still in flight" in out, out
    assert "postgres: STOPPED EARLY: never began (the run stopped first)" in out, out
    assert counts_add_up(prefix) == {"python": {"sent": 5, "answered": 0, "failed": 0, "in_flight": 5}}
    # Resumed, the worker answers again.
    assert green.get_json("/pool")[0] == 200


def test_a_locust_worker_killed_mid_burst_is_named_with_what_it_held_and_the_run_ends(green, tmp_path):
    prefix = tmp_path / "distributed"
    port = str(free_port())
    pid = worker_pid(green)
    run = locust(prefix, green.url, 1, "--processes", "2", "--master-bind-host", "127.0.0.1",
                 "--master-bind-port", port, "--master-port", port, "--run-time", "60s")
    wait_for_requests(pid, 5, run, tmp_path)
    started = time.monotonic()
    # A worker process with python requests out (how Locust spread the users over the two varies).
    server_port = int(green.url.rsplit(":", 1)[1])
    lost = next(child for child in psutil.Process(run.pid).children()
                if any(c.raddr and c.raddr.port == server_port for c in child.net_connections()))
    lost.kill()
    out, err = run.communicate(timeout=60)
    # The master noticed by heartbeat (about 3 s) and went on: well before --run-time's 60 s.
    assert time.monotonic() - started < 20, err
    warning = [line for line in out.splitlines() if "was lost mid-burst" in line]
    assert len(warning) == 1, out + err
    counts = counts_add_up(prefix)
    held = counts["python"]["in_flight"]
    assert 0 < held <= 5 and f"holding {held} requests unanswered (python {held})" in warning[0], warning
    assert counts["python"] == {"sent": 5, "answered": 5 - held, "failed": 0, "in_flight": 0 + held}
    # The other worker's postgres users sent theirs, answered; the lost one's (if Locust gave it any) never sent.
    postgres = counts.get("postgres", {"sent": 0, "answered": 0, "failed": 0, "in_flight": 0})
    assert postgres == {"sent": postgres["sent"], "answered": postgres["sent"], "failed": 0, "in_flight": 0}, counts
    never_sent = 5 - postgres["sent"]
    assert (f"its users of postgres ({never_sent}) never sent" in warning[0]) == bool(never_sent), warning
