"""The CPU calibration on real servers: a c from a real burst of its own, cached, and the model in a real
Locust burst's summary."""

import json
import re

import pytest

from lab import calibration
from lab.servers import free_port
from support import run_locust

# Real Gunicorn modes, Locust runs or PostgreSQL servers: seconds each.
pytestmark = pytest.mark.slow


def test_a_calibration_measures_a_positive_c_caches_it_and_measures_again_when_asked(running_mode, tmp_path):
    server = running_mode("green")
    facts = server.get_json("/pool")[1]
    measured = calibration.with_cpu_cost(facts, server.url, tmp_path)
    c = measured["calibration"]["cpu_per_request"]
    # Far above nothing, far below a sleep: a request's Python takes about half a millisecond here.
    assert 0 < c < 0.02
    assert (measured["calibration"]["workers"], measured["calibration"]["cpus"]) == (1, facts["cpus"])
    cache = json.loads((tmp_path / "calibration.json").read_text())
    assert [entry["cpu_per_request"] for entry in cache.values()] == [c]
    # Reused for every later burst of the mode, until asked to measure again.
    reused = calibration.with_cpu_cost(facts, server.url, tmp_path)["calibration"]
    assert (reused["cpu_per_request"], reused["cached"]) == (c, str(tmp_path / "calibration.json"))
    again = calibration.with_cpu_cost(facts, server.url, tmp_path, again=True)["calibration"]
    assert "cached" not in again
    # ...and the new measurement replaced the old one in the file (five new wall times, not the cached ones).
    [entry] = json.loads((tmp_path / "calibration.json").read_text()).values()
    assert entry["wall_per_request"] == again["wall_per_request"] != reused["wall_per_request"]
    # The calibration left nothing behind that the burst would meet: the pool is as it was.
    assert server.get_json("/pool")[1]["checked_out"] == 0


def test_a_failed_calibration_is_no_model_and_no_crash(running_mode, tmp_path):
    facts = running_mode("green").get_json("/pool")[1]
    failed = calibration.with_cpu_cost(facts, f"http://127.0.0.1:{free_port()}", tmp_path)
    assert failed["calibration"]["error"].startswith("the calibration burst failed (ConnectionRefusedError")
    assert not (tmp_path / "calibration.json").exists()


def test_a_burst_summary_shows_the_model_beside_the_ideal(running_mode, tmp_path):
    prefix = tmp_path / "model"
    result, _ = run_locust(running_mode("green").url, prefix, "5-users", "PythonSleepUser", "-u", "200", "-r", "100")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calibration.json").exists()
    ideal = re.search(r"ideal total ([\d.]+) s, measured/ideal ([\d.]+)", result.stdout)
    model = re.search(r"model ([\d.]+) s = ideal ([\d.]+) s \+ 200 x ([\d.]+) ms of CPU per request on 1 worker; "
                      r"measured/model ([\d.]+)", result.stdout)
    assert ideal and model, result.stdout
    assert float(model.group(2)) == float(ideal.group(1))
    assert float(model.group(1)) > float(ideal.group(1))
    assert float(model.group(4)) < float(ideal.group(2))
    print(ideal.group(0), model.group(0))
