"""The files a burst leaves: the request log, the waves CSV, the server timings CSV, the memory
sample CSV and the result JSON (with its reader, for lab.compare and lab.benchmark)."""

import csv
import json
from dataclasses import asdict

# The request log keeps the columns of Locust's own per-request log.
from locust.contrib.csv_request_logger import CSV_COLUMNS as REQUEST_LOG_COLUMNS

from .analysis import EndpointSummary, counts_note, stop_notes, stopped_worker
from .waves import Completion

WAVES_COLUMNS = ("endpoint", "wave", "size", "predicted_size", "first_s", "last_s", "failures", "note")
SERVER_TIMING_COLUMNS = ("endpoint", "sent", "done", "server_started", "server_finished", "pool_wait", "connect_seconds",
                         "query_seconds", "pid")


class RequestLog:
    """A row per answer as it reaches the reporting process, flushed at once: a run's progress on disk.
    An output only: the reports read the answers' records, never this file."""

    def __init__(self, path):
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(REQUEST_LOG_COLUMNS)
        self._file.flush()

    def write(self, records):
        for r in records:
            self._writer.writerow((round(r["start_time"], 6), r["request_type"], r["name"],
                                   "" if r["response_time"] is None else round(r["response_time"], 2),
                                   r["response_length"], int(r["status_code"]), r["exception"] or ""))
        self._file.flush()

    def close(self):
        self._file.close()


def write_waves_csv(path, summaries, warnings=(), never_began=(), facts=None):
    """A row per wave; then per endpoint its counts (analysis.counts_note, the failed in `failures`); then a row per
    warning, per endpoint a stop left unfinished, and a worker that stopped (given the server's `facts`), said in
    `note`."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(WAVES_COLUMNS)
        for summary in summaries:
            predicted = summary.prediction.wave_sizes if summary.prediction else ()
            for wave in summary.waves:
                expected = predicted[wave.number - 1] if wave.number <= len(predicted) else 0
                writer.writerow((wave.endpoint, wave.number, wave.size, expected,
                                 f"{wave.first:.3f}", f"{wave.last:.3f}", wave.failures, ""))
        for summary in summaries:
            writer.writerow((summary.endpoint, "", "", "", "", "", summary.failed, f"COUNTS: {counts_note(summary)}"))
        for endpoint, in_flight, note in stop_notes(summaries, never_began):
            writer.writerow((endpoint, "", in_flight, "", "", "", "", note))
        for warning in warnings:
            writer.writerow(("", "", "", "", "", "", "", f"WARNING: {warning}"))
        lost = stopped_worker(summaries, facts)
        if lost:
            writer.writerow(("", "", "", "", "", "", "", lost.note))


def write_server_timings(path, timings):
    """Per answered request: when the load generator sent it and got the answer, and when the
    server began and finished its handler (Unix time, one clock: the same machine)."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=SERVER_TIMING_COLUMNS)
        writer.writeheader()
        writer.writerows(timings)


def read_server_timings(path, endpoint):
    """One endpoint's rows of write_server_timings, numbers as numbers ("" where the answer had none)."""
    with open(path, newline="", encoding="utf-8") as log:
        return [{k: (float(v) if v not in ("", endpoint) else v) for k, v in row.items()}
                for row in csv.DictReader(log) if row["endpoint"] == endpoint]


def write_memory_sample(path, at, sample):
    """A burst's sample (lab.memory.Sample): seconds into the postgres burst, client backends, their USS and
    PSS in MiB."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("seconds,backends,uss_mib,pss_mib\n")
        out.write(f"{at:g},{sample.backends},{sample.uss_mib:.2f},{sample.pss_mib:.2f}\n")


def write_result(path, facts, summaries, completions, costs=None, probe=None):
    """A run's result, for whoever started it: the server's facts, the summaries, every completion, the costs;
    for a probe, its entry per endpoint (lab.probe_report.result_entry)."""
    with open(path, "w", encoding="utf-8") as out:
        # failures by hand: asdict would rebuild the Counter from (cause, count) pairs, counting the pairs.
        json.dump({"facts": facts, "summaries": [{**asdict(s), "failures": dict(s.failures), "counts": s.counts}
                                                for s in summaries],
                   "completions": {e: [(c.at, c.failure) for c in done] for e, done in completions.items()},
                   "costs": costs or {}, **({"probe": probe} if probe is not None else {})}, out)


def read_result(path):
    """(facts, summaries, completions, costs) as write_result wrote them."""
    with open(path, encoding="utf-8") as result:
        data = json.load(result)
    # Results from before /pool named the PGBOUNCER setting "pgbouncer".
    if "through_pooler" in data["facts"]:
        data["facts"]["pgbouncer"] = data["facts"].pop("through_pooler")
    completions = {e: [Completion(e, at, failure) for at, failure in done] for e, done in data["completions"].items()}
    return data["facts"], [EndpointSummary.from_dict(s) for s in data["summaries"]], completions, data["costs"]
