"""From a burst's answer records to waves, failure causes, the waves CSV and the summary."""

import csv

import pytest

import contract
from support import facts
from lab import analysis, files, render
from lab.records import completions as completions_of, server_timings
from lab.waves import Completion

FACTS = facts("green", pool_size=2, max_overflow=1)


def record(sent, response_time_ms, status_code=200, exception=None, endpoint="postgres"):
    """One answer's record as lab.records.answer_record makes it from Locust's request event."""
    return {"endpoint": endpoint, "request_type": "GET", "name": f"/sleep/{endpoint}/", "response_time": response_time_ms,
            "response_length": 90, "start_time": sent, "status_code": status_code, "exception": exception,
            "timing": None}


def test_a_bursts_answers_become_waves_a_prediction_and_failure_causes(tmp_path):
    sent = 1000.0
    records = [
        *[record(sent, 1000) for _ in range(3)],
        # Only 2 of the next 3 made it in the second wave: uneven.
        *[record(sent, 2010) for _ in range(2)],
        record(sent, 3000, 503, "pool_timeout: no database connection free"),
    ]
    completions = completions_of(records)
    [summary] = analysis.summarize(completions, sleep=1.0, facts=FACTS)
    assert [w.size for w in summary.waves] == [3, 2, 1]
    assert summary.prediction.wave_sizes == (3, 3)
    assert summary.uneven and round(summary.ratio, 2) == 1.5
    assert summary.failures == {"pool_timeout": 1}

    files.write_waves_csv(tmp_path / "run_waves.csv", [summary])
    with open(tmp_path / "run_waves.csv", newline="") as waves:
        rows = list(csv.DictReader(waves))
    assert [(r["wave"], r["size"], r["predicted_size"], r["failures"]) for r in rows if r["wave"]] == [
        ("1", "3", "3", "0"), ("2", "2", "3", "0"), ("3", "1", "0", "1")]
    # Then the endpoint's counts: every failure a cause, every request counted once.
    assert [(r["failures"], r["note"]) for r in rows if not r["wave"]] == [
        ("1", "COUNTS: sent 6 = answered 5 + failed 1 (pool_timeout 1) + in flight 0")]

    text = render.format_summary([summary], FACTS)
    assert "postgres: 6 requests, total 3.00 s, waves 3 2 1" in text
    assert "ideal total 2.00 s, measured/ideal 1.50" in text
    assert "UNEVEN" in text and "sent 6 = answered 5 + failed 1 + in flight 0; failures: pool_timeout 1" in text


def test_the_request_log_is_written_from_the_records_in_locusts_columns(tmp_path):
    log = files.RequestLog(tmp_path / "run_requests.csv")
    log.write([record(1000.1234567, 1000.123, 200), record(1000.5, None, 0, "connection_error: no answer")])
    log.close()
    with open(tmp_path / "run_requests.csv", newline="") as written:
        rows = list(csv.reader(written))
    assert rows == [["timestamp", "request_type", "name", "response_time_ms", "response_length", "status_code",
                     "exception"],
                    ["1000.123457", "GET", "/sleep/postgres/", "1000.12", "90", "200", ""],
                    ["1000.5", "GET", "/sleep/postgres/", "", "90", "0", "connection_error: no answer"]]
    # An answer without a response time is no completion; the server timing rows are the records' own.
    assert completions_of([record(1000.5, None, 0, "connection_error: no answer")]) == {}
    timed = {**record(1000.0, 1000), "timing": {"endpoint": "postgres", "pid": 101}}
    assert server_timings([timed, record(1000.0, 1000)]) == [{"endpoint": "postgres", "pid": 101}]


def test_failure_causes():
    assert contract.failure_cause("200", "") is None
    assert contract.failure_cause("503", "pool_timeout: all 15 connections are in use") == "pool_timeout"
    assert contract.failure_cause("0", "ConnectionRefusedError(111)") == "connection_error"
    assert contract.failure_cause("503", "database_unavailable: the database failed") == "database_unavailable"
    assert contract.failure_cause("500", "internal_server_error: KeyError in the server") == "other"
    # A sleep the server refuses is the request's fault, not an unknown one (issue 23).
    assert contract.failure_cause("400", "bad_parameter: seconds must be at most 60") == "bad_parameter"
    assert contract.failure_message(503, '{"error": "pool_timeout", "message": "busy"}') == "pool_timeout: busy"
    assert contract.failure_message(0, "") == "connection_error: no answer from the server"
    assert contract.failure_message(502, "<html>bad gateway</html>") == "HTTP 502"


