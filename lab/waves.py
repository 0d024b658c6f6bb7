"""Grouping completion times of a burst into waves, and what the pool predicts for them.

A burst sends N requests at once; each sleeps d seconds on the server. Requests
that ran side by side finish within moments of each other; a request that had
to wait for a worker or a pooled connection finishes about d later. So a wave
is a run of completions with no gap longer than half the sleep between them.
"""

import math
from dataclasses import dataclass

@dataclass(frozen=True)
class Completion:
    """One answered (or failed) request, timed from the start of its burst."""
    endpoint: str
    at: float
    failure: str | None = None


@dataclass(frozen=True)
class Wave:
    endpoint: str
    number: int
    size: int
    first: float
    last: float
    failures: int


def group_waves(completions, sleep_seconds):
    """Return the waves of one endpoint's completions, in order, numbered from 1."""
    ordered = sorted(completions, key=lambda c: c.at)
    # With no sleep there is nothing to tell waves apart by: one wave.
    gap = sleep_seconds / 2 if sleep_seconds > 0 else math.inf
    groups = []
    for completion in ordered:
        if groups and completion.at - groups[-1][-1].at <= gap:
            groups[-1].append(completion)
        else:
            groups.append([completion])
    return [
        Wave(
            endpoint=group[0].endpoint,
            number=number,
            size=len(group),
            first=group[0].at,
            last=group[-1].at,
            failures=sum(1 for c in group if c.failure),
        )
        for number, group in enumerate(groups, start=1)
    ]


@dataclass(frozen=True)
class Prediction:
    """The waves a server should answer a burst in, from what limits its concurrency."""
    wave_sizes: tuple[int, ...]
    sleep: float
    reason: str
    # Requests the database refuses at once (too_many_connections): the first wave, answered at once.
    refused: int = 0
    # The CPU model (see cpu_model): c, the CPU seconds one request costs one worker, from the
    # mode's calibration; None without one, and `cpu_unavailable` says why.
    requests: int = 0
    cpu_per_request: float | None = None
    cpu_workers: int = 1
    cpu_workers_reason: str = ""
    cpu_unavailable: str = ""

    @property
    def ideal_total(self):
        return (len(self.wave_sizes) - bool(self.refused)) * self.sleep

    @property
    def cpu_total(self):
        """The burst's CPU beyond its sleeps: N x c, spread over the workers that run at once."""
        return None if self.cpu_per_request is None else self.requests * self.cpu_per_request / self.cpu_workers

    @property
    def model_total(self):
        return None if self.cpu_total is None else self.ideal_total + self.cpu_total

    def model_explained(self):
        """The model in one line: the ideal, and the CPU it adds."""
        if self.model_total is None:
            return f"model: unavailable ({self.cpu_unavailable})"
        return (f"model {self.model_total:.2f} s = ideal {self.ideal_total:.2f} s + {self.requests} x "
                f"{1000 * self.cpu_per_request:.2f} ms of CPU per request {self.cpu_workers_reason}")


def limits(endpoint, facts):
    """What caps how many of `endpoint`'s requests run at once, each with why; from /pool's facts."""
    workers = facts["workers"]
    at_once = facts["worker_concurrency"] * workers
    worker = facts["worker_class"].rsplit(".", 1)[-1] if facts["worker_class"] else "the worker"
    found = [(at_once, f"serial: {worker} runs one request at a time" if at_once == 1 else
              f"overlapped: {worker} runs up to {at_once} requests at once")]
    if endpoint == "postgres":
        if not facts["query_yields"]:
            found.append((workers, f"serial: a query blocks the whole {worker} (its driver does not yield)"))
        if facts["pool_limit"] is not None:
            found.append((facts["pool_limit"] * workers, f"waves of the pool limit: pool_size "
                                                         f"{facts['pool_size']} + max_overflow {facts['max_overflow']}"))
    return found


def parallel_workers(facts):
    """How many of a server's worker processes run Python at the same moment: one per core at most."""
    return max(1, min(facts["workers"], facts.get("cpus") or facts["workers"]))


def cpu_model(requests, facts):
    """Prediction fields for the CPU a burst of `requests` costs, from the mode's calibration in the facts.

    Each worker process runs its requests' Python one after another, so N x c is spread over the
    workers that run at once: as many as there are workers, but at most one per core the server
    may run on (`cpus` in /pool).
    """
    calibration = facts.get("calibration")
    if not calibration:
        return {"requests": requests, "cpu_unavailable": "no CPU calibration"}
    if "error" in calibration:
        return {"requests": requests, "cpu_unavailable": calibration["error"]}
    workers, at_once = facts["workers"], parallel_workers(facts)
    if workers == 1:
        reason = "on 1 worker"
    elif at_once == workers:
        reason = f"over {workers} workers"
    else:
        reason = f"over {workers} workers on {at_once} cores"
    return {"requests": requests, "cpu_per_request": calibration["cpu_per_request"], "cpu_workers": at_once,
            "cpu_workers_reason": reason}


def predict(endpoint, requests, sleep, facts):
    """Predict a burst of `requests` sleeps of `sleep` seconds on one endpoint: waves of the tightest limit.

    With /db's facts (`facts["db"]`), the database's ceiling too: A, the connections it still
    accepts. When more than A requests open a connection at once (no pool limit, or W workers'
    pools larger than A together), it takes A and refuses the rest at once; and requests waiting
    for the pool are refused too, as each refused connect frees its pool slot at once while the
    database stays full. A pool limit above A that this burst does not reach is named as a risk.
    """
    concurrency, reason = min(limits(endpoint, facts), key=lambda limit: limit[0])
    ceiling = facts.get("db") if endpoint == "postgres" else None
    if ceiling:
        accepts = ceiling["accepts"]
        where = f"max_connections {ceiling['max_connections']}, {ceiling['open_connections']} open"
        if min(requests, concurrency) > accepts:
            # With pools, the best case: the burst spread evenly, so every worker's pool asks at once.
            pools = "" if facts["pool_limit"] is None else (
                f" (spread evenly, {facts['workers']} workers' pools ask for up to {concurrency} at once)")
            return Prediction((requests - accepts, accepts), sleep, refused=requests - accepts, reason=(
                f"the database's ceiling: it accepts {accepts} more connections ({where}) and refuses the rest"
                f"{pools}"), **cpu_model(requests, facts))
        if facts["pool_limit"] is not None and facts["pool_limit"] * facts["workers"] > accepts:
            reason += f"; beyond the {accepts} connections the database accepts ({where}): expect refusals"
    full, rest = divmod(requests, concurrency)
    return Prediction((concurrency,) * full + ((rest,) if rest else ()), sleep, reason, **cpu_model(requests, facts))
