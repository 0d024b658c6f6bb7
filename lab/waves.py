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
