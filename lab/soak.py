"""The benchmark's soak case: a steady run of minutes on one mode, both endpoints, and what it leaves behind.

A burst measures waves; a soak measures what a long run wears out: failures (target none), the worker's memory
(target: growth under 5% from the end of the warm-up to the end of the run, the warm-up being the first tenth of
the run, at most 30 s, when the pool fills and the first requests load what they load once), and the pool and
PostgreSQL's client backends once it stops (target: back to idle, no connection out, every backend one the pool
still holds, as before the run). Run only when named (`--case green-soak`): it lasts SoakCase.seconds.
"""

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import psutil

from contract import BadParameter, endpoint_of, parse_seconds

from .runs import USER_CLASSES
from .servers import ROOT, start_mode

MEMORY_TARGET = 0.05  # growth of the worker's RSS, end of warm-up to end of run
WARM_UP_SHARE, MOST_WARM_UP = 0.1, 30.0
# How long, after the run, the pool may take to see its last connections returned.
SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class SoakCase:
    """A steady run of `seconds` with `users` (split between the endpoints) on `mode`, sleeps of `sleep`."""
    name: str
    mode: str
    shows: str
    seconds: float = 600.0
    users: int = 60
    sleep: float = 0.0
    why: str = ("no failure; the worker's RSS grows less than 5% after its warm-up; the pool and PostgreSQL's "
                "backends back to idle at the end")
    # No ratio to judge by: its targets are the counts above.
    target: None = None
    judged_by: None = None

    @property
    def requests(self):
        """What --list shows in its N column: the users."""
        return self.users


CASES = [
    SoakCase("green-soak", "green", "a steady run of 10 minutes, both endpoints, 60 users looping with no wait; "
                                    "runs only when named (--case green-soak; --soak-seconds to shorten it)"),
]


def soak_seconds(raw):
    """--soak-seconds, checked: a number of seconds above 0 (argparse shows the message as it is)."""
    seconds = parse_seconds(raw, "--soak-seconds")
    if not seconds:
        raise BadParameter(f"--soak-seconds must be more than 0, got {raw!r}")
    return seconds


def pool_and_backends(running):
    """/pool's counts and PostgreSQL's client backends (/db's open_connections) as they are now."""
    _, pool = running.get_json("/pool")
    _, database = running.get_json("/db")
    return {**{key: pool[key] for key in ("checked_out", "checked_in", "overflow", "open_connections",
                                           "pool_size")},
            "backends": database["open_connections"], "pid": pool["pid"]}


def settled(running):
    """The pool once no connection is out (or SETTLE_SECONDS have passed)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    state = pool_and_backends(running)
    while state["checked_out"] and time.monotonic() < deadline:
        time.sleep(0.2)
        state = pool_and_backends(running)
    return state


def run_soak(case, out, environment, seconds=None):
    """Run `case` on a mode of its own (for `seconds`, else its own length); its row, as the benchmark's."""
    seconds = case.seconds if seconds is None else seconds
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / case.name
    running = start_mode(case.mode, environment, out / f"{case.name}_server.log")
    try:
        for endpoint in USER_CLASSES:  # one of each: the pool holds a connection, the routes are loaded
            running.get(f"/sleep/{endpoint}/?seconds=0")
        before = settled(running)
        worker = psutil.Process(before["pid"])
        memory = {"before": worker.memory_info().rss}
        warm_up = min(seconds * WARM_UP_SHARE, MOST_WARM_UP)
        sampler = threading.Timer(warm_up, lambda: memory.setdefault("warm", worker.memory_info().rss))
        command = [sys.executable, "-m", "locust", "--config", str(ROOT / "profiles" / "100-users.conf"),
                   "-H", running.url, "--behaviour", "steady", "--sleep-seconds", f"{case.sleep:g}",
                   "-u", str(case.users), "-r", str(case.users), "--run-time", f"{seconds:g}s",
                   "--csv", str(prefix), "--html", f"{prefix}.html", "--json-file", f"{prefix}_final",
                   *USER_CLASSES.values()]
        with open(f"{prefix}_locust.log", "w") as log:
            sampler.start()
            done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=seconds + 120)
        sampler.cancel()
        memory["end"] = worker.memory_info().rss
        after = settled(running)
    finally:
        running.stop()
    return soak_row(case, seconds, done.returncode, stats(prefix), memory, before, after)


def stats(prefix):
    """Requests and failures per endpoint, from Locust's final statistics (--json-file; its stats CSV is a
    snapshot of the last second but one)."""
    with open(f"{prefix}_final.json") as final:
        return {endpoint_of(entry["name"]): (entry["num_requests"], entry["num_failures"]) for entry in json.load(final)}


def soak_row(case, seconds, exit_code, counts, memory, before, after):
    """The soak's figures, each target judged: failures none, memory growth, pool and backends idle."""
    mib = 1024 * 1024
    warm = memory.get("warm", memory["before"])
    growth = memory["end"] / warm - 1
    # Every backend the run opened is closed, but those the pool keeps idle (QueuePool keeps pool_size).
    backends_idle = after["backends"] - before["backends"] == after["open_connections"] - before["open_connections"]
    pool_idle = after["checked_out"] == 0 and after["open_connections"] <= after["pool_size"]
    failures = sum(failed for _, failed in counts.values())
    checks = {"no failure": failures == 0, f"memory growth under {MEMORY_TARGET:.0%}": growth < MEMORY_TARGET,
              "pool idle": pool_idle, "backends idle": backends_idle}
    missed = [name for name, ok in checks.items() if not ok]
    return {
        "case": case.name, "mode": case.mode, "endpoint": "both", "kind": "soak", "seconds": seconds,
        "users": case.users, "sleep_s": case.sleep, "locust_exit": exit_code,
        "requests": sum(n for n, _ in counts.values()), "failures": failures,
        "per_endpoint": {endpoint: {"requests": n, "failures": failed} for endpoint, (n, failed) in counts.items()},
        "rss_mib": {stage: round(rss / mib, 1) for stage, rss in memory.items()},
        "rss_growth": round(growth, 4),
        "pool_before": before, "pool_after": after,
        "met": not missed,
        "verdict": "met" if not missed else f"MISSED: {', '.join(missed)}",
    }


def format_soak(row):
    """The soak's figures in a few lines."""
    rss = row["rss_mib"]
    before, after = row["pool_before"], row["pool_after"]
    per = ", ".join(f"{e} {c['requests']} ({c['failures']} failed)" for e, c in row["per_endpoint"].items())
    return "\n".join([
        f"{row['case']}: {row['seconds']:g} s steady on {row['mode']}, {row['users']} users, {row['sleep_s']:g} s "
        f"sleeps: {row['requests']} requests, {row['failures']} failed ({per})",
        f"  worker RSS: {rss['before']} MiB before, {rss.get('warm', rss['before'])} MiB after the warm-up, "
        f"{rss['end']} MiB at the end: growth {row['rss_growth']:+.1%} (target under {MEMORY_TARGET:.0%})",
        f"  pool at the end: {after['checked_out']} out, {after['checked_in']} idle (pool_size {after['pool_size']}; "
        f"before: {before['checked_in']} idle); PostgreSQL's client backends {after['backends']} "
        f"(before: {before['backends']})",
        f"  verdict: {row['verdict']}",
    ])