def test_a_result_file_reads_back_as_written(tmp_path):
    completions = {"python": [Completion("python", 1.0, None), Completion("python", 2.1, "other")]}
    summaries = analysis.summarize(completions, sleep=1.0, facts=FACTS)
    costs = {"connections_opened": 2, "connect_median_ms": 3.1, "connect_p95_ms": 4.0}
    files.write_result(tmp_path / "result.json", FACTS, summaries, completions, costs)
    assert files.read_result(tmp_path / "result.json") == (FACTS, summaries, completions, costs)


def test_uneven_waves_name_the_cause_that_fits_the_pool():
    # Predicted 3 3 for a pool of 2 + 1; measured 3 2 1.
    completions = {"postgres": [Completion("postgres", at, None) for at in (1.0, 1.0, 1.0, 2.0, 2.0, 3.0)]}
    fair = facts("green", 2, 1, pool_class="server.pool.FairQueuePool")
    for pool_facts, cause in [
            (FACTS, "see docs/uneven-waves.md: QueuePool closes returned overflow connections"),
            (fair, "not a known behaviour of FairQueuePool: look at the waves CSV and the server's log")]:
        [summary] = analysis.summarize(completions, sleep=1.0, facts=pool_facts)
        assert summary.uneven
        assert f"UNEVEN: the waves differ from the prediction ({cause})" in render.format_summary([summary], pool_facts)
    busy = render.format_summary([summary], fair, warnings=["the pool had 1 connection(s) checked out"])
    assert "WARNING: the pool had 1 connection(s) checked out" in busy
    assert "UNEVEN: the waves differ from the prediction (the server was busy when the burst began" in busy
    assert "QueuePool" not in busy.replace("FairQueuePool", "")


def test_a_burst_stopped_early_says_what_was_sent_answered_and_never_began(tmp_path):
    completions = {"python": [Completion("python", 1.0, None)] * 3}
    summaries = analysis.summarize(completions, sleep=1.0, facts=facts("sync"), sent={"python": 5})
    [python] = summaries
    assert (python.sent, python.answered, python.in_flight, python.ratio) == (5, 3, 2, None)
    assert python.prediction.wave_sizes == (1,) * 5  # for what was sent, not what was answered
    text = render.format_summary(summaries, facts("sync"), never_began=["postgres"])
    assert "python: STOPPED EARLY" not in text and "STOPPED EARLY: 5 sent, 3 answered, 0 failed, 2 still in flight" in text
    assert "postgres: STOPPED EARLY: never began (the run stopped first)" in text
    assert "measured/ideal stopped early" in text and "UNEVEN" not in text
    files.write_waves_csv(tmp_path / "waves.csv", summaries, never_began=["postgres"])
    with open(tmp_path / "waves.csv", newline="") as waves:
        notes = [(row["endpoint"], row["size"], row["note"]) for row in csv.DictReader(waves) if row["note"]]
    assert notes == [("python", "", "COUNTS: sent 5 = answered 3 + failed 0 + in flight 2"),
                     ("python", "2", "STOPPED EARLY: 5 sent, 3 answered, 0 failed, 2 still in flight"),
                     ("postgres", "0", "STOPPED EARLY: never began (the run stopped first)")]


TWO_WORKERS = {**facts("green", pool_size=5, max_overflow=0), "workers": 2}


