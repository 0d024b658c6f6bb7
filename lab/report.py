"""From Locust's per-request log to waves, predictions, failure causes, and a summary.

The log is the one locust.contrib.csv_request_logger.CsvRequestLogger writes: a row
per request with the time it was sent, its response time, status and exception.
"""

import csv
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field

from contract import ENDPOINTS, FAILURE_CAUSES, endpoint_of, failure_cause

from .waves import Completion, Prediction, Wave, group_waves, limits, predict

WAVES_COLUMNS = ("endpoint", "wave", "size", "predicted_size", "first_s", "last_s", "failures", "note")
SERVER_TIMING_COLUMNS = ("endpoint", "sent", "done", "server_started", "server_finished", "pool_wait", "connect_seconds",
                         "query_seconds", "pid")


def read_request_log(path):
    """Return {endpoint: [Completion]}: every answered request of one burst's log.

    Each completion is timed from the first request of its endpoint: that is when its burst began.
    """
    rows = {}
    with open(path, newline="", encoding="utf-8") as log:
        for row in csv.DictReader(log):
            sent = float(row["timestamp"])
            if not row["response_time_ms"]:
                continue
            finished = sent + float(row["response_time_ms"]) / 1000
            failure = failure_cause(row["status_code"], row["exception"])
            rows.setdefault(endpoint_of(row["name"]), []).append((sent, finished, failure))
    completions = {}
    for endpoint, requests in rows.items():
        start = min(sent for sent, _, _ in requests)
        completions[endpoint] = [Completion(endpoint, finished - start, failure)
                                 for _, finished, failure in requests]
    return completions


@dataclass
class EndpointSummary:
    endpoint: str
    requests: int
    total: float
    waves: list
    prediction: object = None
    failures: Counter = field(default_factory=Counter)
    # Requests sent; more than `requests` (answered) when the run stopped with some in flight.
    sent: int = 0
    # {worker pid: requests it answered}, from the answers that carry a pid (a failure's carries none).
    served_by: dict = field(default_factory=dict)

    @property
    def in_flight(self):
        return max(self.sent - self.requests, 0)

    @property
    def ratio(self):
        if self.in_flight or not (self.prediction and self.prediction.ideal_total):
            return None  # a total of what was answered is no measure of a burst cut short
        return self.total / self.prediction.ideal_total

    @property
    def model_ratio(self):
        """Measured total / the CPU model's total: None without a model or for a burst cut short."""
        if self.ratio is None or not self.prediction.model_total:
            return None
        return self.total / self.prediction.model_total

    @property
    def uneven(self):
        """True when the waves differ from the prediction (the first wave may still match)."""
        return self.prediction is not None and tuple(w.size for w in self.waves) != self.prediction.wave_sizes

    @classmethod
    def from_dict(cls, data):
        """The inverse of dataclasses.asdict, for a summary read back from a run's result file."""
        prediction = data["prediction"] and Prediction(**{**data["prediction"], "wave_sizes": tuple(
            data["prediction"]["wave_sizes"])})
        # JSON made the pids strings; result files from before served_by have none.
        served_by = {int(pid): count for pid, count in data.get("served_by", {}).items()}
        return cls(**{**data, "waves": [Wave(**wave) for wave in data["waves"]], "prediction": prediction,
                      "failures": Counter(data["failures"]), "served_by": served_by})


@dataclass(frozen=True)
class Spread:
    """How one endpoint's answers were spread over the server's workers, and what that spread costs."""
    counts: tuple[int, ...]  # requests each worker that served answered, most first
    even_total: float  # the best case: the same answers spread evenly, in waves of workers x per-worker limit
    spread_total: float  # this spread: each worker alone, ceil(n / per-worker limit) waves; the slowest decides
    wave_sizes: tuple[int, ...] = ()  # the waves this spread predicts: each worker's waves, added up wave by wave

    @property
    def uneven(self):
        return self.spread_total > self.even_total


def worker_spread(endpoint, served_by, sleep, facts):
    """The cost of how the kernel spread a burst's connections over the workers, or None without the facts.

    Each worker runs its share alone, up to its own limit (limits() for one worker: its concurrency,
    and for postgres its pool), so the busiest worker decides the total.
    """
    if not (served_by and facts and sleep is not None):
        return None
    per_worker = min(limit for limit, _ in limits(endpoint, {**facts, "workers": 1}))
    answered = sum(served_by.values())
    waves = [0] * max(math.ceil(count / per_worker) for count in served_by.values())
    for count in served_by.values():
        for wave in range(math.ceil(count / per_worker)):
            waves[wave] += min(per_worker, count - wave * per_worker)
    return Spread(counts=tuple(sorted(served_by.values(), reverse=True)),
                  even_total=math.ceil(answered / (per_worker * facts["workers"])) * sleep,
                  spread_total=len(waves) * sleep, wave_sizes=tuple(waves))


