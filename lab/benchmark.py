"""How close the lab comes to its ideal: measured total / ideal total, per mode and endpoint.

    python -m lab.benchmark                 # N = 5 and 100, d = 1 s, every mode; then 1000 python sleeps
    python -m lab.benchmark --quick         # N = 5 only, d = 0.5 s: a smoke run

The ideal is N x d when a mode serializes, d when it overlaps, ceil(N / P) x d past the
pool limit P. Targets (2-core machine): at most 1.03 wherever the pool shape gives clean
waves, at most 1.15 for 1000 concurrent python sleeps in green mode. Stock QueuePool past
its limit gives uneven waves by design (README, Uneven waves): those rows are measured but
carry no target; the fair mode is the same shape with clean waves.
"""

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

from .compare import Variant, measure, progress
from .servers import ROOT, start_mode

PROFILE = ROOT / "profiles" / "100-users.conf"
CLEAN_TARGET = 1.03
THOUSAND_TARGET = 1.15
MODES = ("sync", "gevent", "green", "fair")


def target_for(summary, pool):
    """The ratio a case must reach: None where stock QueuePool makes waves uneven by design,
    and for sleeps other than the 1 s the targets are set for (fixed costs weigh more on shorter ones)."""
    if summary.prediction.sleep != 1.0:
        return None
    limit = pool["pool_size"] + pool["max_overflow"]
    uneven_by_design = (summary.endpoint == "postgres" and pool["mode"] == "green"
                        and pool["pool_class"].endswith(".QueuePool") and summary.requests > limit
                        and pool["max_overflow"] > 0)
    if uneven_by_design:
        return None
    return THOUSAND_TARGET if summary.requests >= 1000 else CLEAN_TARGET


def read_timings(path, endpoint):
    with open(path, newline="") as log:
        return [{k: (float(v) if v not in ("", endpoint) else v) for k, v in row.items()}
                for row in csv.DictReader(log) if row["endpoint"] == endpoint]


def excess_by_part(timings, prediction):
    """Split the last answer's time beyond the ideal into measured parts (seconds).

    The parts add up to total - ideal: how late the load generator sent it, how long the
    server kept it beyond the earlier waves' turn, how far the sleep ran over (the database's
    pg_sleep for postgres, the server's event loop for python), and the response's way back.
    """
    if not timings:
        return {}
    sleep = prediction.sleep
    start = min(t["sent"] for t in timings)
    last = max(timings, key=lambda t: t["done"])
    handler = last["server_finished"] - last["server_started"]
    pool_wait = last["pool_wait"] or 0.0
    earlier_waves = (len(prediction.wave_sizes) - 1) * sleep
    parts = {
        "load_generator_sending": last["sent"] - start,
        "server_queueing_beyond_earlier_waves": last["server_started"] - last["sent"] + pool_wait - earlier_waves,
    }
    if last["query_seconds"] != "":
        parts["database_pg_sleep_overrun"] = last["query_seconds"] - sleep
        parts["server_rest_of_handler"] = handler - pool_wait - last["query_seconds"]
    else:
        parts["server_sleep_overrun"] = handler - sleep
    parts["response_server_write_and_load_generator_read"] = last["done"] - last["server_finished"]
    return {part: round(seconds, 4) for part, seconds in parts.items()}


def case(variant, summary, pool, timings):
    target = target_for(summary, pool)
    ratio = summary.ratio
    return {
        "mode": variant.label,
        "endpoint": summary.endpoint,
        "requests": summary.requests,
        "sleep_s": summary.prediction.sleep,
        "total_s": round(summary.total, 3),
        "ideal_s": round(summary.prediction.ideal_total, 3),
        "ratio": round(ratio, 3),
        "target": target,
        "met": None if target is None else ratio <= target,
        "waves": [w.size for w in summary.waves],
        "failures": sum(summary.failures.values()),
        "excess_by_part_s": excess_by_part(timings, summary.prediction),
    }


def run_cases(plan, sleep, out, environment):
    """plan: [(Variant, requests per endpoint, Locust user classes)] -> list of case dicts."""
    cases = []
    for number, (variant, requests, classes) in enumerate(plan, start=1):
        users = requests * len(classes)
        print(f"[{number}/{len(plan)}] {variant.label}: {requests} requests per endpoint "
              f"({', '.join(classes)}), {sleep:g} s sleeps", flush=True)
        slug = f"{variant.label}-{requests}".replace(" ", "-")
        server = start_mode(variant.mode, {**environment, **variant.env}, out / f"{slug}_server.log")
        try:
            result = measure(variant, server, PROFILE, sleep, out / slug, requests, progress,
                             ["-u", str(users), "-r", str(users), *classes])
        finally:
            server.stop()
        cases += [case(variant, summary, result.pool, read_timings(f"{out / slug}_server_timing.csv", summary.endpoint))
                  for summary in result.summaries]
    return cases


def format_cases(cases):
    header = f"{'mode':<8}{'endpoint':<10}{'N':>6}{'total s':>10}{'ideal s':>10}{'ratio':>8}{'target':>8}  verdict"
    lines = [header, "-" * len(header)]
    for c in cases:
        if c["target"] is None:
            verdict = "no target (uneven by design)" if c["sleep_s"] == 1.0 else "no target (targets are for 1 s)"
        else:
            verdict = "met" if c["met"] else "MISSED"
        if c["met"] is False:
            # Name the part that costs most, from the measured split of the excess.
            part, seconds = max(c["excess_by_part_s"].items(), key=lambda item: item[1])
            verdict += f": most of the excess is {part.replace('_', ' ')} ({seconds * 1000:.0f} ms)"
        target = "" if c["target"] is None else f"{c['target']:.2f}"
        lines.append(f"{c['mode']:<8}{c['endpoint']:<10}{c['requests']:>6}{c['total_s']:>10.2f}"
                     f"{c['ideal_s']:>10.2f}{c['ratio']:>8.3f}{target:>8}  {verdict}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 5 only, 0.5 s sleeps, no 1000-request case")
    parser.add_argument("--out", default="reports/benchmark", help="output prefix: <out>.json, Locust files in <out>/")
    args = parser.parse_args(argv)
    sleep = 0.5 if args.quick else 1.0
    sizes = (5,) if args.quick else (5, 100)
    plan = [(Variant(mode, mode), n, ["PythonSleepUser", "PostgresSleepUser"]) for n in sizes for mode in MODES]
    if not args.quick:
        plan.append((Variant("green", "green"), 1000, ["PythonSleepUser"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    environment = {}
    if not os.environ.get("DATABASE_URL"):
        from server import embedded

        environment["DATABASE_URL"] = embedded.start().get_uri()
    started = time.time()
    try:
        cases = run_cases(plan, sleep, out, environment)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    table = format_cases(cases)
    print()
    print(table)
    Path(f"{out}.json").write_text(json.dumps(
        {"measured": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)), "sleep_s": sleep,
         "cpus": os.cpu_count(), "cases": cases}, indent=2) + "\n")
    print(f"\nwritten: {out}.json")
    missed = [c for c in cases if c["met"] is False]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
