"""The benchmark's split of a total's excess over the ideal, on synthetic timings."""

import pytest

from support import facts
from lab.benchmark import excess_by_part
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
