"""Wave grouping on synthetic timings."""

import pytest

from support import facts
from lab.waves import Completion, group_waves, predict


def at(*times, failed=()):
    return [Completion("postgres", t, "pool_timeout" if i in failed else None) for i, t in enumerate(times)]


def sizes(waves):
    return [w.size for w in waves]


def test_serial_completions_are_waves_of_one():
    assert sizes(group_waves(at(1.0, 2.01, 3.0, 4.02, 5.0), 1.0)) == [1, 1, 1, 1, 1]


def test_overlapped_completions_are_one_wave():
    waves = group_waves(at(1.003, 1.0, 1.02, 1.01, 1.004), 1.0)
    assert sizes(waves) == [5]
    assert (waves[0].first, waves[0].last, waves[0].number) == (1.0, 1.02, 1)


def test_uneven_waves_are_kept_as_measured():
    times = [1.0] * 15 + [2.0] * 9 + [3.0] * 14 + [4.05] * 12
    waves = group_waves(at(*times), 1.0)
    assert sizes(waves) == [15, 9, 14, 12]
    assert [w.number for w in waves] == [1, 2, 3, 4]


def test_failures_are_counted_in_their_wave():
    waves = group_waves(at(1.0, 1.01, 2.0, 2.02, failed={1, 3}), 1.0)
    assert [(w.size, w.failures) for w in waves] == [(2, 1), (2, 1)]


def test_a_gap_of_half_the_sleep_still_joins_a_wave():
    assert sizes(group_waves(at(1.0, 1.5, 2.01), 1.0)) == [2, 1]


def test_zero_sleep_is_one_wave_and_nothing_is_no_wave():
    assert sizes(group_waves(at(0.01, 0.3, 0.9), 0)) == [3]
    assert group_waves([], 1.0) == []


def test_predictions_per_mode_and_endpoint():
    def sizes_and_ideal(endpoint, mode, n=100, d=1.0, pool=(5, 10)):
        prediction = predict(endpoint, n, d, facts(mode, *pool))
        return prediction.wave_sizes, prediction.ideal_total

    assert sizes_and_ideal("python", "sync", n=5, d=5) == ((1,) * 5, 25)
    assert sizes_and_ideal("postgres", "gevent", n=5, d=5) == ((1,) * 5, 25)
    assert sizes_and_ideal("python", "gevent", n=5, d=5) == ((5,), 5)
    assert sizes_and_ideal("python", "green") == ((100,), 1)
    assert sizes_and_ideal("postgres", "green") == ((15,) * 6 + (10,), 7)
    assert sizes_and_ideal("postgres", "green", n=15) == ((15,), 1)
    assert sizes_and_ideal("postgres", "green", n=4, pool=(2, 3)) == ((4,), 1)
    assert predict("postgres", 12, 0.5, facts("green", 15, 0)).reason.endswith("pool_size 15 + max_overflow 0")


def test_predictions_for_threads_come_from_the_thread_count():
    def sizes(endpoint, n, threads, pool=(5, 10)):
        return predict(endpoint, n, 1.0, {**facts("threads", *pool), "worker_concurrency": threads}).wave_sizes

    assert sizes("python", 5, 8) == (5,)
    assert sizes("postgres", 5, 8) == (5,)
    # Past the thread count: waves of T for both endpoints, while T is below the pool limit.
    assert sizes("python", 100, 8) == (8,) * 12 + (4,)
    assert sizes("postgres", 100, 8) == (8,) * 12 + (4,)
    # Past the pool: waves of min(T, P).
    assert sizes("postgres", 100, 30) == (15,) * 6 + (10,)
    assert sizes("python", 100, 30) == (30,) * 3 + (10,)
    assert predict("python", 9, 1.0, facts("threads")).reason == "overlapped: ThreadWorker runs up to 8 requests at once"


def test_psycopg3_predicts_as_green_does_from_the_same_facts():
    for endpoint, n in (("python", 5), ("postgres", 5), ("python", 100), ("postgres", 100)):
        assert predict(endpoint, n, 1.0, facts("psycopg3")) == predict(endpoint, n, 1.0, facts("green"))