def test_a_workers_spread_costs_what_its_busiest_worker_needs():
    # Each worker runs its share alone, in waves of its own pool (5): the busiest decides.
    even = analysis.worker_spread("postgres", {101: 50, 102: 50}, 1.0, TWO_WORKERS)
    assert (even.counts, even.even_total, even.spread_total, even.uneven) == ((50, 50), 10.0, 10.0, False)
    skewed = analysis.worker_spread("postgres", {101: 39, 102: 61}, 1.0, TWO_WORKERS)
    assert (skewed.counts, skewed.even_total, skewed.spread_total, skewed.uneven) == ((61, 39), 10.0, 13.0, True)
    # Each worker's waves of 5, added up: 39 = 7 x 5 + 4 beside 61 = 12 x 5 + 1.
    assert skewed.wave_sizes == (10,) * 7 + (9,) + (5,) * 4 + (1,)
    # One request past a wave boundary costs a whole wave: 51 take 11 waves of 5, the 100 evenly 10.
    assert analysis.worker_spread("postgres", {101: 51, 102: 49}, 1.0, TWO_WORKERS).spread_total == 11.0
    alone = analysis.worker_spread("postgres", {101: 10}, 0.5, TWO_WORKERS)
    assert (alone.even_total, alone.spread_total, alone.uneven) == (0.5, 1.0, True)
    # python: a gevent worker runs 1000 at once, so any spread of 100 is one wave.
    assert not analysis.worker_spread("python", {101: 90, 102: 10}, 1.0, TWO_WORKERS).uneven
    # A query that does not yield makes each worker serial: waves of 1 per worker.
    blocking = {**TWO_WORKERS, "query_yields": False}
    assert analysis.worker_spread("postgres", {101: 3, 102: 1}, 1.0, blocking).spread_total == 3.0
    assert analysis.worker_spread("postgres", {}, 1.0, TWO_WORKERS) is None
    assert analysis.worker_spread("postgres", {101: 1}, 1.0, None) is None


def postgres_burst(counts, sleep=1.0):
    """A burst's summary whose answers came from workers 101, 102, ... `counts` of them each."""
    timings = [{"endpoint": "postgres", "pid": 101 + worker} for worker, count in enumerate(counts)
               for _ in range(count)]
    completions = {"postgres": [Completion("postgres", sleep, None) for _ in timings]}
    return analysis.summarize(completions, sleep, TWO_WORKERS, timings=timings), completions


def test_the_summary_names_the_spread_and_flags_it_when_it_costs():
    [summary], _ = postgres_burst([61, 39])
    assert summary.served_by == {101: 61, 102: 39}
    text = render.format_summary([summary], TWO_WORKERS)
    assert ("served by 2 workers: 61 + 39 requests; an even spread predicts 10.00 s, this spread 13.00 s"
            in text)
    assert "UNEVEN SPREAD: the busiest worker's share costs 3.00 s over an even spread" in text
    assert "the workers' uneven spread of the requests" in text  # the waves' UNEVEN line names the cause
    [even], _ = postgres_burst([5, 5])
    text = render.format_summary([even], TWO_WORKERS)
    assert "served by 2 workers: 5 + 5 requests; an even spread predicts 1.00 s, this spread 1.00 s" in text
    assert "UNEVEN" not in text
    [alone], _ = postgres_burst([10])
    assert "served by 1 of 2 workers: 10 requests" in render.format_summary([alone], TWO_WORKERS)
    # A spread that costs no time may still shape the waves (measured: 59 + 41 on two pools of 15, 1 s sleeps).
    fifteen = {**facts("green", pool_size=15, max_overflow=0), "workers": 2}
    timings = [{"endpoint": "postgres", "pid": 101}] * 59 + [{"endpoint": "postgres", "pid": 102}] * 41
    completions = {"postgres": [Completion("postgres", wave + 1.0, None)
                                for wave, size in enumerate((30, 30, 26, 14)) for _ in range(size)]}
    [shaped] = analysis.summarize(completions, 1.0, fifteen, timings=timings)
    text = render.format_summary([shaped], fifteen)
    assert "served by 2 workers: 59 + 41 requests; an even spread predicts 4.00 s, this spread 4.00 s" in text
    assert "UNEVEN: the waves differ from the prediction (the workers' spread of the requests, which predicts " \
           "exactly these waves: see 'served by')" in text and "UNEVEN SPREAD" not in text
    # Stock QueuePool with overflow: the busiest worker's share past its own pool limit shrinks its later waves too.
    overflowing = {**facts("green"), "workers": 2}
    skewed = analysis.summarize({"postgres": [Completion("postgres", 1.0 + wave, None) for wave in range(92)]},
                              1.0, overflowing, timings=[{"endpoint": "postgres", "pid": 101}] * 64
                              + [{"endpoint": "postgres", "pid": 102}] * 28)[0]
    assert ("the workers' uneven spread of the requests: see 'served by'; and past the pool limit within a "
            "worker, QueuePool closes returned overflow connections") in render.format_summary([skewed], overflowing)
    # One worker, as every mode runs by default: nothing to say.
    one = facts("green", pool_size=5, max_overflow=0)
    _, completions = postgres_burst([10])
    [single] = analysis.summarize(completions, 1.0, one, timings=[{"endpoint": "postgres", "pid": 101}] * 10)
    assert "served by" not in render.format_summary([single], one)