def summarize(completions, sleep=None, facts=None, sent=None, timings=()):
    """One EndpointSummary per endpoint, in burst order.

    `sleep` (seconds per request) turns on wave grouping: a burst run. `facts`, the
    server's /pool answer, adds the prediction, made for the requests `sent` per endpoint
    (by default, those answered). `timings`, the server timing rows, say which worker served each.
    """
    sent = {**{e: len(done) for e, done in completions.items()}, **(sent or {})}
    served_by = {}
    for timing in timings:
        if timing.get("pid"):
            served_by.setdefault(timing["endpoint"], Counter())[timing["pid"]] += 1
    summaries = []
    for endpoint in sorted(sent, key=lambda e: (ENDPOINTS + (e,)).index(e)):
        done = completions.get(endpoint, [])
        summaries.append(EndpointSummary(
            endpoint=endpoint,
            requests=len(done),
            total=max((c.at for c in done), default=0.0),
            waves=group_waves(done, sleep) if sleep is not None else [],
            prediction=predict(endpoint, sent[endpoint], sleep, facts) if facts and sleep is not None else None,
            failures=Counter(c.failure for c in done if c.failure),
            sent=sent[endpoint],
            served_by=dict(served_by.get(endpoint, {})),
        ))
    return summaries


def stop_notes(summaries, never_began):
    """What a run stopped before its burst was done left behind, per endpoint (empty when complete)."""
    notes = [(s.endpoint, s.in_flight, f"STOPPED EARLY: {s.sent} sent, {s.requests} answered, "
                                       f"{s.in_flight} still in flight") for s in summaries if s.in_flight]
    return notes + [(endpoint, 0, "STOPPED EARLY: never began (the run stopped first)") for endpoint in never_began]


def uneven_cause(summary, facts, warnings):
    """Why waves may differ from the prediction, named for the pool in use."""
    if warnings:
        return "the server was busy when the burst began (see the warning)"
    spread = worker_spread(summary.endpoint, summary.served_by, summary.prediction.sleep, facts)
    if spread and facts["workers"] > 1 and tuple(w.size for w in summary.waves) == spread.wave_sizes:
        return "the workers' spread of the requests, which predicts exactly these waves: see 'served by'"
    closes_overflow = facts["pool_class"].endswith(".QueuePool") and facts["max_overflow"] > 0
    if spread and spread.uneven:
        cause = "the workers' uneven spread of the requests: see 'served by'"
        if summary.endpoint == "postgres" and closes_overflow and max(spread.counts) > facts["pool_limit"]:
            # The busiest worker's share went past its own pool: its later waves shrink as one worker's do.
            cause += ("; and past the pool limit within a worker, QueuePool closes returned overflow "
                      "connections (README, 'Uneven waves')")
        return cause
    limited_by_pool = summary.endpoint == "postgres" and summary.prediction.wave_sizes[0] == facts["pool_limit"]
    if limited_by_pool and closes_overflow:
        return "see the README, 'Uneven waves': QueuePool closes returned overflow connections"
    return (f"not a known behaviour of {facts['pool_class'].rsplit('.', 1)[-1]}: look at the waves CSV "
            "and the server's log")


def write_result(path, facts, summaries, completions, costs=None):
    """A run's result, for whoever started it: the server's facts, the summaries, every completion, the costs."""
    with open(path, "w", encoding="utf-8") as out:
        # failures by hand: asdict would rebuild the Counter from (cause, count) pairs, counting the pairs.
        json.dump({"facts": facts, "summaries": [{**asdict(s), "failures": dict(s.failures)} for s in summaries],
                   "completions": {e: [(c.at, c.failure) for c in done] for e, done in completions.items()},
                   "costs": costs or {}}, out)


def read_result(path):
    """(facts, summaries, completions, costs) as write_result wrote them."""
    with open(path, encoding="utf-8") as result:
        data = json.load(result)
    completions = {e: [Completion(e, at, failure) for at, failure in done] for e, done in data["completions"].items()}
    return data["facts"], [EndpointSummary.from_dict(s) for s in data["summaries"]], completions, data["costs"]