def test_pools_larger_than_the_database_accepts_predict_refusals_as_nullpool_does():
    ceiling = {"accepts": 49, "max_connections": 50, "open_connections": 1}
    eight = {**facts("green"), "workers": 8, "db": ceiling}
    # 8 workers x 15: spread evenly, 120 ask at once; the database takes 49 and refuses the rest at once.
    prediction = predict("postgres", 150, 1.0, eight)
    assert (prediction.wave_sizes, prediction.refused, prediction.ideal_total) == ((101, 49), 101, 1.0)
    assert "it accepts 49 more connections" in prediction.reason and "8 workers' pools" in prediction.reason
    # Within what the database accepts: the pools' waves, with the risk named.
    below = predict("postgres", 40, 1.0, eight)
    assert below.wave_sizes == (40,) and not below.refused and "expect refusals" in below.reason
    # One worker's pool of 15 never reaches 49: waves of the pool, however large the burst.
    one = predict("postgres", 150, 1.0, {**facts("green"), "db": ceiling})
    assert one.wave_sizes == (15,) * 10 and not one.refused and "expect refusals" not in one.reason
    # NullPool as before: every request asks at once.
    null = {**facts("green"), "pool_size": None, "max_overflow": None, "pool_limit": None, "db": ceiling}
    assert predict("postgres", 150, 1.0, null).wave_sizes == (101, 49)


def calibrated(mode, c, workers=1, cpus=2, **pool):
    return {**facts(mode, **pool), "workers": workers, "cpus": cpus,
            "calibration": {"cpu_per_request": c, "measured_as": "cpu"}}


def test_the_cpu_model_adds_n_times_c_to_the_ideal_on_one_worker():
    prediction = predict("python", 1000, 1.0, calibrated("green", 0.0004))
    assert prediction.ideal_total == 1.0
    assert prediction.model_total == pytest.approx(1.4)
    assert prediction.model_explained() == (
        "model 1.40 s = ideal 1.00 s + 1000 x 0.40 ms of CPU per request on 1 worker")


def test_the_cpu_model_spreads_over_the_workers_but_no_more_than_the_cores():
    def cpu(workers, cpus):
        return predict("python", 10_000, 5.0, calibrated("green", 0.0004, workers, cpus)).cpu_total

    assert cpu(1, 2) == pytest.approx(4.0)
    assert cpu(2, 2) == pytest.approx(2.0)
    assert cpu(4, 2) == pytest.approx(2.0)  # four workers take turns on two cores
    assert cpu(4, 8) == pytest.approx(1.0)
    assert predict("python", 10, 1.0, calibrated("green", 0.001, 4, 2)).model_explained().endswith(
        "10 x 1.00 ms of CPU per request over 4 workers on 2 cores")


def test_where_c_is_tiny_beside_d_the_model_stays_the_ideal():
    for endpoint, mode, n, d in (("python", "sync", 5, 1.0), ("postgres", "green", 5, 1.0),
                                 ("postgres", "green", 100, 1.0)):
        prediction = predict(endpoint, n, d, calibrated(mode, 0.0005))
        assert prediction.ideal_total < prediction.model_total < 1.01 * prediction.ideal_total


def measured(mode, c, before, load=None, load_before=None, processes=1, local=True, workers=1, cpus=2,
             release=None):
    """Facts with a CPU calibration of the workers' CPU (c, `before` of it before the sleep) and the load
    generator's (`release` of it to release each request), sending from `processes` processes, on the
    server's machine (`local`) or not."""
    # As the 10,000 case's servers: WORKER_CONNECTIONS 10000, so no burst here is cut into waves of 1000.
    concurrency = {"worker_concurrency": 10_000} if mode == "green" else {}
    return {**facts(mode), **concurrency, "workers": workers, "cpus": cpus,
            "calibration": {"cpu_per_request": c, "cpu_before_sleep": before, "load_cpu_per_request": load,
                            "load_cpu_before_sleep": load_before, "load_cpu_release": release,
                            "measured_as": "cpu"},
            "load_generator": {"processes": processes, "local": local}}


def test_one_overlapped_wave_pays_the_slower_half_of_c_and_later_waves_all_of_it():
    # One wave of 1000: the Python before the sleep (0.1 ms) and the answers' (0.3 ms) each run one after
    # another, a sleep apart: the slower half delays the last answer.
    one = predict("python", 1000, 1.0, measured("green", 0.0004, 0.0001))
    assert one.cpu_total == pytest.approx(0.3)
    assert one.model_explained() == ("model 1.30 s = ideal 1.00 s + 1000 x 0.40 ms of CPU per request on 1 worker "
                                     "(0.10 ms of it before the sleep)")
    # Waves of 1 (sync) pay every request's whole c, one after another.
    assert predict("python", 100, 1.0, measured("sync", 0.0004, 0.0001)).cpu_total == pytest.approx(0.04)
    # Waves of the pool limit (15): the first wave its slower half, each later request its whole c.
    pooled = predict("postgres", 100, 1.0, measured("green", 0.0004, 0.0001))
    assert pooled.wave_sizes[0] == 15 and pooled.cpu_total == pytest.approx(15 * 0.0003 + 85 * 0.0004)
    # Python that outlasts its sleep keeps the worker busy from the first request to the last answer:
    # all of c but the sleep it overlapped (0.4 s - 0.05 s), more than the slower half...
    assert predict("python", 1000, 0.05, measured("green", 0.0004, 0.0001)).cpu_total == pytest.approx(0.35)
    # ...and the two agree where they meet (0.4 s - 0.1 s = 0.3 s): no jump as c grows past the sleep.
    assert predict("python", 1000, 0.1, measured("green", 0.0004, 0.0001)).cpu_total == pytest.approx(0.3)
    assert predict("python", 1000, 0.1, measured("green", 0.00041, 0.0001)).cpu_total == pytest.approx(0.31)
    assert predict("python", 1000, 1.0, measured("green", 0.0004, None)).cpu_total == pytest.approx(0.4)


