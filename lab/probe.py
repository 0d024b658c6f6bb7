"""A concurrency probe's steps as plain numbers, and what they say about an endpoint's limit.

A probe runs closed-loop users (each sends again as soon as it is answered) in steps of N users
and measures each step's throughput X(N) and latency. By Little's law a server that runs L
requests at once, each taking R1 seconds alone, answers at most L / R1 per second: from the
highest throughput and the latency of one request alone (the 1-user step) the effective limit is
L = X_max x R1. A step's throughput is taken by the response time law of a closed loop, X = N / R
(its users over their mean latency), which answers that come in waves cannot skew (Step.rate). Past L a hard limit (a pool, a thread count) keeps X flat and latency grows in
proportion to N; contention (locks, a shared resource) makes X fall past its peak. The Universal
Scalability Law X(N) = lambda N / (1 + sigma (N - 1) + kappa N (N - 1)) describes a smooth curve
(Gunther; codahale/usl): it is fitted where there is no hard limit's knee.

Pure: no Locust, no server; lab.plugin.probe measures the steps, lab.probe_report shows them.
"""

import math
from collections import Counter
from dataclasses import dataclass, field

from contract import BadParameter

from .render import counted

HARD_LIMIT, CONTENTION, NONE_REACHED, NO_ANSWERS = SHAPES = ("hard limit", "contention", "none reached", "no answers")
# Throughput within this fraction of the peak counts as flat, and below the peak by more, it falls
# (see growing() for still growing). Measured throughput on a noisy 2-core machine wanders by a few
# percent from step to step.
FLAT = 0.10
# Where a fitted curve is taken as describing the steps (coefficient of determination).
GOOD_FIT = 0.95


@dataclass(frozen=True)
class Step:
    """One step of one endpoint: `users` closed-loop users, measured over `seconds` once all were up.

    requests: answered and failed in the measured window; throughput_rps: the answered ones a
    second; median_ms and p95_ms: their latencies; failures: the failed ones by cause
    (contract.failure_cause). sent, answered_so_far, failed_so_far, in_flight: the endpoint's requests
    over its steps so far, at the step's end: sent = answered_so_far + failed_so_far + in_flight.
    """
    endpoint: str
    users: int
    seconds: float
    requests: int
    throughput_rps: float
    median_ms: float | None
    p95_ms: float | None
    failures: Counter = field(default_factory=Counter)
    sent: int = 0
    in_flight: int = 0
    mean_ms: float | None = None  # exact, where median_ms and p95_ms are Locust's rounded ones
    answered_so_far: int = 0
    failed_so_far: int = 0

    @property
    def counts(self):
        """The endpoint's count so far at the step's end, as every report says it: 'sent = answered + failed + in flight'."""
        return f"{self.sent} = {self.answered_so_far} + {self.failed_so_far} + {self.in_flight}"

    @property
    def answered(self):
        return self.requests - sum(self.failures.values())

    @property
    def rate(self):
        """The step's throughput by the response time law of a closed loop, X = N / R (no think time): its
        users over their mean latency, where each user was answered at least twice in the window on
        average. Answers counted in a window of a few rounds are cut at its edges when they come in
        waves (a hard limit, equal sleeps), by up to a wave; the mean latency is not. Where the users
        were answered less often (a latency as long as the window, behind a small limit) the latencies
        of the few answered are no fair sample of all, and the answers counted are the throughput:
        those come in waves a round of one request alone apart, which the window's whole rounds keep."""
        if self.mean_ms and self.answered >= 2 * self.users:
            return self.users / (self.mean_ms / 1000)
        return self.throughput_rps

    def as_dict(self):
        return {"users": self.users, "seconds": round(self.seconds, 3), "requests": self.requests,
                "throughput_rps": round(self.throughput_rps, 3), "median_ms": self.median_ms, "p95_ms": self.p95_ms,
                "closed_loop_rps": round(self.rate, 3), "failures": dict(self.failures), "sent": self.sent,
                "answered_so_far": self.answered_so_far, "failed_so_far": self.failed_so_far, "in_flight": self.in_flight,
                "mean_ms": None if self.mean_ms is None else round(self.mean_ms, 2)}


