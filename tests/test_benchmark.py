"""The benchmark's split of a total's excess over the ideal, on synthetic timings."""

import pytest

from support import facts
from lab.benchmark import CASES, bare_row, excess_by_part, meets, model_miss, physical_limit, target_text
from lab.waves import predict


def test_excess_parts_add_up_to_total_minus_ideal_for_python():
    timings = [{"sent": 100.0, "done": 101.05, "server_started": 100.01, "server_finished": 101.04,
                "pool_wait": "", "query_seconds": ""},
               {"sent": 100.02, "done": 101.3, "server_started": 100.2, "server_finished": 101.29,
                "pool_wait": "", "query_seconds": ""}]
    parts = excess_by_part(timings, predict("python", 2, 1.0, facts("green")))
    assert parts == {"load_generator_sending": 0.02, "server_queueing_beyond_earlier_waves": 0.18,
                     "server_sleep_overrun": 0.09, "response_server_write_and_load_generator_read": 0.01}
    assert sum(parts.values()) == pytest.approx(1.3 - 1.0)


def test_a_pooled_request_waits_its_earlier_waves_before_any_excess():
    # Second wave of a pool of 1: it waited one whole sleep for its connection, as predicted.
    timings = [{"sent": 0.0, "done": 2.1, "server_started": 0.01, "server_finished": 2.09,
                "pool_wait": 1.02, "query_seconds": 1.04}]
    parts = excess_by_part(timings, predict("postgres", 2, 1.0, facts("green", 1, 0)))
    assert parts["server_queueing_beyond_earlier_waves"] == pytest.approx(0.03)
    assert parts["database_pg_sleep_overrun"] == pytest.approx(0.04)
    assert parts["server_rest_of_handler"] == pytest.approx(0.02)
    assert sum(parts.values()) == pytest.approx(2.1 - 2.0)


def test_a_target_on_the_model_is_two_sided_and_on_the_ideal_a_ceiling():
    # 6% over and 6% under both miss a tolerance of 0.05; 4% either way meets it.
    assert [meets(0.05, "model", ratio) for ratio in (1.06, 0.94, 1.04, 0.96, 1.0)] == [False, False, True, True, True]
    # The ideal is a floor no burst goes below: its target is a ceiling only.
    assert [meets(1.03, "ideal", ratio) for ratio in (1.04, 1.02, 0.9)] == [False, True, True]
    assert (target_text(0.05, "model"), target_text(1.03, "ideal"), target_text(1.25, "bare")) == (
        "±0.05 model", "1.03 ideal", "1.25 bare")


def test_every_case_on_the_model_lists_its_two_sided_tolerance():
    on_the_model = {c.name: c.target for c in CASES if c.judged_by == "model"}
    assert on_the_model == {"green-python-1000": 0.05, "bouncer-postgres-100": 0.05, "green-python-10000": 0.10}


def test_a_miss_of_the_model_says_which_side_and_a_model_too_high_names_its_part():
    prediction = predict("python", 1000, 1.0, {**facts("green"), "cpus": 2, "calibration": {
        "cpu_per_request": 0.0004, "cpu_before_sleep": 0.0001, "measured_as": "cpu"}})
    assert prediction.model_total == pytest.approx(1.3)
    assert model_miss(prediction, 1.3 * 1.06) == "6% over the model"
    assert model_miss(prediction, 1.3 / 1.06) == (
        "the model is 6% higher than this run: its CPU, 0.30 s (the server's CPU on 1 worker), is more than this "
        "run's 0.23 s beyond the ideal")


