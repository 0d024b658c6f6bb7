"""A probe's steps and verdict as words and files: the terminal table and verdict, the Probe tab's rows,
<prefix>_probe.csv and the result's "probe" entry (the picture is lab.plot.plot_probe)."""

import csv

from contract import FAILURE_CAUSES

from .probe import NO_ANSWERS, NONE_REACHED, cause
from .render import counted, format_table, pool_words

PROBE_COLUMNS = ("endpoint", "users", "requests", "throughput_rps", "median_ms", "p95_ms", "failures",
                 "failures_by_cause", "closed_loop_rps", "mean_ms", "sent", "answered_so_far", "failed_so_far",
                 "in_flight", "seconds")
# The web UI's Probe tab: a row per step, (key, column title).
PROBE_TAB = (("endpoint", "Endpoint"), ("users", "Users"), ("requests", "Requests"), ("throughput_rps", "Answers/s"),
             ("closed_loop_rps", "X for the limit"), ("median_ms", "Median (ms)"), ("p95_ms", "95% (ms)"), ("failures", "Failures by cause"),
             ("counts", "So far: sent = answered + failed + in flight"))
TABLE = [("users", "users", ">"), ("requests", "requests", ">"), ("answers/s", "throughput_rps", ">"),
         ("X for the limit", "closed_loop_rps", ">"),
         ("median ms", "median_ms", ">"), ("p95 ms", "p95_ms", ">"),
         ("so far: sent = answered + failed + in flight", "counts", ">"), ("failures", "failures")]


def by_cause(failures):
    return ", ".join(f"{c} {failures[c]}" for c in FAILURE_CAUSES if failures.get(c)) or "none"


def step_row(step):
    return {"endpoint": step.endpoint, "users": step.users, "requests": step.requests,
            "throughput_rps": f"{step.throughput_rps:.2f}", "closed_loop_rps": f"{step.rate:.2f}",
            "median_ms": "" if step.median_ms is None else step.median_ms,
            "p95_ms": "" if step.p95_ms is None else step.p95_ms, "failures": by_cause(step.failures),
            "in_flight": step.in_flight, "counts": step.counts}


def write_probe_csv(path, steps):
    """A row per step and endpoint: PROBE_COLUMNS, failures as a count and by cause."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(PROBE_COLUMNS)
        for endpoint_steps in steps.values():
            for s in endpoint_steps:
                writer.writerow((s.endpoint, s.users, s.requests, f"{s.throughput_rps:.3f}",
                                 "" if s.median_ms is None else s.median_ms, "" if s.p95_ms is None else s.p95_ms,
                                 sum(s.failures.values()), by_cause(s.failures), f"{s.rate:.3f}",
                                 "" if s.mean_ms is None else f"{s.mean_ms:.1f}", s.sent, s.answered_so_far,
                                 s.failed_so_far, s.in_flight,
                                 f"{s.seconds:.3f}"))


def limit_phrase(inference):
    if inference.shape == NO_ANSWERS:
        return "no limit inferred"
    if inference.shape == NONE_REACHED:
        return (f"no limit reached by {counted(inference.peak_users, 'user')} "
                f"({inference.limit:.1f} at once at its peak)")
    return f"limit {inference.rounded} at once ({inference.shape})"


def verdict_lines(inference, facts, labs=None):
    """One endpoint's verdict: the limit, its evidence, the USL fit, and the cause /pool names (`labs`: the
    run's endpoint names -> the lab's endpoint each is, whose facts /pool gives; by default the names)."""
    lines = [f"{inference.endpoint}: {limit_phrase(inference)}"]
    if inference.limit is not None:
        lines.append(f"  Little's law: {inference.peak_rps:.2f} answers/s at most (at "
                     f"{counted(inference.peak_users, 'user')}) x {inference.alone_ms:.0f} ms "
                     f"for one request alone = {inference.limit:.2f} at once")
    lines.append(f"  {inference.evidence}")
    if inference.usl:
        fit = inference.usl
        peak = f"peak at N* = {fit.peak_users:.1f} users" if fit.peak_users else "no peak (kappa 0)"
        lines.append(f"  USL fit: sigma {fit.sigma:.4f}, kappa {fit.kappa:.6f}, lambda {fit.lam:.2f}/s, {peak}, "
                     f"r2 {fit.r2:.3f}" + (f" ({inference.usl_note})" if inference.usl_note else ""))
    elif inference.usl_note and inference.shape != NO_ANSWERS:
        lines.append(f"  USL: {inference.usl_note}")
    named = cause(lab_of(inference.endpoint, labs), inference, facts)
    if named:
        lines.append(f"  {named}")
    elif inference.limit is not None:
        lines.append("  inferred from the run alone: the server's facts (/pool) were not used")
    return lines


def lab_of(endpoint, labs):
    """The lab's endpoint a run's endpoint is (None: a --path that is not one of its sleep endpoints)."""
    return endpoint if labs is None else labs.get(endpoint)


def title(facts, host, started):
    if not facts:
        return f"pool-lab probe at {host}, {started} (no /pool: the limit is inferred from the run alone)"
    return f"pool-lab probe on the {facts['mode']} mode ({pool_words(facts)}) at {host}, {started}"


def format_probe(steps, inferences, facts, plan, header, stopped_early=False, labs=None):
    """The terminal's table and verdict, per endpoint."""
    lines = [header, plan]
    if stopped_early:
        lines.append("STOPPED EARLY: the run ended before every step was measured; the steps below are those done")
    for endpoint, endpoint_steps in steps.items():
        lines.append(f"{endpoint}:")
        if endpoint_steps:
            lines.append("\n".join("  " + line for line in format_table(
                TABLE, [step_row(s) for s in endpoint_steps]).splitlines()))
        lines += verdict_lines(inferences[endpoint], facts, labs)
    return "\n".join(lines)


def result_entry(inference, steps, facts, labs=None):
    """The result file's "probe" entry of one endpoint."""
    return {**inference.as_dict(), "cause": cause(lab_of(inference.endpoint, labs), inference, facts),
            "steps": [s.as_dict() for s in steps]}
