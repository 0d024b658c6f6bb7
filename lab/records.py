"""A burst's answers as plain records, and what the reports read from them.

A record is one answered (or failed) request: the fields of Locust's request event and the
server's timing fields from the answer. Records are plain data, as Locust's messages carry
msgpack, so a worker hands them to the master as they are. The reporting process keeps one
list of them per burst: the completions (the waves' input), the server timing rows and the
request log are all read from that list.
"""

import json
import time

from contract import TIMING_FIELDS, failure_cause

from .waves import Completion

# The timing rows' names for the answer's own times; its other timing fields keep their names.
TIMING_COLUMNS = {"started_at": "server_started", "finished_at": "server_finished"}


def answer_record(endpoint, request_type, name, response_time, response_length, response=None, exception=None,
                  start_time=None, **kwargs):
    """One answered request of `endpoint` from Locust's request event: what the request log keeps, and the
    server's timestamps from the answer (None when it sent none)."""
    status_code = getattr(response, "status_code", 0) or 0
    if start_time is None:
        start_time = time.time()  # as Locust's own request log does for an event without one
    record = {"endpoint": endpoint, "request_type": request_type, "name": name, "response_time": response_time,
              "response_length": response_length, "start_time": start_time, "status_code": status_code,
              "exception": str(exception) if exception else None, "timing": None}
    if exception or response is None:
        return record
    try:
        answer = json.loads(response.text)
        timing = {field: answer.get(field, "") for field in TIMING_FIELDS}
        if "" in (timing["started_at"], timing["finished_at"], timing["pid"]):
            return record  # not a sleep's answer: no timing to keep
        record["timing"] = {"endpoint": endpoint, "sent": start_time, "done": start_time + response_time / 1000,
                            **{TIMING_COLUMNS.get(field, field): value for field, value in timing.items()}}
    except (TypeError, ValueError, AttributeError):
        pass
    return record


def completions(records):
    """{endpoint: [Completion]}: every answered request, timed from its endpoint's first request
    (when that endpoint's burst began)."""
    sent = {}
    for record in records:
        if record["response_time"] is None:
            continue
        start = record["start_time"]
        finished = start + record["response_time"] / 1000
        failure = failure_cause(record["status_code"], record["exception"])
        sent.setdefault(record["endpoint"], []).append((start, finished, failure))
    found = {}
    for endpoint, requests in sent.items():
        began = min(start for start, _, _ in requests)
        found[endpoint] = [Completion(endpoint, finished - began, failure) for _, finished, failure in requests]
    return found


def server_timings(records):
    """The server timing rows (lab.files.SERVER_TIMING_COLUMNS) of the records whose answer carried them."""
    return [record["timing"] for record in records if record["timing"]]
