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
    """The waves a server should answer a burst in, from its mode and pool."""
    wave_sizes: tuple[int, ...]
    sleep: float
    reason: str

    @property
    def ideal_total(self):
        return len(self.wave_sizes) * self.sleep


def predict(endpoint, mode, requests, sleep, pool_size, max_overflow):
    """Predict a burst of `requests` sleeps of `sleep` seconds on one endpoint of one mode."""
    if mode == "sync":
        concurrency, reason = 1, "serial: a sync worker runs one request at a time"
    elif endpoint == "postgres" and mode == "gevent":
        concurrency, reason = 1, "serial: unpatched psycopg2 blocks the whole gevent worker"
    elif endpoint == "postgres":
        concurrency = pool_size + max_overflow
        reason = f"waves of the pool limit: pool_size {pool_size} + max_overflow {max_overflow}"
    else:
        concurrency, reason = max(requests, 1), "overlapped: time.sleep yields to other greenlets"
    full, rest = divmod(requests, concurrency)
    return Prediction((concurrency,) * full + ((rest,) if rest else ()), sleep, reason)
