"""lab.probe on steps made by hand: the limit by Little's law, the shape, the USL fit, the cause from
/pool's facts, and the options' checks. No server."""

from collections import Counter

import pytest

from contract import BadParameter
from lab.probe import (CONTENTION, HARD_LIMIT, NO_ANSWERS, NONE_REACHED, Step, cause, default_step_seconds,
                       default_steps, infer, parse_steps, usl)
from lab.probe_report import format_probe, verdict_lines
from support import facts


def closed_loop(users, limit, service_s, endpoint="postgres", seconds=4.0):
    """What a server that runs `limit` requests at once, each `service_s` long, answers `users` closed-loop users."""
    throughput = min(users, limit) / service_s
    latency = service_s * max(1, users / limit)
    return Step(endpoint, users, seconds, round(throughput * seconds), throughput, round(latency * 1000),
                round(latency * 1000 * 1.05), Counter(), 0, users)


def steps_of(limit, users=(1, 2, 4, 8, 16, 32, 64), service_s=0.5, **kwargs):
    return [closed_loop(n, limit, service_s, **kwargs) for n in users]


def test_the_default_steps_double_up_to_the_users_which_come_last():
    assert default_steps(1) == [1]
    assert default_steps(16) == [1, 2, 4, 8, 16]
    assert default_steps(1000) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    assert default_step_seconds(0.5) == 2.0 and default_step_seconds(1) == 4.0 and default_step_seconds(None) == 2.0


@pytest.mark.parametrize("raw", ["", "1,,2", "a,b", "0,1", "2,1", "1,1", "1.5,2", "-1"])
def test_bad_steps_are_refused_naming_the_option(raw):
    with pytest.raises(BadParameter, match="--probe-steps"):
        parse_steps(raw)


def test_steps_as_given():
    assert parse_steps(" 1, 3,9 ") == [1, 3, 9]


@pytest.mark.parametrize("limit", [1, 7, 8, 15, 16, 30])
def test_a_hard_limit_is_found_within_one_and_named_so(limit):
    inference = infer("postgres", steps_of(limit))
    assert inference.shape == HARD_LIMIT
    assert abs(inference.rounded - limit) <= 1 and abs(inference.limit - limit) < 0.5
    assert inference.usl is None and "knee" in inference.usl_note
    assert inference.alone_ms == 500


def test_throughput_still_growing_at_the_last_step_is_no_limit_reached_with_a_lower_bound():
    inference = infer("python", steps_of(1000, users=(1, 2, 4, 8, 16)))
    assert inference.shape == NONE_REACHED
    assert inference.rounded == 16
    assert (inference.as_dict()["limit"], inference.as_dict()["at_least"]) == (None, 16)
    assert inference.evidence == ("throughput still growing at the last step: 16.0/s at 8 users, then 32.0/s at "
                                  "16 users")
    assert verdict_lines(inference, None)[0] == "python: no limit reached by 16 users (16.0 at once at its peak)"


def test_throughput_that_grows_far_less_than_the_users_is_a_limit_reached_at_the_last_step():
    # threads' postgres: 8 users open overflow connections again each round; 16 keep the 8 threads busy.
    steps = [closed_loop(1, 8, 0.5), Step("postgres", 8, 2.0, 25, 12.3, 520, 540),
             Step("postgres", 16, 2.0, 32, 15.8, 1100, 1200)]
    inference = infer("postgres", steps)
    assert (inference.shape, inference.rounded) == (HARD_LIMIT, 8)


def test_contention_is_throughput_falling_past_its_peak_and_the_usl_fit_finds_it():
    # A smooth curve made from the USL itself: the fit gives its coefficients back, and its peak.
    lam, sigma, kappa = 10.0, 0.05, 0.002
    users = (1, 2, 4, 8, 16, 32, 64, 128)
    steps = [Step("python", n, 4.0, round(usl(n, lam, sigma, kappa) * 4), usl(n, lam, sigma, kappa),
                  round(n / usl(n, lam, sigma, kappa) * 1000), None) for n in users]
    inference = infer("python", steps)
    assert inference.shape == CONTENTION
    assert inference.usl is not None and inference.usl.r2 > 0.99
    assert inference.usl.sigma == pytest.approx(sigma, rel=0.05)
    assert inference.usl.kappa == pytest.approx(kappa, rel=0.05)
    assert inference.usl.peak_users == pytest.approx(((1 - sigma) / kappa) ** 0.5, rel=0.05)
    assert "falls past its peak" in inference.evidence


def test_a_curve_still_growing_gets_a_usl_fit_without_a_peak():
    users = (1, 2, 4, 8, 16)
    smooth = [Step("python", n, 4.0, round(usl(n, 4.0, 0.02, 0.0) * 4), usl(n, 4.0, 0.02, 0.0),
                   round(n / usl(n, 4.0, 0.02, 0.0) * 1000), None) for n in users]
    fitted = infer("python", smooth)
    assert fitted.shape == NONE_REACHED and fitted.usl.sigma == pytest.approx(0.02, abs=0.005)
    assert fitted.usl.peak_users is None  # kappa 0: no peak


def test_a_probe_that_got_only_failures_infers_nothing_and_says_why():
    failed = [Step("postgres", n, 2.0, 5 * n, 0.0, None, None, Counter(pooler_unavailable=5 * n), 5 * n, 0)
              for n in (1, 2, 4)]
    inference = infer("postgres", failed)
    assert inference.shape == NO_ANSWERS and inference.limit is None and inference.rounded is None
    assert inference.evidence == "no request was answered (pooler_unavailable 35): nothing to infer"
    assert cause("postgres", inference, facts("green")) is None
    assert verdict_lines(inference, facts("green"))[:2] == [
        "postgres: no limit inferred", "  no request was answered (pooler_unavailable 35): nothing to infer"]


@pytest.mark.parametrize("mode, endpoint, limit, named", [
    ("green", "postgres", 15, "limit 15: pool_size 5 + max_overflow 10"),
    ("threads", "python", 8, "limit 8: ThreadWorker runs up to 8 requests at once"),
    ("sync", "postgres", 1, "limit 1: SyncWorker runs one request at a time"),
    ("gevent", "postgres", 1, "limit 1: a query blocks the whole GeventWorker (its driver does not yield)"),
])
def test_the_cause_is_named_from_the_facts_beside_the_probe(mode, endpoint, limit, named):
    inference = infer(endpoint, steps_of(limit))
    assert cause(endpoint, inference, facts(mode)) == f"{named} (from /pool; agrees with the probe's {limit})"
    wrong = infer(endpoint, steps_of(limit + 5))
    assert "DIFFERS from the probe's" in cause(endpoint, wrong, facts(mode))


def test_without_facts_the_verdict_says_it_is_inferred_from_the_run_alone():
    inference = infer("postgres", steps_of(7))
    assert cause("postgres", inference, None) is None
    lines = verdict_lines(inference, None)
    assert lines[0] == "postgres: limit 7 at once (hard limit)"
    assert lines[-1] == "  inferred from the run alone: the server's facts (/pool) were not used"
    text = format_probe({"postgres": steps_of(7)}, {"postgres": inference}, None, "steps of ...", "header")
    assert "answers/s" in text and "limit 7 at once" in text
