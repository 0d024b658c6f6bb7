"""The CPU calibration on real servers: a c from a real burst of its own, cached, and the model in a real
Locust burst's summary."""

import json
import re
import statistics

import psutil
import pytest

import support

from lab import calibration
from lab.servers import free_port
from support import run_locust

# Real Gunicorn modes, Locust runs or PostgreSQL servers: seconds each, marked slow one by one.
slow = pytest.mark.slow


def test_an_entry_from_before_the_cpu_model_is_measured_again_not_reused(tmp_path):
    facts = {**support.facts("green"), "cpus": 2, "pid": 1}
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens: measuring again fails at once, and says so
    old = {"cpu_per_request": 0.0006, "requests": 300, "rounds": 5, "wall_per_request": [0.0006] * 5, "workers": 1}
    (tmp_path / "calibration.json").write_text(json.dumps({calibration.cache_key(host, facts): old}))
    again = calibration.with_cpu_cost(facts, host, tmp_path)["calibration"]
    assert again["error"].startswith("the calibration burst failed (ConnectionRefusedError")
    # The old file is left as it was, for nothing new was measured.
    assert json.loads((tmp_path / "calibration.json").read_text()) == {calibration.cache_key(host, facts): old}


@slow
def test_c_is_the_workers_cpu_time_over_the_requests_and_its_part_before_the_sleep_less(running_mode):
    server = running_mode("green")
    facts = server.get_json("/pool")[1]
    worker = psutil.Process(facts["pid"])
    [found] = calibration.worker_processes(server.url, facts)
    assert found.pid == worker.pid
    before = sum(worker.cpu_times()[:2])
    measured = calibration.measure(server.url, facts, requests=200, rounds=3)
    spent = sum(worker.cpu_times()[:2]) - before
    assert measured["measured_as"] == "cpu" and measured["sleep_s"] == calibration.SPLIT_SLEEP
    # The workers' CPU over the rounds' requests, as psutil counts it (in 10 ms ticks), give or take the
    # rounds' spread and the one request before them.
    assert statistics.median(measured["server_cpu_per_request"]) == pytest.approx(measured["cpu_per_request"], rel=1e-3)
    assert sum(measured["server_cpu_per_request"]) * 200 == pytest.approx(spent, rel=0.25, abs=0.02)
    # Part of each request's Python runs before its sleep, and part after: neither is all of it.
    assert 0 < measured["cpu_before_sleep"] < measured["cpu_per_request"]
    assert 0 < measured["load_cpu_before_sleep"] < measured["load_cpu_per_request"]
    # Releasing the requests (up to their first wait) is part of the load generator's CPU before the sleep.
    assert 0 < measured["load_cpu_release"] < measured["load_cpu_before_sleep"]
    # A server elsewhere has no CPU to read here: then c is the wall time, and says so.
    assert calibration.worker_processes(server.url.replace("127.0.0.1", "192.0.2.1"), facts) == []


@slow
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


@slow
def test_a_failed_calibration_is_no_model_and_no_crash(running_mode, tmp_path):
    facts = running_mode("green").get_json("/pool")[1]
    failed = calibration.with_cpu_cost(facts, f"http://127.0.0.1:{free_port()}", tmp_path)
    assert failed["calibration"]["error"].startswith("the calibration burst failed (ConnectionRefusedError")
    assert not (tmp_path / "calibration.json").exists()


@slow
def test_a_burst_summary_shows_the_model_beside_the_ideal(running_mode, tmp_path, monkeypatch):
    monkeypatch.delenv("LOCUST_CALIBRATION_FILE")  # the default: calibration.json beside the CSV files
    prefix = tmp_path / "model"
    result, _ = run_locust(running_mode("green").url, prefix, "5-users", "PythonSleepUser", "-u", "200", "-r", "100")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calibration.json").exists()
    ideal = re.search(r"ideal total ([\d.]+) s, measured/ideal ([\d.]+)", result.stdout)
    model = re.search(r"model ([\d.]+) s = ideal ([\d.]+) s \+ 200 x ([\d.]+) ms of CPU per request on 1 worker "
                      r"\(([\d.]+) ms of it before the sleep; the load generator [\d.]+ ms per request in 1 process, "
                      r"([\d.]+) ms of it releasing each request before the server reads any \(([\d.]+) s first\), "
                      r"sharing \d+ cores with the server; the longest: [^)]+\); measured/model ([\d.]+)", result.stdout)
    assert ideal and model, result.stdout
    assert float(model.group(2)) == float(ideal.group(1))
    assert float(model.group(1)) > float(ideal.group(1))
    assert float(model.group(7)) < float(ideal.group(2))
    assert float(model.group(4)) < float(model.group(3))
    # The release: 200 users woken one after another, each its share of a millisecond.
    assert 0 < float(model.group(5)) < 1 and float(model.group(6)) == pytest.approx(200 * float(model.group(5)) / 1000,
                                                                                    abs=0.006)
    print(ideal.group(0), model.group(0))