def default_steps(users):
    """1, 2, 4, ... below `users`, and `users` itself last: where a limit lies, to within a factor of two."""
    steps, n = [], 1
    while n < users:
        steps.append(n)
        n *= 2
    return steps + [users]


def parse_steps(raw, name="--probe-steps"):
    """'1,2,4' -> [1, 2, 4]: increasing whole numbers of users, at least 1; BadParameter naming `name`."""
    parts = [part.strip() for part in str(raw).split(",")]
    if not all(parts):
        raise BadParameter(f"{name} must be whole numbers of users separated by commas, such as 1,2,4,8; "
                           f"got {raw!r}")
    try:
        steps = [int(part) for part in parts]
    except ValueError:
        raise BadParameter(f"{name} must be whole numbers of users, such as 1,2,4,8; got {raw!r}") from None
    if steps[0] < 1 or any(b <= a for a, b in zip(steps, steps[1:])):
        raise BadParameter(f"{name} must increase from at least 1 user, such as 1,2,4,8; got {raw!r}")
    return steps


def default_step_seconds(sleep):
    """Long enough for a few answers per user at the server's sleep: max(2 s, 4 x the sleep)."""
    return max(2.0, 4 * (sleep or 0))


def usl(n, lam, sigma, kappa):
    """The Universal Scalability Law's throughput at n users."""
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass(frozen=True)
class USLFit:
    lam: float  # throughput of one user alone, answers a second
    sigma: float  # contention: the serial fraction
    kappa: float  # coherence: the cost of each pair of requests
    r2: float  # how well the curve describes the steps
    peak_users: float | None  # N* = sqrt((1 - sigma) / kappa); None when kappa is 0 (no peak)

    def as_dict(self):
        return {"lambda": round(self.lam, 4), "sigma": round(self.sigma, 6), "kappa": round(self.kappa, 8),
                "r2": round(self.r2, 4), "peak_users": None if self.peak_users is None else round(self.peak_users, 1)}