def test_the_load_generator_and_the_workers_share_the_cores_they_run_on():
    def model(**topology):
        return predict("python", 10_000, 5.0, measured("green", 0.0004, 0.0002, 0.0002, 0.0001, **topology))

    # One worker, one Locust process, two cores: each has a core; the server's 2 s is the longer.
    alone = model()
    assert alone.cpu_total == pytest.approx(2.0) and alone.cpu_decided_by == "the server's CPU on 1 worker"
    # Two workers and two Locust processes on two cores: all of it takes turns on the two cores.
    shared = model(workers=2, processes=2)
    assert shared.cpu_total == pytest.approx((2.0 + 1.0) / 2)
    assert shared.cpu_decided_by == "the server's and the load generator's CPU sharing 2 cores"
    assert shared.model_explained().endswith(
        "(0.20 ms of it before the sleep; the load generator 0.20 ms per request in 2 processes, sharing 2 cores "
        "with the server; the longest: the server's and the load generator's CPU sharing 2 cores)")
    # A load generator on another machine takes nothing from the server's cores.
    assert model(workers=2, processes=2, local=False).cpu_total == pytest.approx(1.0)
    # One Locust process slower than the server: its own CPU is what delays the last answer.
    slow = predict("python", 1000, 1.0, measured("green", 0.0002, 0.0001, 0.0006, 0.0004, workers=2))
    assert slow.cpu_total == pytest.approx(0.4)
    assert slow.cpu_decided_by == "the load generator's CPU in 1 process"


def test_the_load_generator_releases_every_request_before_the_server_reads_any():
    # gevent runs each user woken at its gate up to its first wait, one after another: 1000 x 0.2 ms
    # before the first request reaches the server, then the rest of both sides' CPU as before, the
    # load generator's without its release (0.4 ms, 0.2 of it before the sleep).
    def model(**topology):
        return predict("python", 1000, 1.0, measured("green", 0.0004, 0.0001, 0.0006, 0.0004, release=0.0002,
                                                      **topology))

    one = model()
    assert one.release_cpu == pytest.approx(0.2)
    assert one.cpu_total == pytest.approx(0.2 + 0.3)  # the release, then the server's slower half
    assert one.model_explained() == (
        "model 1.50 s = ideal 1.00 s + 1000 x 0.40 ms of CPU per request on 1 worker (0.10 ms of it before the "
        "sleep; the load generator 0.60 ms per request in 1 process, 0.20 ms of it releasing each request before "
        "the server reads any (0.20 s first), sharing 2 cores with the server; the longest: the server's CPU on "
        "1 worker)")
    # Two Locust processes release their halves at once.
    assert model(processes=2).release_cpu == pytest.approx(0.1)
    # A release that is not measured (a calibration of another kind) adds nothing.
    assert predict("python", 1000, 1.0, measured("green", 0.0004, 0.0001, 0.0006, 0.0004)).cpu_total == (
        pytest.approx(0.4))


def test_a_c_from_wall_time_says_so():
    wall = {**facts("green"), "cpus": 2, "calibration": {"cpu_per_request": 0.0005}}
    assert predict("python", 10, 1.0, wall).model_explained().endswith(
        "on 1 worker (c from the calibration's wall time, not the workers' CPU)")


def test_without_a_calibration_there_is_no_model_and_it_says_why():
    assert predict("python", 5, 1.0, facts("green")).model_total is None
    assert predict("python", 5, 1.0, facts("green")).model_explained() == "model: unavailable (no CPU calibration)"
    failed = {**facts("green"), "calibration": {"error": "the calibration burst failed (ConnectionRefusedError)"}}
    assert predict("python", 5, 1.0, failed).model_explained() == (
        "model: unavailable (the calibration burst failed (ConnectionRefusedError))")
