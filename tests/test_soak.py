"""The benchmark's soak case, run short on a real green mode and a real Locust steady run."""

import json
import os
import subprocess
import sys

import pytest

from lab.servers import ROOT


@pytest.mark.slow
def test_a_short_soak_reports_its_counts_memory_and_idle_pool(database_url, tmp_path):
    out = tmp_path / "soak"
    done = subprocess.run([sys.executable, "-m", "lab.benchmark", "--case", "green-soak", "--soak-seconds", "6",
                           "--out", str(out)], cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url},
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    [row] = json.loads(out.with_suffix(".json").read_text())["cases"]
    assert (row["case"], row["kind"], row["seconds"], row["locust_exit"]) == ("green-soak", "soak", 6, 0)
    # Both endpoints answered, none failed: what Locust itself counted, in its final statistics.
    assert set(row["per_endpoint"]) == {"python", "postgres"}
    assert all(c["requests"] > 0 and c["failures"] == 0 for c in row["per_endpoint"].values())
    assert row["requests"] == sum(c["requests"] for c in row["per_endpoint"].values())
    # The run filled the pool past its one warm connection; once stopped nothing is out, and every backend it
    # opened is closed but those the pool keeps.
    before, after = row["pool_before"], row["pool_after"]
    assert after["checked_out"] == 0 and before["open_connections"] < after["open_connections"] <= after["pool_size"]
    assert after["backends"] - before["backends"] == after["open_connections"] - before["open_connections"]
    assert 0 < row["rss_mib"]["before"] <= row["rss_mib"]["end"] * 1.5
    # Its verdict follows from the figures; the memory target is the benchmark's to judge, not this test's.
    assert row["verdict"] == "met" or row["verdict"].startswith("MISSED: memory growth")
    assert done.returncode == (0 if row["met"] else 1)
    assert "green-soak: 6 s steady on green, 60 users" in done.stdout
