"""From a burst's completions to summaries, the workers' spread and the connections' costs: pure
functions, no files and no words beyond a note (lab.files writes the files, lab.render the text)."""

import math
from collections import Counter
from dataclasses import dataclass, field

from contract import CONNECTION_LOST, ENDPOINTS, FAILURE_CAUSES

from .inference import Inference, group_by_gaps, infer
from .waves import Prediction, Wave, group_waves, limits, pooler_of, predict


@dataclass
class EndpointSummary:
    """One endpoint's burst. Its counts, the words every summary, CSV and tab uses:
    sent = answered (a 2xx) + failed (by cause: an error answer, a lost connection...) + in flight."""
    endpoint: str
    # Requests that finished: answered or failed (each a completion, a point of the waves).
    completed: int
    total: float
    waves: list
    prediction: object = None
    failures: Counter = field(default_factory=Counter)
    # Requests sent; more than `completed` when the run stopped with some in flight.
    sent: int = 0
    # {worker pid: requests it answered}, from the answers that carry a pid (a failure's carries none).
    served_by: dict = field(default_factory=dict)
    # The limit the burst shows, from its answers alone (lab.inference): beside the prediction, or instead.
    inferred: Inference = None

    @property
    def failed(self):
        return sum(self.failures.values())

    @property
    def answered(self):
        return self.completed - self.failed

    @property
    def in_flight(self):
        return max(self.sent - self.completed, 0)

    @property
    def counts(self):
        """{sent, answered, failed, in_flight}: what the result file and the tests read."""
        return {"sent": self.sent, "answered": self.answered, "failed": self.failed, "in_flight": self.in_flight}

    @property
    def cut_short(self):
        """True when requests are in flight or lost with their connection: the total measures no whole burst."""
        return bool(self.in_flight or self.failures[CONNECTION_LOST])

    @property
    def ratio(self):
        if self.cut_short or not (self.prediction and self.prediction.ideal_total):
            return None  # a total of what was answered is no measure of a burst cut short
        return self.total / self.prediction.ideal_total

    @property
    def model_ratio(self):
        """Measured total / the CPU model's total: None without a model or for a burst cut short."""
        # With 0 s sleeps the ideal is 0 and only the model, all CPU, gives a verdict.
        if self.cut_short or not (self.prediction and self.prediction.model_total):
            return None
        return self.total / self.prediction.model_total

    @property
    def uneven(self):
        """True when the waves differ from the prediction (the first wave may still match); never with
        0 s sleeps, where no gap tells waves apart."""
        return self.prediction is not None and self.prediction.sleep > 0 and tuple(w.size for w in self.waves) != self.prediction.wave_sizes

    @classmethod
    def from_dict(cls, data):
        """The inverse of dataclasses.asdict, for a summary read back from a run's result file."""
        prediction = data["prediction"] and Prediction(**{**data["prediction"], "wave_sizes": tuple(
            data["prediction"]["wave_sizes"])})
        # JSON made the pids strings; result files from before served_by have none.
        served_by = {int(pid): count for pid, count in data.get("served_by", {}).items()}
        # The counts are written beside the fields (lab.files.write_result) and derived from them here. Files from
        # before `completed` called every finished request "answered" (failures too), and before that "requests".
        data = {("completed" if key in ("requests", "answered") else key): value for key, value in data.items()
                if key != "counts"}
        inferred = data.get("inferred") and Inference(**data["inferred"])
        return cls(**{**data, "inferred": inferred, "waves": [Wave(**wave) for wave in data["waves"]],
                      "prediction": prediction,
                      "failures": Counter(data["failures"]), "served_by": served_by})


def failure_words(summary):
    """The failures by cause, in FAILURE_CAUSES' order: 'connection_lost 2, other 1', or 'none'."""
    return ", ".join(f"{cause} {summary.failures[cause]}" for cause in FAILURE_CAUSES if summary.failures[cause]) or "none"


def counts_note(summary, causes=True):
    """The identity every count keeps, in words: 'sent 5 = answered 3 + failed 2 (connection_lost 2) + in flight 0'."""
    by_cause = f" ({failure_words(summary)})" if causes and summary.failed else ""
    return (f"sent {summary.sent} = answered {summary.answered} + failed {summary.failed}{by_cause} + in flight "
            f"{summary.in_flight}")


@dataclass(frozen=True)
class StoppedWorker:
    """The server's worker that stopped during a burst: the one /pool reported before it, and what it took along."""
    pid: int
    lost: dict  # {endpoint: its requests whose connection it closed before answering (connection_lost)}
    later_pids: tuple  # the workers that answered in its place

    @property
    def note(self):
        took = " + ".join(f"{endpoint} {n}" for endpoint, n in self.lost.items()) or "none in flight"
        lost = sum(self.lost.values())
        return (f"WORKER STOPPED: pid {self.pid}, the server's worker before the burst, stopped during it and took "
                f"{lost} request{'' if lost == 1 else 's'} with it (connection_lost: {took}); later answers came "
                f"from pid {', '.join(map(str, self.later_pids))}")


