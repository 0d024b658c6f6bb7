"""lab.inference: the limit a burst shows, from its answers alone (and lab.endpoints' --path checks)."""

import pytest

from lab.endpoints import Endpoint, Endpoints, check_path, check_paths
from lab.inference import LIMIT, NO_LIMIT, NOT_INFERABLE, group_by_gaps, infer
from lab.waves import Completion


def stairs(*waves, service=1.0, jitter=0.01, failure=None):
    """Completions of waves of these sizes, one service time apart, each answer a little after the last."""
    return [Completion("e", (number + 1) * service + index * jitter, failure)
            for number, size in enumerate(waves) for index in range(size)]


def test_a_limit_is_the_first_wave_and_the_service_time_the_spacing():
    found = infer(stairs(15, 15, 5, service=0.5, jitter=0.0005), 35)
    assert (found.verdict, found.limit) == (LIMIT, 15)
    assert found.service_seconds == pytest.approx(0.5, abs=0.05)
    assert "waves 15 15 5" in found.evidence and "the first held 15 of 35" in found.evidence
    assert found.text(35).startswith("at most 15 at once, about 0.50 s each (waves 15 15 5")


def test_a_serial_server_is_a_limit_of_one():
    found = infer(stairs(1, 1, 1, 1, 1), 5)
    assert (found.verdict, found.limit) == (LIMIT, 1)


def test_one_wave_is_no_limit_below_the_burst():
    found = infer(stairs(20, service=2.0), 20)
    assert (found.verdict, found.limit) == (NO_LIMIT, None)
    assert found.service_seconds == pytest.approx(2.1, abs=0.1)
    assert found.text(20).startswith("no limit below 20, about 2.")


def test_later_waves_may_shrink_but_not_grow():
    # Two workers of 8 and an uneven spread of the connections: the busiest worker's waves last longest.
    shrinking = infer(stairs(16, 14, 8, 2), 40)
    assert (shrinking.verdict, shrinking.limit) == (LIMIT, 16) and "later waves shrink" in shrinking.evidence
    growing = infer(stairs(3, 7, 2), 12)
    assert (growing.verdict, growing.limit) == (NOT_INFERABLE, None)
    assert growing.evidence.startswith("irregular waves")


def test_waves_that_are_not_one_service_time_apart_are_irregular():
    answers = [Completion("e", at) for at in (1.0, 1.0, 2.0, 2.0, 5.0, 5.0)]
    found = infer(answers, 6)
    assert found.verdict == NOT_INFERABLE and found.evidence.startswith("irregular spacing")
    # The first wave may come later than one service time (it opens the connections), not much sooner.
    late_first = [Completion("e", at) for at in (0.78, 0.78, 1.3, 1.3, 1.82)]
    assert infer(late_first, 5).limit == 2
    early_first = [Completion("e", at) for at in (0.2, 0.2, 1.2, 1.2, 2.2)]
    assert infer(early_first, 5).verdict == NOT_INFERABLE


def test_failures_only_say_so_and_infer_nothing():
    found = infer(stairs(5, failure="pool_timeout", service=0.01), 5)
    assert (found.verdict, found.limit, found.service_seconds) == (NOT_INFERABLE, None, None)
    assert found.evidence == "all 5 failed (pool_timeout 5)"
    assert infer([], 3).evidence == "the run stopped with 3 of 3 still in flight"
    assert infer(stairs(1), 1).evidence == "too few answers: 1 of 1 succeeded"


def test_failed_answers_are_left_out_of_the_waves():
    answers = stairs(4, 4) + [Completion("e", 0.05, "too_many_connections")] * 2
    found = infer(answers, 10)
    assert (found.verdict, found.limit) == (LIMIT, 4) and "too_many_connections 2 failed, left out" in found.evidence


def test_waves_are_told_apart_by_half_the_first_answers_time():
    waves = group_by_gaps(stairs(3, 2, service=0.4, jitter=0.05))
    assert [w.size for w in waves] == [3, 2]
    # No service time to speak of: nothing tells waves apart.
    assert [w.size for w in group_by_gaps([Completion("e", at) for at in (0.001, 0.002, 0.5)])] == [3]


@pytest.mark.parametrize("path, says", [
    ("", "--path is empty"), ("  ", "--path is empty"), ("items", "has no leading slash: write --path /items"),
    ("/a b", "has whitespace"), ("http://127.0.0.1:8000/items", "is a full URL"), ("//host/x", "is a full URL"),
    ("/items?page=2", "has a query (?): the lab sends the path alone; write --path /items"),
    ("/items#top", "has a fragment"),
])
def test_a_bad_path_is_refused_naming_the_fix(path, says):
    with pytest.raises(ValueError, match=says.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")):
        check_path(path)


def test_paths_are_endpoints_named_by_themselves_in_their_order():
    assert check_path("/sleep/python/") == "/sleep/python/"
    with pytest.raises(ValueError, match="given 2 times"):
        check_paths(["/a", "/a"])
    endpoints = Endpoints.of_paths(["/b", "/sleep/postgres/"])
    assert endpoints.names == ("/b", "/sleep/postgres/") and not endpoints.lab_only
    assert endpoints.of_request("/b") == "/b" and endpoints.of_request("/login") is None
    assert endpoints.of_lab("postgres") == "/sleep/postgres/"
    assert Endpoints().lab_only and Endpoints().of_request("/sleep/python/") == "python"
    # A name of its own is what Locust reports its requests by: two endpoints of one path stay apart.
    assert Endpoint("report", "/work").request_name == "report"
