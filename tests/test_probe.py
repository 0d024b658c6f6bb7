"""The concurrency probe on real modes: a known limit found within one and named from /pool, a probe
that gets only failures saying so, and the probe across --processes 2."""

import json
import subprocess
import sys

import pytest

from lab.servers import ROOT, free_port
from support import SLEEP, read_csv

# Real Gunicorn modes and Locust runs: seconds each.
pytestmark = pytest.mark.slow


def probe(host, prefix, *args, cwd=ROOT):
    """A headless probe (profiles/probe.conf) with the suite's sleep and short steps."""
    return subprocess.run([sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--config",
                           str(ROOT / "profiles" / "probe.conf"), "-H", host, "--sleep-seconds", str(SLEEP),
                           "--step-seconds", "1", "--csv", str(prefix), "--master-bind-host", "127.0.0.1", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=150)


def test_a_probe_finds_the_threads_modes_limit_of_8_on_both_endpoints_and_names_it(running_mode, tmp_path):
    prefix = tmp_path / "threads"
    result = probe(running_mode("threads").url, prefix, "-u", "16", "--probe-steps", "1,4,8,16")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pool-lab probe on the threads mode" in out
    assert "steps of 1, 4, 8, 16 users, each measured for 1 s (--step-seconds)" in out
    rows = read_csv(f"{prefix}_probe.csv")
    assert list(rows[0])[:7] == ["endpoint", "users", "requests", "throughput_rps", "median_ms", "p95_ms", "failures"]
    assert [(r["endpoint"], r["users"]) for r in rows] == [(e, n) for e in ("python", "postgres")
                                                           for n in ("1", "4", "8", "16")]
    assert {r["failures"] for r in rows} == {"0"}
    for row in rows:
        # Closed loop: every user has its one request in flight when the step ends.
        assert int(row["in_flight"]) == int(row["users"]), row
        # Every count adds up, for the endpoint so far at the step's end.
        assert int(row["sent"]) == int(row["answered_so_far"]) + int(row["failed_so_far"]) + int(row["in_flight"]), row
    entry = json.loads(prefix.with_name("threads_result.json").read_text())["probe"]
    for endpoint in ("python", "postgres"):
        assert entry[endpoint]["shape"] == "hard limit", entry[endpoint]
        assert abs(entry[endpoint]["limit"] - 8) <= 1, entry[endpoint]
        assert entry[endpoint]["cause"].startswith("limit 8: ThreadWorker runs up to 8 requests at once")
        steps = {s["users"]: s for s in entry[endpoint]["steps"]}
        # Past the limit, latency grows in proportion to the users: 16 users wait twice as long as 8.
        assert 1.6 < steps[16]["median_ms"] / steps[8]["median_ms"] < 2.4, steps
        # The 8 threads: 8 users answer 8 times what 1 does, 16 no more than 8.
        assert 6 < steps[8]["throughput_rps"] / steps[1]["throughput_rps"] < 9, steps
        assert 0.85 < steps[16]["throughput_rps"] / steps[8]["throughput_rps"] < 1.15, steps
    assert out.count("(from /pool; agrees with the probe's") == 2
    assert prefix.with_name("threads_probe.png").stat().st_size > 10_000


def test_a_probe_that_gets_only_failures_says_so_and_infers_nothing(running_mode, tmp_path):
    # The bouncer mode with DATABASE_URL but no POOLER_URL: every postgres request is a 503 pooler_unavailable.
    prefix = tmp_path / "failing"
    result = probe(running_mode("bouncer").url, prefix, "-u", "2", "PostgresSleepUser")
    # Locust's own exit code of a run with failures.
    assert result.returncode == 1, result.stderr
    assert "postgres: no limit inferred" in result.stdout
    assert "no request was answered (pooler_unavailable " in result.stdout
    assert "limit " not in result.stdout.split("postgres: no limit inferred")[1]
    rows = read_csv(f"{prefix}_probe.csv")
    assert [r["users"] for r in rows] == ["1", "2"] and all(int(r["failures"]) > 0 for r in rows)
    assert all(r["failures"] == r["requests"] and r["throughput_rps"] == "0.000" for r in rows)
    assert {r["failures_by_cause"].split(" ")[0] for r in rows} == {"pooler_unavailable"}
    entry = json.loads(prefix.with_name("failing_result.json").read_text())["probe"]
    assert list(entry) == ["postgres"]
    assert (entry["postgres"]["shape"], entry["postgres"]["limit"], entry["postgres"]["cause"]) == (
        "no answers", None, None)


def test_a_probe_across_two_processes_counts_both_workers(running_mode, tmp_path):
    prefix = tmp_path / "out" / "two"
    port = str(free_port())
    result = probe(running_mode("threads").url, prefix, "-u", "16", "--probe-steps", "1,8,16", "PythonSleepUser",
                   "--processes", "2", "--master-bind-port", port, "--master-port", port, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("pool-lab probe on the threads mode") == 1
    rows = {int(r["users"]): r for r in read_csv(f"{prefix}_probe.csv")}
    assert list(rows) == [1, 8, 16]
    # Both workers' users, as the master's statistics aggregate them: 16 users in flight at the end.
    assert [int(r["in_flight"]) for r in rows.values()] == [1, 8, 16]
    entry = json.loads(prefix.with_name("two_result.json").read_text())["probe"]["python"]
    assert entry["shape"] == "hard limit" and abs(entry["limit"] - 8) <= 1, entry
    # Nothing written by the workers: the master writes the one report.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("option, value, words", [
    ("--probe-steps", "4,2", "--probe-steps must increase from at least 1 user, such as 1,2,4,8; got '4,2'"),
    ("--probe-steps", "1,x", "--probe-steps must be whole numbers of users, such as 1,2,4,8; got '1,x'"),
    ("--step-seconds", "0", "--step-seconds must be above 0, got '0'"),
    ("--step-seconds", "abc", "--step-seconds must be a number, got 'abc'"),
])
def test_a_bad_probe_option_is_refused_in_one_line_before_anything_is_sent(tmp_path, option, value, words):
    # Refused before the host is even asked: nothing listens at port 9 of the discard service.
    result = probe("http://127.0.0.1:9", tmp_path / "bad", option, value)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"pool-lab: {words}"
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())