def stopped_worker(summaries, facts):
    """The worker that stopped during the burst, or None: answers came from a pid /pool did not report before it.

    Told apart only for a server of one worker: with several, /pool names the one that answered it.
    """
    if not facts or facts.get("workers", 1) != 1 or not facts.get("pid"):
        return None
    later = sorted({pid for s in summaries for pid in s.served_by} - {facts["pid"]})
    if not later:
        return None
    return StoppedWorker(pid=facts["pid"], lost={s.endpoint: s.failures[CONNECTION_LOST] for s in summaries
                                                  if s.failures[CONNECTION_LOST]}, later_pids=tuple(later))


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
    if endpoint == "postgres" and pooler_of(facts):
        return None  # one queue for every worker, PgBouncer's: how the requests spread does not matter
    per_worker = min(limit for limit, _ in limits(endpoint, {**facts, "workers": 1}))
    answered = sum(served_by.values())
    waves = [0] * max(math.ceil(count / per_worker) for count in served_by.values())
    for count in served_by.values():
        for wave in range(math.ceil(count / per_worker)):
            waves[wave] += min(per_worker, count - wave * per_worker)
    return Spread(counts=tuple(sorted(served_by.values(), reverse=True)),
                  even_total=math.ceil(answered / (per_worker * facts["workers"])) * sleep,
                  spread_total=len(waves) * sleep, wave_sizes=tuple(waves))


def summarize(completions, sleep=None, facts=None, sent=None, timings=(), order=ENDPOINTS, lab_endpoints=None):
    """One EndpointSummary per endpoint of a burst, in burst order (`order`: the run's endpoint names).

    `sleep` (seconds per request) groups the waves by half of it; unknown (None), by the answers'
    gaps (lab.inference.group_by_gaps). `facts`, the server's /pool answer, adds the prediction,
    made for the requests `sent` per endpoint (by default, those answered), for the endpoints that
    are the lab's (`lab_endpoints`: name -> 'python' or 'postgres'; by default the names themselves).
    `timings`, the server timing rows, say which worker served each. Every endpoint gets the
    limit inferred from its answers alone.
    """
    order = tuple(order)
    lab_endpoints = {e: e for e in ENDPOINTS} if lab_endpoints is None else lab_endpoints
    sent = {**{e: len(done) for e, done in completions.items()}, **(sent or {})}
    served_by = {}
    for timing in timings:
        if timing.get("pid"):
            served_by.setdefault(timing["endpoint"], Counter())[timing["pid"]] += 1
    summaries = []
    for endpoint in sorted(sent, key=lambda e: (order + (e,)).index(e)):
        done = completions.get(endpoint, [])
        lab = lab_endpoints.get(endpoint)
        summaries.append(EndpointSummary(
            endpoint=endpoint,
            completed=len(done),
            total=max((c.at for c in done), default=0.0),
            waves=group_waves(done, sleep) if sleep is not None else group_by_gaps(done),
            prediction=predict(lab, sent[endpoint], sleep, facts) if facts and lab and sleep is not None else None,
            failures=Counter(c.failure for c in done if c.failure),
            sent=sent[endpoint],
            served_by=dict(served_by.get(endpoint, {})),
            inferred=infer(done, sent[endpoint]),
        ))
    return summaries


def stop_notes(summaries, never_began):
    """What a run stopped before its burst was done left behind, per endpoint (empty when complete)."""
    notes = [(s.endpoint, s.in_flight, f"STOPPED EARLY: {s.sent} sent, {s.answered} answered, {s.failed} failed, "
                                       f"{s.in_flight} still in flight") for s in summaries if s.in_flight]
    return notes + [(endpoint, 0, "STOPPED EARLY: never began (the run stopped first)") for endpoint in never_began]


def connection_costs(timings, memory_peak, memory_unavailable=None, pooler_sample=None):
    """What the burst's new connections cost: the time each took to open (from the server's answers)
    and the memory of PostgreSQL's client backends at their peak (a lab.memory.Sample); through
    PgBouncer, its own memory per client connection (a lab.memory.PoolerSample)."""
    opened = sorted(t["connect_seconds"] for t in timings if t.get("connect_seconds"))
    costs = {"connections_opened": len(opened)}
    if opened:
        costs.update(connect_median_ms=round(1000 * opened[len(opened) // 2], 2),
                     connect_p95_ms=round(1000 * opened[min(len(opened) - 1, int(0.95 * len(opened)))], 2))
    if memory_peak and memory_peak.backends:
        costs.update(peak_backends=memory_peak.backends, other_backends=memory_peak.others, uss_mib=round(memory_peak.uss_mib, 1),
                     pss_mib=round(memory_peak.pss_mib, 1),
                     uss_mib_per_backend=round(memory_peak.uss_mib / memory_peak.backends, 2),
                     pss_mib_per_backend=round(memory_peak.pss_mib / memory_peak.backends, 2))
    elif memory_unavailable:
        costs["memory"] = memory_unavailable
    if pooler_sample and pooler_sample.clients:
        costs.update(pooler_clients=pooler_sample.clients, pooler_uss_mib_rest=round(pooler_sample.rest_uss_mib, 2),
                     pooler_uss_mib_peak=round(pooler_sample.peak_uss_mib, 2),
                     pooler_kib_per_client=round(pooler_sample.kib_per_client, 1))
    return costs