def connection_costs(timings, memory_peak, memory_unavailable=None):
    """What the burst's new connections cost: the time each took to open (from the server's answers)
    and the memory of PostgreSQL's client backends at their peak (a lab.memory.Sample)."""
    opened = sorted(t["connect_seconds"] for t in timings if t.get("connect_seconds"))
    costs = {"connections_opened": len(opened)}
    if opened:
        costs.update(connect_median_ms=round(1000 * opened[len(opened) // 2], 2),
                     connect_p95_ms=round(1000 * opened[min(len(opened) - 1, int(0.95 * len(opened)))], 2))
    if memory_peak and memory_peak.backends:
        costs.update(peak_backends=memory_peak.backends, uss_mib=round(memory_peak.uss_mib, 1),
                     pss_mib=round(memory_peak.pss_mib, 1),
                     uss_mib_per_backend=round(memory_peak.uss_mib / memory_peak.backends, 2),
                     pss_mib_per_backend=round(memory_peak.pss_mib / memory_peak.backends, 2))
    elif memory_unavailable:
        costs["memory"] = memory_unavailable
    return costs


def format_costs(costs):
    lines = []
    if costs.get("connections_opened"):
        lines.append(f"connections opened: {costs['connections_opened']}, median {costs['connect_median_ms']} ms, "
                     f"95th percentile {costs['connect_p95_ms']} ms each")
    if "peak_backends" in costs:
        lines.append(f"PostgreSQL's client backends at the peak: {costs['peak_backends']}, "
                     f"{costs['uss_mib_per_backend']} MiB each of their own (USS; {costs['pss_mib_per_backend']} MiB "
                     f"with their share of shared memory, PSS), {costs['uss_mib']} MiB USS in all")
    elif "memory" in costs:
        lines.append(f"memory: {costs['memory']}")
    if costs.get("listen_overflows"):
        lines.append(f"WARNING: the kernel turned away {costs['listen_overflows']} connection attempts during the "
                     f"burst, its listen queue full (machine-wide ListenOverflows; a server's backlog is capped by "
                     f"net.core.somaxconn = {costs['somaxconn']}): each waited for its client's SYN retry, 1 s or more")
    return lines


def write_waves_csv(path, summaries, warnings=(), never_began=()):
    """A row per wave; then a row per warning and per endpoint a stop left unfinished, said in `note`."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(WAVES_COLUMNS)
        for summary in summaries:
            predicted = summary.prediction.wave_sizes if summary.prediction else ()
            for wave in summary.waves:
                expected = predicted[wave.number - 1] if wave.number <= len(predicted) else 0
                writer.writerow((wave.endpoint, wave.number, wave.size, expected,
                                 f"{wave.first:.3f}", f"{wave.last:.3f}", wave.failures, ""))
        for endpoint, in_flight, note in stop_notes(summaries, never_began):
            writer.writerow((endpoint, "", in_flight, "", "", "", "", note))
        for warning in warnings:
            writer.writerow(("", "", "", "", "", "", "", f"WARNING: {warning}"))


def write_server_timings(path, timings):
    """Per answered request: when the load generator sent it and got the answer, and when the
    server began and finished its handler (Unix time, one clock: the same machine)."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=SERVER_TIMING_COLUMNS)
        writer.writeheader()
        writer.writerows(timings)


def _sizes(sizes):
    return " ".join(str(size) for size in sizes)


def format_table(columns, rows, markdown=False):
    """Rows of dicts as a text table (or Markdown); columns: (header, key), or (header, key, ">") right-aligned."""
    cells = [[str(row[key]) for _, key, *_ in columns] for row in rows]
    headers = [header for header, *_ in columns]
    if markdown:
        return "\n".join("| " + " | ".join(line) + " |" for line in [headers, ["---"] * len(headers), *cells])
    widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(headers)]
    aligns = [str.rjust if column[2:] == (">",) else str.ljust for column in columns]

    def render(line):
        return "  ".join(align(cell, width) for cell, width, align in zip(line, widths, aligns)).rstrip()
    return "\n".join([render(headers), render("-" * w for w in widths), *map(render, cells)])


def waves_tab_rows(summaries, facts, warnings=(), never_began=()):
    """The web UI's Waves tab: a row per endpoint of the burst, beside its prediction."""
    stopped = {endpoint: note for endpoint, _, note in stop_notes(summaries, never_began)}
    rows = []
    for s in summaries:
        notes = [stopped.get(s.endpoint), *(f"WARNING: {w}" for w in warnings)]
        if s.uneven and s.ratio is not None:
            notes.append(f"UNEVEN: {uneven_cause(s, facts, warnings)}")
        if s.prediction:
            notes += [line.strip() for line in spread_lines(s, facts)]
        rows.append({"endpoint": s.endpoint, "requests": s.requests, "waves": _sizes(w.size for w in s.waves),
                     "predicted": _sizes(s.prediction.wave_sizes) if s.prediction else "unavailable",
                     "total_s": f"{s.total:.2f}", "ideal_s": f"{s.prediction.ideal_total:.2f}" if s.prediction else "",
                     "ratio": "" if s.ratio is None else f"{s.ratio:.2f}",
                     "model_s": f"{s.prediction.model_total:.2f}" if s.prediction and s.prediction.model_total else "",
                     "model_ratio": "" if s.model_ratio is None else f"{s.model_ratio:.2f}",
                     "failures": ", ".join(f"{cause} {n}" for cause, n in sorted(s.failures.items())) or "none",
                     "note": "; ".join(filter(None, notes))})
    return rows + [{"endpoint": endpoint, "requests": 0, "waves": "", "predicted": "", "total_s": "", "ideal_s": "",
                    "ratio": "", "model_s": "", "model_ratio": "", "failures": "", "note": stopped[endpoint]}
                   for endpoint in never_began]


def spread_lines(summary, facts):
    """The summary's word on the workers' spread, for a server of several workers."""
    spread = worker_spread(summary.endpoint, summary.served_by, summary.prediction.sleep, facts)
    if not spread or (len(spread.counts) < 2 and facts["workers"] < 2):
        return []
    served = len(spread.counts)
    if served != facts["workers"]:
        served = f"{served} of {facts['workers']}"
    lines = [f"  served by {served} workers: {' + '.join(map(str, spread.counts))} requests; an even "
             f"spread predicts {spread.even_total:.2f} s, this spread {spread.spread_total:.2f} s"]
    if spread.uneven:
        lines.append(f"  UNEVEN SPREAD: the busiest worker's share costs "
                     f"{spread.spread_total - spread.even_total:.2f} s over an even spread")
    return lines


def format_summary(summaries, facts=None, warnings=(), never_began=()):
    """The burst's summary as the terminal shows it."""
    lines = []
    if facts is not None:
        pool = (f"pool_size {facts['pool_size']} + max_overflow {facts['max_overflow']}, pool timeout "
                f"{facts['timeout']:g} s" if facts["pool_limit"] is not None else
                f"{facts['pool_class'].rsplit('.', 1)[-1]}, a new connection per request")
        ceiling = facts.get("db")
        if ceiling:
            pool += (f"; PostgreSQL max_connections {ceiling['max_connections']}, {ceiling['open_connections']} "
                     f"open, {ceiling['accepts']} more accepted")
        lines.append(f"pool-lab burst on the {facts['mode']} mode: {pool}")
    lines += [f"WARNING: {warning}" for warning in warnings]
    stopped = {endpoint: note for endpoint, _, note in stop_notes(summaries, never_began)}
    for s in summaries:
        line = f"{s.endpoint}: {s.requests} requests, total {s.total:.2f} s"
        if s.waves:
            line += f", waves {_sizes(w.size for w in s.waves)}"
        lines.append(line)
        if s.endpoint in stopped:
            lines.append(f"  {stopped[s.endpoint]}")
        if s.waves and s.prediction is None:
            lines.append("  prediction: unavailable (the server's /pool did not answer)")
        elif s.waves:
            p = s.prediction
            measured = "stopped early" if s.ratio is None else f"{s.ratio:.2f}"
            lines.append(f"  predicted: {_sizes(p.wave_sizes)} ({p.reason}); first wave "
                         f"{p.wave_sizes[0]}, measured {s.waves[0].size}; ideal total "
                         f"{p.ideal_total:.2f} s, measured/ideal {measured}")
            lines.append(f"  {p.model_explained()}" + (
                "" if p.model_total is None else
                f"; measured/model {'stopped early' if s.model_ratio is None else f'{s.model_ratio:.2f}'}"))
            if p.refused:
                lines.append(f"  predicted {s.sent - p.refused} succeeded and {p.refused} too_many_connections; "
                             f"measured {s.requests - sum(s.failures.values())} succeeded and "
                             f"{s.failures['too_many_connections']} too_many_connections")
            if s.uneven and s.ratio is not None:
                lines.append(f"  UNEVEN: the waves differ from the prediction ({uneven_cause(s, facts, warnings)})")
            lines += spread_lines(s, facts)
        if s.failures:
            lines.append("  failures: " + ", ".join(f"{cause} {s.failures[cause]}"
                                                     for cause in FAILURE_CAUSES if s.failures[cause]))
        else:
            lines.append("  failures: none")
    lines += [f"{endpoint}: {stopped[endpoint]}" for endpoint in never_began]
    return "\n".join(lines)