def fit_usl(steps):
    """The USL fitted to the steps' throughput (Step.rate) with scipy's curve_fit (sigma, kappa >= 0); None if it fails."""
    import numpy
    from scipy.optimize import curve_fit

    n = numpy.array([s.users for s in steps], dtype=float)
    x = numpy.array([s.rate for s in steps], dtype=float)
    lam0 = x[0] / n[0]
    try:
        (lam, sigma, kappa), _ = curve_fit(usl, n, x, p0=(lam0, 0.01, 0.0001),
                                           bounds=((0, 0, 0), (numpy.inf, 1, 1)), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    residual = float(((x - usl(n, lam, sigma, kappa)) ** 2).sum())
    total = float(((x - x.mean()) ** 2).sum())
    r2 = 1 - residual / total if total > 0 else 0.0
    peak = math.sqrt((1 - sigma) / kappa) if kappa > 1e-12 else None
    return USLFit(float(lam), float(sigma), float(kappa), r2, peak)


@dataclass(frozen=True)
class Inference:
    """What an endpoint's steps say: its effective limit (Little's law at saturation) and the curve's shape."""
    endpoint: str
    shape: str
    limit: float | None = None  # X_max x R1, concurrent requests
    alone_ms: float | None = None  # R1: the median latency of the smallest step
    peak_rps: float | None = None
    peak_users: int | None = None
    evidence: str = ""
    usl: USLFit | None = None
    usl_note: str = ""

    @property
    def rounded(self):
        return None if self.limit is None else max(1, round(self.limit))

    def as_dict(self):
        # Not reached: what ran at once at the last step is a lower bound, not the limit.
        reached = self.shape not in (NONE_REACHED, NO_ANSWERS)
        return {"limit": self.rounded if reached else None, "at_least": None if reached else self.rounded,
                "limit_exact": None if self.limit is None else round(self.limit, 2),
                "shape": self.shape, "alone_ms": self.alone_ms, "peak_rps": self.peak_rps,
                "peak_users": self.peak_users, "evidence": self.evidence,
                "usl": self.usl.as_dict() if self.usl else None, "usl_note": self.usl_note}


def infer(endpoint, steps):
    """The limit and shape of one endpoint's steps (in increasing users)."""
    answered = [s for s in steps if s.answered > 0 and s.median_ms]
    if not answered:
        failed = Counter()
        for s in steps:
            failed.update(s.failures)
        causes = ", ".join(f"{cause} {n}" for cause, n in failed.most_common()) or "none answered, none failed"
        return Inference(endpoint, NO_ANSWERS, evidence=f"no request was answered ({causes}): nothing to infer")
    alone = answered[0]
    alone_ms = alone.mean_ms or alone.median_ms  # exact where known: Locust rounds the median to 10 ms
    peak = max(answered, key=lambda s: s.rate)
    limit = peak.rate * alone_ms / 1000
    last = answered[-1]
    after = answered[answered.index(peak) + 1:]
    if len(answered) < 2 or (peak is last and growing(answered[-2], last)):
        shape = NONE_REACHED
        evidence = f"throughput still growing at the last step: {phrase(answered[-2:])}"
    elif after and after[-1].rate < peak.rate * (1 - FLAT):
        shape = CONTENTION
        evidence = (f"throughput falls past its peak: {peak.rate:.1f}/s at {counted(peak.users, 'user')}, "
                    f"{after[-1].rate:.1f}/s at {after[-1].users}")
    else:
        shape = HARD_LIMIT
        growth = f"latency {alone_ms:.0f} ms alone, {last.median_ms:.0f} ms at {counted(last.users, 'user')}"
        evidence = (f"throughput flat at about {peak.rate:.1f}/s from "
                    f"{counted(saturated(answered, peak).users, 'user')}; {growth} (in proportion to users past "
                    f"the limit: {last.users / limit:.1f} x {alone_ms:.0f} ms = "
                    f"{last.users / limit * alone_ms:.0f} ms)")
    fit, note = None, ""
    if shape == HARD_LIMIT:
        note = "not fitted: a hard limit's knee is not the smooth curve the USL describes"
    elif len(answered) < 4:
        note = f"not fitted: {len(answered)} steps with answers, at least 4 are needed for 3 coefficients"
    else:
        fit = fit_usl(answered)
        if fit is None:
            note = "not fitted: curve_fit did not converge"
        elif fit.r2 < GOOD_FIT:
            note = f"fitted poorly (r2 {fit.r2:.2f}): the curve is not smooth"
    return Inference(endpoint, shape, limit, round(alone_ms, 2), round(peak.rate, 3), peak.users, evidence,
                     fit, note)


def growing(before, last):
    """Throughput still growing with the users: by at least half as much as the users grew (below a limit
    it grows in proportion; at a limit a server that must open connections again, as QueuePool's
    overflow does, still gains a little)."""
    users_grew = last.users / before.users - 1
    return last.rate > before.rate * (1 + max(FLAT, users_grew / 2))


def saturated(steps, peak):
    """The first step whose throughput is within FLAT of the peak: where the flat part begins."""
    return next(s for s in steps if s.rate >= peak.rate * (1 - FLAT))


def phrase(steps):
    return ", then ".join(f"{s.rate:.1f}/s at {counted(s.users, 'user')}" for s in steps)


def cause(endpoint, inference, facts):
    """The cause of the limit from the server's own facts (/pool), or None without them.

    The reasons are lab.waves.limits()' (the one owner of them): the tightest of them is the limit
    the server reports, said as 'limit 15: pool_size 5 + max_overflow 10', beside what was measured.
    """
    if not facts or not endpoint or inference.limit is None:
        return None  # no facts, or not one of the lab's sleep endpoints, which are what /pool's facts are of
    from .waves import limits

    reported, reason = min(limits(endpoint, facts), key=lambda limit: limit[0])
    reason = reason.split(": ", 1)[-1]  # 'waves of the pool limit: pool_size 5 + ...' -> 'pool_size 5 + ...'
    measured = inference.rounded
    if inference.shape == NONE_REACHED:
        agreement = ("agrees: not reached by these steps" if reported > measured else
                     f"the probe reached {measured} without flattening: compare with more users")
    elif abs(measured - reported) <= 1:
        agreement = f"agrees with the probe's {measured}"
    else:
        agreement = f"DIFFERS from the probe's {measured}"
    return f"limit {reported}: {reason} (from /pool; {agreement})"
