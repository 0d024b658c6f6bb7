"""From a synthetic request log to waves, failure causes, the waves CSV and the summary."""

import csv

from conftest import facts
from lab import report

FACTS = facts("green", pool_size=2, max_overflow=1)


def write_log(path, rows):
    with open(path, "w", newline="") as log:
        writer = csv.writer(log)
        writer.writerow(("timestamp", "request_type", "name", "response_time_ms", "response_length",
                         "status_code", "exception"))
        writer.writerows(rows)


def test_a_burst_log_becomes_waves_a_prediction_and_failure_causes(tmp_path):
    log = tmp_path / "run_requests.csv"
    sent = 1000.0
    write_log(log, [
        *[(sent, "GET", "/sleep/postgres/", 1000, 90, 200, "") for _ in range(3)],
        # Only 2 of the next 3 made it in the second wave: uneven.
        *[(sent, "GET", "/sleep/postgres/", 2010, 90, 200, "") for _ in range(2)],
        (sent, "GET", "/sleep/postgres/", 3000, 90, 503, "pool_timeout: no database connection free"),
        (sent - 5, "GET", "/sleep/postgres/", 10, 0, 0, "ConnectionRefusedError(111)"),  # an earlier run
    ])
    completions = report.read_request_log(log, since=sent)
    [summary] = report.summarize(completions, sleep=1.0, facts=FACTS)
    assert [w.size for w in summary.waves] == [3, 2, 1]
    assert summary.prediction.wave_sizes == (3, 3)
    assert summary.uneven and round(summary.ratio, 2) == 1.5
    assert summary.failures == {"pool_timeout": 1}

    report.write_waves_csv(tmp_path / "run_waves.csv", [summary])
    with open(tmp_path / "run_waves.csv", newline="") as waves:
        rows = list(csv.DictReader(waves))
    assert [(r["wave"], r["size"], r["predicted_size"], r["failures"]) for r in rows] == [
        ("1", "3", "3", "0"), ("2", "2", "3", "0"), ("3", "1", "0", "1")]

    text = report.format_summary([summary], FACTS)
    assert "postgres: 6 requests, total 3.00 s, waves 3 2 1" in text
    assert "ideal total 2.00 s, measured/ideal 1.50" in text
    assert "UNEVEN" in text and "failures: pool_timeout 1" in text


def test_failure_causes():
    assert report.classify_failure("200", "") is None
    assert report.classify_failure("503", "pool_timeout: all 15 connections are in use") == "pool_timeout"
    assert report.classify_failure("0", "ConnectionRefusedError(111)") == "connection_error"
    assert report.classify_failure("503", "database_unavailable: the database failed") == "database_unavailable"
    assert report.classify_failure("500", "internal_server_error: KeyError in the server") == "other"
    assert report.failure_message(503, '{"error": "pool_timeout", "message": "busy"}') == "pool_timeout: busy"
    assert report.failure_message(0, "") == "connection_error: no answer from the server"
    assert report.failure_message(502, "<html>bad gateway</html>") == "HTTP 502"


def test_a_result_file_reads_back_as_written(tmp_path):
    completions = {"python": [report.Completion("python", 1.0, None), report.Completion("python", 2.1, "other")]}
    summaries = report.summarize(completions, sleep=1.0, facts=FACTS)
    report.write_result(tmp_path / "result.json", FACTS, summaries, completions)
    assert report.read_result(tmp_path / "result.json") == (FACTS, summaries, completions)