def test_the_result_file_keeps_the_spread_and_reads_files_from_before_it(tmp_path):
    summaries, completions = postgres_burst([6, 4])
    files.write_result(tmp_path / "result.json", TWO_WORKERS, summaries, completions)
    assert files.read_result(tmp_path / "result.json")[1][0].served_by == {101: 6, 102: 4}
    # A result file written before served_by existed.
    import json
    data = json.loads((tmp_path / "result.json").read_text())
    del data["summaries"][0]["served_by"]
    # ... and before the count of answers was called "answered" (finished ones, failed too), then "completed".
    data["summaries"][0]["requests"] = data["summaries"][0].pop("completed")
    del data["summaries"][0]["counts"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    [old] = files.read_result(tmp_path / "old.json")[1]
    assert (old.served_by, old.completed, old.answered) == ({}, 10, 10)
    data["summaries"][0]["answered"] = data["summaries"][0].pop("requests")
    data["summaries"][0]["failures"] = {"pool_timeout": 2}
    (tmp_path / "old.json").write_text(json.dumps(data))
    [old] = files.read_result(tmp_path / "old.json")[1]
    assert old.counts == {"sent": 10, "answered": 8, "failed": 2, "in_flight": 0}


def test_the_summary_and_the_waves_tab_show_the_model_beside_the_ideal(tmp_path):
    calibrated = {**facts("green"), "cpus": 2, "calibration": {"cpu_per_request": 0.0004, "measured_as": "cpu"}}
    completions = {"python": [Completion("python", 1.0 + i / 2000, None) for i in range(1000)]}
    summaries = analysis.summarize(completions, sleep=1.0, facts=calibrated)
    [python] = summaries
    assert round(python.ratio, 2) == 1.5 and round(python.model_ratio, 2) == 1.07
    text = render.format_summary(summaries, calibrated)
    assert "ideal total 1.00 s, measured/ideal 1.50" in text
    assert ("  model 1.40 s = ideal 1.00 s + 1000 x 0.40 ms of CPU per request on 1 worker; "
            "measured/model 1.07") in text
    [row] = render.waves_tab_rows(summaries, calibrated)
    assert (row["ideal_s"], row["ratio"], row["model_s"], row["model_ratio"]) == ("1.00", "1.50", "1.40", "1.07")
    # The model survives the result file, for compare and the benchmark.
    files.write_result(tmp_path / "result.json", calibrated, summaries, completions)
    assert files.read_result(tmp_path / "result.json")[1][0].prediction.model_total == pytest.approx(1.4)


def test_a_summary_without_a_calibration_keeps_the_ideal_and_says_there_is_no_model():
    completions = {"python": [Completion("python", 1.01, None)]}
    text = render.format_summary(analysis.summarize(completions, sleep=1.0, facts=FACTS), FACTS)
    assert "measured/ideal 1.01" in text and "model: unavailable (no CPU calibration)" in text
    assert "measured/model" not in text


def test_a_steady_failures_cause_is_read_from_its_exception_or_from_a_masters_repr_of_it():
    from locust.exception import CatchResponseError

    # Where the request ran Locust keeps the exception; a master gets its repr from the workers.
    timeout = CatchResponseError("pool_timeout: no database connection free within POOL_TIMEOUT=30s: (5 + 10)")
    assert render.steady_failure_cause(timeout) == "pool_timeout"
    assert render.steady_failure_cause(repr(timeout)) == "pool_timeout"
    assert render.steady_failure_cause(CatchResponseError("HTTP 500")) == "other"
    assert render.steady_failure_cause("ConnectionRefusedError(111, 'Connection refused')") == "other"
