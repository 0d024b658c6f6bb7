"""The limit a burst shows, inferred from its answers alone: how many requests the endpoint served at
once, and how long each took, for a server that does not report its facts (or whose facts are ignored).

A burst sends N requests at once. An endpoint that serves at most K at once answers the first K
together, about one service time D after the burst began, and the rest in later waves, each about
D after the one before; an endpoint with no limit below N answers all N in one wave. So the first
wave's size is the limit, and the waves' spacing the service time, when the waves look like that:
no wave larger than the one before, and every spacing about the same. Later waves may shrink before
the last: where several workers each hold part of the limit, the kernel spreads the burst's
connections unevenly, and the workers that got fewer finish early (docs/workers.md); stock
QueuePool closes its returned overflow connections (docs/uneven-waves.md).
"""

import statistics
from collections import Counter
from dataclasses import dataclass

from .waves import group_waves

# The spacings of a limit's waves within this factor of the service time: wider than a noisy machine's
# jitter (tens of ms on a second), narrower than a wave missed or merged.
SPACING_TOLERANCE = (0.6, 1.5)
# The first wave's time, in service times: no sooner than the spacing allows, but it may come later, as
# it also pays what only the first requests pay (15 new database connections at once on a loaded
# machine: 0.28 s more than a 0.5 s sleep); past this it is no longer one service time in.
FIRST_WAVE_LATEST = 2.0
LIMIT, NO_LIMIT, NOT_INFERABLE = VERDICTS = ("limit", "no limit", "not inferable")


def group_by_gaps(completions):
    """The waves of one endpoint's completions, from their times alone (the sleep is unknown).

    Every request left at 0, so the first answer came one service time in: half of its time is the
    gap that parts two waves, the rule lab.waves.group_waves applies with half the known sleep.
    Answers of no service time to speak of (the first within 10 ms) are one wave: nothing tells waves
    apart there, as with a sleep of 0.
    """
    if not completions:
        return []
    first = min(c.at for c in completions)
    return group_waves(completions, first if first > 0.01 else 0)


@dataclass(frozen=True)
class Inference:
    """What the burst shows: `limit` K (None: none below the burst, or not inferable), `service_seconds` D
    (None: not inferable), `evidence` the waves and spacing it was read from, or why none could be."""
    limit: int | None
    service_seconds: float | None
    evidence: str
    verdict: str = NOT_INFERABLE

    def text(self, sent):
        if self.verdict == LIMIT:
            return f"at most {self.limit} at once, about {self.service_seconds:.2f} s each ({self.evidence})"
        if self.verdict == NO_LIMIT:
            return f"no limit below {sent}, about {self.service_seconds:.2f} s each ({self.evidence})"
        return f"not inferable: {self.evidence}"


def infer(completions, sent):
    """The Inference of one endpoint's burst of `sent` requests from its `completions` (lab.waves.Completion,
    timed from the burst's start). Failed answers tell no service time: the waves are the succeeded ones'."""
    succeeded = [c for c in completions if not c.failure]
    failed = Counter(c.failure for c in completions if c.failure)
    failures = ", ".join(f"{cause} {n}" for cause, n in sorted(failed.items()))
    if len(completions) < sent:
        return Inference(None, None, f"the run stopped with {sent - len(completions)} of {sent} still in flight")
    if not succeeded:
        return Inference(None, None, f"all {sent} failed ({failures})" if failures else "no answer")
    if len(succeeded) < 2:
        return Inference(None, None, f"too few answers: {len(succeeded)} of {sent} succeeded"
                                     + (f" ({failures} failed)" if failures else ""))
    waves = group_by_gaps(succeeded)
    sizes = [wave.size for wave in waves]
    # A wave's time: its median answer, which one straggler does not move.
    times = [statistics.median(c.at for c in succeeded if wave.first <= c.at <= wave.last) for wave in waves]
    failed_note = f"; {failures} failed, left out" if failures else ""
    at = " ".join(f"{t:.2f}" for t in times)
    if len(waves) == 1:
        return Inference(None, round(times[0], 3), f"one wave of {sizes[0]} at {at} s{failed_note}", NO_LIMIT)
    spacings = [later - earlier for earlier, later in zip(times, times[1:])]
    service = statistics.median(spacings)
    limit = sizes[0]
    low, high = SPACING_TOLERANCE
    evidence = (f"waves {' '.join(map(str, sizes))} at {at} s: the first held {limit} of {sent}, the next "
                f"followed {' '.join(f'{s:.2f}' for s in spacings)} s apart{failed_note}")
    if any(later > earlier for earlier, later in zip(sizes, sizes[1:])):
        return Inference(None, None, f"irregular waves, not one limit's stairs: {evidence}")
    if any(size < limit for size in sizes[1:-1]):
        # Which of the causes in the docstring, the answers do not tell: /pool's facts do (render's UNEVEN line).
        evidence += "; later waves shrink: fewer ran at once after the first"
    if not (all(low * service <= s <= high * service for s in spacings)
            and low * service <= times[0] <= FIRST_WAVE_LATEST * service):
        return Inference(None, None, f"irregular spacing, not one service time apart: {evidence}")
    return Inference(limit, round(service, 3), evidence, LIMIT)
