"""`python -m lab.compare` end to end: real servers, real Locust, files, and nothing left running."""

import csv
import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest
from matplotlib import image

from lab.render import sizes
from lab.servers import ROOT

# Real Gunicorn modes, Locust runs or PostgreSQL servers: seconds each.
pytestmark = pytest.mark.slow


def marked_processes(mark):
    """Processes that inherited this run's marker: whatever the comparison started."""
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get("POOL_LAB_TEST_MARK") == mark:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def compare(database_url, *args):
    mark = uuid.uuid4().hex
    env = {**os.environ, "DATABASE_URL": database_url, "POOL_LAB_TEST_MARK": mark}
    command = [sys.executable, "-m", "lab.compare", *args]
    # As from a terminal: SIGINT at its default, even where CI's shell started us with it ignored.
    return mark, subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def read_rows(path):
    with open(path, newline="") as f:
        return {row["variant"]: row for row in csv.DictReader(f)}


def test_compare_runs_every_mode_and_writes_table_csv_and_plot(database_url, tmp_path):
    out = tmp_path / "compare"
    mark, run = compare(database_url, "--sleep-seconds", "0.3", "--out", str(out))
    output, _ = run.communicate(timeout=240)
    assert run.returncode == 0, output
    assert "[1/3] sync" in output and "[3/3] green" in output and "postgres 5/5" in output
    table = output[output.index("variant  python"):]
    assert all(mode in table for mode in ("sync", "gevent", "green"))

    rows = read_rows(f"{out}.csv")
    assert [rows[m]["python_waves"] for m in ("sync", "gevent", "green")] == ["1 1 1 1 1", "5", "5"]
    assert [rows[m]["postgres_waves"] for m in ("sync", "gevent", "green")] == ["1 1 1 1 1", "1 1 1 1 1", "5"]
    assert [rows[m]["ideal_sum_s"] for m in ("sync", "gevent", "green")] == ["3.00", "1.80", "0.60"]
    # Sums follow the original's ordering: sync slowest, green fastest.
    sums = [float(rows[m]["sum_s"]) for m in ("sync", "gevent", "green")]
    assert sums == sorted(sums, reverse=True)
    assert "| sync |" in (tmp_path / "compare.md").read_text()

    picture = image.imread(f"{out}.png")
    assert picture.ndim == 3 and picture.shape[0] > 300 and picture.shape[1] > 500
    assert marked_processes(mark) == []


def test_compare_pool_shapes_side_by_side(database_url, tmp_path):
    out = tmp_path / "pools"
    mark, run = compare(database_url, "--profile", "50-users", "--sleep-seconds", "0.3",
                        "--pools", "2+3,fair:2+3", "--out", str(out))
    output, _ = run.communicate(timeout=240)
    assert run.returncode == 0, output
    rows = read_rows(f"{out}.csv")
    assert set(rows) == {"green 2+3", "green 2+3 fair"}
    assert rows["green 2+3 fair"]["pool_class"] == "FairQueuePool"
    assert rows["green 2+3 fair"]["postgres_waves"] == sizes([5] * 10)
    assert rows["green 2+3"]["postgres_waves"].startswith("5 ")
    assert marked_processes(mark) == []


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_everything_the_comparison_started(database_url, tmp_path, stop):
    mark, run = compare(database_url, "--sleep-seconds", "1", "--out", str(tmp_path / "stopped"))
    deadline = time.monotonic() + 60
    while "sync: python" not in (line := run.stdout.readline()):
        assert line and time.monotonic() < deadline
    assert marked_processes(mark)
    run.send_signal(stop)
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 130, output
    assert "interrupted" in output
    assert marked_processes(mark) == []


def test_pool_shapes_and_the_ceiling_are_read_from_the_command_line(monkeypatch):
    from lab.compare import parse_args

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("PG_MAX_CONNECTIONS", raising=False)
    args = parse_args(["--pools", "null,5+10,fair:2+3", "--pg-max-connections", "50"])
    assert [(m.name, m.mode, m.env) for m in args.measurements] == [
        ("green null", "green", {"POOL_CLASS": "null"}),
        ("green 5+10", "green", {"POOL_SIZE": "5", "MAX_OVERFLOW": "10", "POOL_CLASS": "queue"}),
        ("green 2+3 fair", "green", {"POOL_SIZE": "2", "MAX_OVERFLOW": "3", "POOL_CLASS": "fair"})]
    assert args.pg_max_connections == 50 and "PG_MAX_CONNECTIONS" not in os.environ
    assert [m.name for m in parse_args(["--modes", "sync,nullpool"]).measurements] == ["sync", "nullpool"]
    for wrong in (["--pools", "lots"], ["--pg-max-connections", "3"], ["--use-running", "--pg-max-connections", "50"]):
        with pytest.raises(SystemExit):
            parse_args(wrong)