def test_a_miss_of_the_model_names_the_measured_part_furthest_from_it_on_the_side_it_fell():
    # The release (0.2 s) is how late the load generator sends the last request, the rest of the model's CPU
    # (the server's slower half, 0.3 s) how long the server holds it; the model counts no sleep overrun.
    prediction = predict("python", 1000, 1.0, {**facts("green"), "cpus": 2, "workers": 1, "calibration": {
        "cpu_per_request": 0.0004, "cpu_before_sleep": 0.0001, "load_cpu_per_request": 0.0006,
        "load_cpu_before_sleep": 0.0004, "load_cpu_release": 0.0002, "measured_as": "cpu"},
        "load_generator": {"processes": 1, "local": True}})
    assert prediction.model_total == pytest.approx(1.5)
    slow_release = {"load_generator_sending": 0.35, "server_queueing_beyond_earlier_waves": 0.32,
                    "server_sleep_overrun": 0.01}
    assert model_miss(prediction, 1.68, slow_release) == (
        "12% over the model: the part furthest off is load generator sending, 350 ms against the model's 200 ms")
    overrun = {"load_generator_sending": 0.2, "server_queueing_beyond_earlier_waves": 0.3, "server_sleep_overrun": 0.1}
    assert model_miss(prediction, 1.6, overrun).endswith("server sleep overrun, 100 ms against the model's 0 ms")
    fast_server = {"load_generator_sending": 0.19, "server_queueing_beyond_earlier_waves": 0.15,
                   "server_sleep_overrun": 0.0}
    assert model_miss(prediction, 1.34, fast_server) == (
        "the model is 12% higher than this run: its CPU, 0.50 s (the load generator's release, then the server's "
        "CPU on 1 worker), is more than this run's 0.34 s beyond the ideal: the part furthest off is server "
        "queueing beyond earlier waves, 150 ms against the model's 300 ms")


def test_a_bare_case_is_the_lab_cpu_over_the_bare_apps_and_the_limit_spreads_the_bare_cpu():
    [case] = [c for c in CASES if c.name == "bare-python-100"]

    def side(c, before=None):
        return {"cpu_per_request": c, "cpu_before_sleep": before}

    assert bare_row(case, {"lab": side(0.00031), "bare": side(0.00025)})["verdict"] == "met"
    assert bare_row(case, {"lab": side(0.00035), "bare": side(0.00025)})["verdict"] == (
        "MISSED: the lab's handler costs 40% more CPU than the bare app's")
    # The limit: the ideal plus the bare app's CPU of the nearest N, by the model's wave arithmetic.
    bare = [{"requests": 1, "bare": side(0.0003)}, {"requests": 1000, "bare": side(0.0002, 0.00012)}]
    two_workers = {**facts("green"), "worker_concurrency": 10_000, "workers": 2, "cpus": 2}
    assert physical_limit(predict("python", 10_000, 5.0, two_workers), two_workers, bare) == pytest.approx(5.0 + 10_000 * 0.00012 / 2)
    sync = {**facts("sync"), "cpus": 2}
    assert physical_limit(predict("python", 5, 1.0, sync), sync, bare) == pytest.approx(5.0 + 5 * 0.0003)
    assert physical_limit(predict("python", 5, 1.0, sync), sync, []) is None
    # A bare burst with no part before its sleep read: its c split as the lab's calibration split the lab's
    # (half of 0.2 ms before the sleep), not all of it counted, which would put the limit above the model.
    calibrated = {**facts("green"), "cpus": 2, "calibration": {"cpu_per_request": 0.0004, "cpu_before_sleep": 0.0002,
                                                                "measured_as": "cpu"}}
    unsplit = [{"requests": 1000, "bare": side(0.0002)}]
    assert physical_limit(predict("python", 1000, 1.0, calibrated), calibrated, unsplit) == pytest.approx(1.0 + 0.1)


@pytest.mark.slow
def test_the_bare_cases_measure_both_servers_cpu_per_request_side_by_side(tmp_path):
    """A short run of the bare group (fewer rounds, N = 1 and 50): real Gunicorn servers, both measured."""
    from lab import bare
    from lab.database import database_url

    with bare.Servers("green", {"DATABASE_URL": database_url()}, tmp_path) as servers:
        assert servers.bare.get("/sleep/python/?seconds=0")[0] == 200
        [worker] = bare.workers_of(servers.bare)
        one = bare.measure(1, 0.3, servers.lab, servers.bare, rounds=1)
        fifty = bare.measure(50, 0.3, servers.lab, servers.bare, rounds=2)
    for measured in (one, fifty):
        for side in ("lab", "bare"):
            # Far above nothing, far below a sleep: a request's Python takes about a quarter of a millisecond.
            assert 0.00002 < measured[side]["cpu_per_request"] < 0.01, measured
    # At N = 50 the burst slept, so the part of each request's CPU before its sleep was read, and is less.
    assert 0 < fifty["bare"]["cpu_before_sleep"] < fifty["bare"]["cpu_per_request"]
    assert not worker.is_running()  # stopped with the run
