"""How close the lab comes to its ideal: measured total / ideal total, per mode and endpoint.

    python -m lab.benchmark                 # every case, d = 1 s (5 s for the 10,000; about 15 minutes)
    python -m lab.benchmark --quick         # the N = 5 cases, d = 0.5 s: a smoke run
    python -m lab.benchmark --list          # the cases, with what each shows
    python -m lab.benchmark --case fair-postgres-100 --case green-python-1000
    python -m lab.benchmark --case green-soak   # the soak: 10 minutes steady (lab.soak), only when named

The ideal is N x d when a mode serializes, d when it overlaps, ceil(N / T) x d past T
threads, ceil(N / P) x d past the pool limit P; the model adds the CPU the requests cost, the
workers' and the load generator's, spread over what runs at once (lab.waves.cpu_model, c from the
mode's calibration, lab.calibration). Each case declares its target (on a 2-core machine, for
d = 1 s unless it says otherwise), on which ratio, and why: on the ideal a ceiling, on the model
two-sided; a case with failures or unanswered requests misses whatever its ratio. The `bare`
cases set the lab's CPU per request beside a bare Flask app's (lab.bare), which also gives each
case its physical limit.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import files, render, soak
from .bare import Servers as BareServers, measure as measure_bare
from .runs import Measurement, main as run_main, run_all
from .servers import ROOT, free_port
from .waves import parallel_workers

PROFILE = ROOT / "profiles" / "100-users.conf"
CLEAN_TARGET = 1.03
CLEAN_WHY = "clean waves: only fixed costs remain"
# Targets are set for 1 s sleeps: fixed costs weigh more on shorter ones.
TARGET_SLEEP = 1.0
# The embedded PostgreSQL's max_connections for the benchmark: above 100 + the lab's own
# connections, below 150, so the NullPool cases land on both sides of the wall.
MAX_CONNECTIONS = 120


@dataclass(frozen=True)
class Case:
    """A burst of `requests` on one endpoint of one mode, and the ratio it must reach.

    `target` on the ideal is the most measured/ideal may be: the ideal is a floor, no burst answers
    before its sleeps. On the model it is the most |measured/model - 1| may be: a model wrong
    either way misleads whoever plans with it."""
    name: str
    mode: str
    endpoint: str
    requests: int
    shows: str
    target: float | None = CLEAN_TARGET
    why: str = CLEAN_WHY
    # What the target is a ratio to: "ideal" (the waves' sleeps only), "model" (with the CPU), or
    # "bare" (the lab's CPU per request over a bare Flask app's, lab/bare.py).
    judged_by: str = "ideal"
    # "socket": the embedded PostgreSQL on its Unix socket (or DATABASE_URL); "tcp": one of the
    # benchmark's own on 127.0.0.1, for what a TCP handshake adds to a new connection.
    database: str = "socket"
    # The sleep its target is set for (TARGET_SLEEP when None: the run's --quick or full sleep).
    sleep: float | None = None
    # The server's settings beyond its Procfile line, and the Locust profile and spawn rate it runs with.
    env: dict = field(default_factory=dict)
    profile: Path = PROFILE
    spawn_rate: int | None = None


# The lab's handler does what a bare one need not: it checks its parameter, times itself for the
# report, names its mode and worker, and runs inside Flask-SQLAlchemy's app; a quarter more CPU than
# the bare minimum keeps the lab's own cost small beside what it measures.
BARE_TARGET = 1.25
BARE_WHY = "what the lab adds to each request to measure it, at most a quarter of the bare minimum"
SERIAL = "a sync worker answers one request at a time: waves of 1"
OVERLAPPED = "time.sleep yields to other greenlets: one wave"
BLOCKED = "unpatched psycopg2 blocks the whole gevent worker: waves of 1"
POOLED = "psycogreen: queries overlap, in waves of the pool limit (15)"
FAIR = "the fair pool: every wave holds the pool limit (15)"
THREADS = "gthread: up to THREADS (8) requests at once, each in a thread"
THREAD_WAVES = "gthread past its 8 threads: waves of 8"
PSYCOPG3 = "psycopg 3 waits through gevent by itself: queries overlap, in waves of the pool limit (15)"
CASES = [
    Case("sync-python-5", "sync", "python", 5, SERIAL),
    Case("sync-postgres-5", "sync", "postgres", 5, SERIAL),
    Case("gevent-python-5", "gevent", "python", 5, OVERLAPPED),
    Case("gevent-postgres-5", "gevent", "postgres", 5, BLOCKED),
    Case("green-python-5", "green", "python", 5, OVERLAPPED),
    Case("green-postgres-5", "green", "postgres", 5, POOLED),
    Case("fair-python-5", "fair", "python", 5, OVERLAPPED),
    Case("fair-postgres-5", "fair", "postgres", 5, FAIR),
    Case("threads-python-5", "threads", "python", 5, THREADS),
    Case("threads-postgres-5", "threads", "postgres", 5, THREADS),
    Case("psycopg3-python-5", "psycopg3", "python", 5, OVERLAPPED),
    Case("psycopg3-postgres-5", "psycopg3", "postgres", 5, PSYCOPG3),
    Case("sync-python-100", "sync", "python", 100, SERIAL),
    Case("sync-postgres-100", "sync", "postgres", 100, SERIAL),
    Case("gevent-python-100", "gevent", "python", 100, OVERLAPPED),
    Case("gevent-postgres-100", "gevent", "postgres", 100, BLOCKED),
    Case("green-python-100", "green", "python", 100, OVERLAPPED),
    Case("green-postgres-100", "green", "postgres", 100,
         "past the pool limit, stock QueuePool's later waves shrink (docs/uneven-waves.md)",
         target=None, why="uneven by design"),
    Case("fair-python-100", "fair", "python", 100, OVERLAPPED),
    Case("fair-postgres-100", "fair", "postgres", 100, FAIR),
    Case("threads-python-100", "threads", "python", 100, THREAD_WAVES),
    Case("threads-postgres-100", "threads", "postgres", 100,
         THREAD_WAVES + ", below the pool limit of 15, so no request waits for a connection"),
    Case("psycopg3-python-100", "psycopg3", "python", 100, OVERLAPPED),
    Case("psycopg3-postgres-100", "psycopg3", "postgres", 100,
         "past the pool limit, stock QueuePool's later waves shrink, as with psycopg2 (docs/uneven-waves.md)",
         target=None, why="uneven by design"),
    Case("green-python-1000", "green", "python", 1000, "1000 overlapped sleeps on one worker",
         target=0.05, judged_by="model",
         why="one worker runs every request's Python one after another: the CPU model counts it"),
    Case("nullpool-postgres-100", "nullpool", "postgres", 100,
         "no pool limit: one wave, each request opening a connection of its own",
         target=None, why="reported: opening 100 connections is the cost"),
    Case("nullpool-postgres-100-tcp", "nullpool", "postgres", 100,
         "the same over loopback TCP: what the handshake adds to each new connection",
         target=None, why="reported, beside nullpool-postgres-100", database="tcp"),
    Case("nullpool-postgres-150", "nullpool", "postgres", 150,
         f"past max_connections ({MAX_CONNECTIONS}): PostgreSQL refuses at once what it cannot take",
         target=None, why="what counts is the split, which must be exact"),
    Case("bouncer-postgres-100", "bouncer", "postgres", 100,
         "NullPool through PgBouncer: waves of its default_pool_size (20), each request still opening a client "
         "connection, to the pooler",
         target=0.05, judged_by="model",
         why="full waves, the worker's Python counted by the CPU model; beside it five hand-overs through "
             "PgBouncer and a client connection per request"),
    Case("green-python-10000", "green", "python", 10000,
         "10,000 overlapped 5 s sleeps: 2 Gunicorn workers, 2 Locust processes (profiles/10k-users.conf)",
         target=0.10, judged_by="model", sleep=5.0, profile=ROOT / "profiles" / "10k-users.conf", spawn_rate=1000,
         env={"WEB_CONCURRENCY": "2", "WORKER_CONNECTIONS": "10000"},
         why="every request answered, none failed; 10,000 requests' CPU, the server's and Locust's, shares 2 "
             "cores: the model counts it, with what it leaves out at this size"),
    # The bare group: the lab's green mode beside a bare Flask app under the same gevent worker.
    *(Case(f"bare-python-{n}", "green", "python", n, shows, target=BARE_TARGET, judged_by="bare", why=BARE_WHY)
      for n, shows in ((1, "requests one after another: the lab's CPU per request over a bare Flask app's"),
                       (100, "100 concurrent sleeps: the lab's CPU per request over a bare Flask app's"),
                       (1000, "1000 concurrent sleeps: the lab's CPU per request over a bare Flask app's"))),
]


def meets(target, judged_by, ratio):
    """Whether a ratio meets its target: at most the target on the ideal or the bare app, within it either
    way on the model."""
    return abs(ratio - 1) <= target if judged_by == "model" else ratio <= target


def target_text(target, judged_by):
    return "" if target is None else f"±{target:.2f} model" if judged_by == "model" else f"{target:.2f} {judged_by}"


# The two parts of the last answer's excess that the model gives a share (excess_by_part, modelled_parts).
SENDING = "load_generator_sending"
SERVER_QUEUEING = "server_queueing_beyond_earlier_waves"


def modelled_parts(prediction):
    """What the model gives the measured parts of the excess (excess_by_part): its release is how late the
    load generator sends the last request, the rest of its CPU how long the server holds it (whichever
    spread decided it: the server's handler starts late whether the worker or the load generator's
    sending is slower); every other part it counts as nothing."""
    release = prediction.release_cpu
    return {SENDING: release, SERVER_QUEUEING: prediction.cpu_total - release}


def model_miss(prediction, total, parts=None):
    """Which side of the model a run fell on, and the part that was off: the model's CPU when it was too
    high; of the measured `parts` (excess_by_part), the one furthest from the model on the side it fell."""
    over = total >= prediction.model_total
    if over:
        side = f"{total / prediction.model_total - 1:.0%} over the model"
    else:
        release = "the load generator's release, then " if prediction.release_cpu else ""
        side = (f"the model is {prediction.model_total / total - 1:.0%} higher than this run: its CPU, "
                f"{prediction.cpu_total:.2f} s ({release}{prediction.cpu_decided_by}), is more than this run's "
                f"{total - prediction.ideal_total:.2f} s beyond the ideal")
    if not parts:
        return side
    modelled = modelled_parts(prediction)
    off = {part: seconds - modelled.get(part, 0.0) for part, seconds in parts.items()}
    part = max(off, key=off.get) if over else min(off, key=off.get)
    return (f"{side}: the part furthest off is {part.replace('_', ' ')}, {1000 * parts[part]:.0f} ms against the "
            f"model's {1000 * modelled.get(part, 0.0):.0f} ms")


def bare_row(case, measured):
    """A bare case: the lab's CPU per request over the bare app's, at the case's N, against its target."""
    lab, bare = measured["lab"], measured["bare"]
    ratio = lab["cpu_per_request"] / bare["cpu_per_request"]
    met = meets(case.target, case.judged_by, ratio)
    return {"case": case.name, "mode": case.mode, "endpoint": case.endpoint, "requests": case.requests,
            "lab_cpu_ms": round(1000 * lab["cpu_per_request"], 4), "bare_cpu_ms": round(1000 * bare["cpu_per_request"], 4),
            "cpu_ratio": round(ratio, 3), "target": case.target, "judged_by": case.judged_by, "met": met,
            "verdict": "met" if met else f"MISSED: the lab's handler costs {ratio - 1:.0%} more CPU than the bare app's",
            "lab": lab, "bare": bare}


def physical_limit(prediction, facts, bare_rows):
    """What this machine allows a case: its ideal plus N x the bare app's CPU per request (of the bare
    case nearest its N), spread over the cores the server can use, by the model's wave arithmetic."""
    if prediction is None or not facts or not bare_rows:
        return None
    nearest = min(bare_rows, key=lambda row: abs(math.log(row["requests"] / max(prediction.requests, 1))))["bare"]
    before = nearest["cpu_before_sleep"]
    if before is None and prediction.cpu_before_sleep is not None and prediction.cpu_per_request:
        # A bare burst whose CPU still grew late in its sleep (N = 1000: the release and the fronts outlast
        # it) has no part before the sleep to read: split its c as the lab's calibration split the lab's.
        before = nearest["cpu_per_request"] * prediction.cpu_before_sleep / prediction.cpu_per_request
    bare = dataclasses.replace(prediction, cpu_per_request=nearest["cpu_per_request"], cpu_before_sleep=before,
                               load_cpu_per_request=None)
    return bare.ideal_total + bare.server_cpu / parallel_workers(facts)


def excess_by_part(timings, prediction, pgbouncer=False):
    """Split the last answer's time beyond the ideal into measured parts (seconds).

    The parts add up to total - ideal: how late the load generator sent it, how long the
    server kept it beyond the earlier waves' turn, how far the sleep ran over (the database's
    pg_sleep for postgres, the server's event loop for python), and the response's way back.
    `pgbouncer`: the earlier waves' turn is spent in PgBouncer's queue, inside the query's time.
    """
    if not timings:
        return {}
    sleep = prediction.sleep
    start = min(t["sent"] for t in timings)
    last = max(timings, key=lambda t: t["done"])
    handler = last["server_finished"] - last["server_started"]
    pool_wait = last["pool_wait"] or 0.0
    connect = last.get("connect_seconds") or 0.0  # part of pool_wait: opening a new connection
    earlier_waves = (len(prediction.wave_sizes) - 1 - bool(prediction.refused)) * sleep
    in_the_server, in_the_query = (0.0, earlier_waves) if pgbouncer else (earlier_waves, 0.0)
    parts = {
        SENDING: last["sent"] - start,
        SERVER_QUEUEING: last["server_started"] - last["sent"] + pool_wait - connect - in_the_server,
    }
    if connect:
        parts["opening_the_database_connection"] = connect
    if last["query_seconds"] != "" and pgbouncer:
        parts["pooler_queue_and_pg_sleep_beyond_earlier_waves"] = last["query_seconds"] - sleep - in_the_query
        parts["server_rest_of_handler"] = handler - pool_wait - last["query_seconds"]
    elif last["query_seconds"] != "":
        parts["database_pg_sleep_overrun"] = last["query_seconds"] - sleep
        parts["server_rest_of_handler"] = handler - pool_wait - last["query_seconds"]
    else:
        parts["server_sleep_overrun"] = handler - sleep
    parts["response_server_write_and_load_generator_read"] = last["done"] - last["server_finished"]
    return {part: round(seconds, 4) for part, seconds in parts.items()}


def case_row(case, result, timings_path):
    """One measured case: its ratio against its target, and what the excess is made of."""
    summary = result.summary(case.endpoint)
    target = case.target if summary.prediction.sleep == (case.sleep or TARGET_SLEEP) else None
    model = summary.prediction.model_total
    judged = summary.ratio if case.judged_by == "ideal" else summary.model_ratio
    row = {
        "case": case.name,
        "mode": case.mode,
        "endpoint": case.endpoint,
        "requests": summary.completed,
        "sleep_s": summary.prediction.sleep,
        "total_s": round(summary.total, 3),
        "ideal_s": round(summary.prediction.ideal_total, 3),
        # None for a burst cut short: a total of what was answered is no measure of it.
        "ratio": None if summary.ratio is None else round(summary.ratio, 3),
        "model_s": None if model is None else round(model, 3),
        "model_ratio": None if summary.model_ratio is None else round(summary.model_ratio, 3),
        "model": summary.prediction.model_explained(),
        "target": target,
        "judged_by": case.judged_by,
        "met": None if target is None or judged is None else meets(target, case.judged_by, judged),
        "waves": [w.size for w in summary.waves],
        "failures": summary.failed,
        # Predicted from /db before the run: requests the database refuses at once.
        "refused_predicted": summary.prediction.refused,
        "refused": summary.failures[summary.prediction.refused_as],
        "excess_by_part_s": excess_by_part(files.read_server_timings(timings_path, case.endpoint), summary.prediction,
                                           bool(result.facts.get("pgbouncer"))),
        "costs": result.costs,
    }
    unanswered = case.requests - summary.completed
    named_part = False
    if target is None:
        row["verdict"] = (f"no target ({case.why})" if case.target is None else
                          f"no target (its target is for {case.sleep or TARGET_SLEEP:g} s)")
    elif judged is None:
        row["verdict"] = f"no verdict: its target is on the model, and {summary.prediction.model_explained()}"
    else:
        row["verdict"] = "met" if row["met"] else "MISSED"
        if not row["met"] and case.judged_by == "model":
            row["verdict"] += f": {model_miss(summary.prediction, summary.total, row['excess_by_part_s'])}"
            named_part = bool(row["excess_by_part_s"])  # the part furthest from the model
    if not summary.prediction.refused and (row["failures"] or unanswered):
        # A ratio of what was answered says nothing of what failed: a case meets its target whole or not at all.
        row["met"], named_part = False, False
        row["verdict"] = f"MISSED: {row['failures']} failed, {unanswered} unanswered"
    if row["refused_predicted"] or row["refused"]:
        split = row["refused"] == row["refused_predicted"]
        row["met"], named_part = split and row["met"] is not False, False
        row["verdict"] = (f"{'split exact' if split else 'MISSED: split'}: {row['refused']} refused, "
                          f"{row['refused_predicted']} predicted")
    if row["met"] is False and row["excess_by_part_s"] and not named_part:
        # Name the part that costs most, from the measured split of the excess.
        part, seconds = max(row["excess_by_part_s"].items(), key=lambda item: item[1])
        row["verdict"] += f": most of the excess is {part.replace('_', ' ')} ({seconds * 1000:.0f} ms)"
    if row["met"] is False and (result.costs or {}).get("listen_overflows"):
        # Machine-wide, and no CPU: a connection the full listen queue turned away waits for its SYN retry.
        row["verdict"] += (f"; the kernel turned away {result.costs['listen_overflows']} connection attempts, its "
                           f"listen queue full: each waited 1 s or more for a SYN retry, which no model here counts")
    return row


def format_rows(rows):
    shown = [{**row, "total_s": f"{row['total_s']:.2f}", "ideal_s": f"{row['ideal_s']:.2f}",
              "ratio": "" if row["ratio"] is None else f"{row['ratio']:.3f}", "model_s": "" if row["model_s"] is None else f"{row['model_s']:.2f}",
              "model_ratio": "" if row["model_ratio"] is None else f"{row['model_ratio']:.3f}",
              "limit_s": "" if row.get("limit_s") is None else f"{row['limit_s']:.2f}",
              "target": target_text(row["target"], row["judged_by"])}
             for row in rows]
    table = render.format_table((("case", "case"), ("N", "requests", ">"), ("total s", "total_s", ">"),
                                 ("ideal s", "ideal_s", ">"), ("/ideal", "ratio", ">"), ("limit s", "limit_s", ">"),
                                 ("model s", "model_s", ">"),
                                 ("/model", "model_ratio", ">"), ("target", "target", ">"), ("verdict", "verdict")),
                                shown)
    # The model's arithmetic, once per case that has one: where its difference from the ideal comes from.
    return "\n".join([table, "", *(f"{row['case']}: {row['model']}" for row in rows)])


def format_cases(cases):
    return render.format_table((("case", "name"), ("N", "requests", ">"), ("target", "target", ">"),
                                ("shows", "shows"), ("why", "why")),
                               [{**vars(c), "requests": c.requests, "target": target_text(c.target, c.judged_by)}
                                for c in cases])


def run_bare(cases, sleep, out, max_connections):
    """The bare cases' rows: the lab's mode and the bare app started once for all of them."""
    if not cases:
        return []
    from .database import database_url

    rows = []
    out.mkdir(parents=True, exist_ok=True)
    with BareServers(cases[0].mode, {"DATABASE_URL": database_url(max_connections)}, out) as servers:
        for number, case in enumerate(cases, start=1):
            print(f"[bare {number}/{len(cases)}] {case.name}: the {case.mode} mode beside the bare app, N = "
                  f"{case.requests}", flush=True)
            rows.append(bare_row(case, measure_bare(case.requests, sleep, servers.lab, servers.bare)))
    return rows


def format_bare_rows(rows):
    shown = [{**row, "lab_cpu_ms": f"{row['lab_cpu_ms']:.3f}", "bare_cpu_ms": f"{row['bare_cpu_ms']:.3f}",
              "cpu_ratio": f"{row['cpu_ratio']:.3f}", "target": target_text(row["target"], row["judged_by"])}
             for row in rows]
    return render.format_table((("case", "case"), ("N", "requests", ">"), ("lab ms CPU/request", "lab_cpu_ms", ">"),
                                ("bare ms CPU/request", "bare_cpu_ms", ">"), ("lab/bare", "cpu_ratio", ">"),
                                ("target", "target", ">"), ("verdict", "verdict")), shown)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the N = 5 cases only, at 0.5 s sleeps")
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES + soak.CASES], metavar="NAME",
                        help="run only this case (repeatable); --list shows them")
    parser.add_argument("--soak-seconds", type=soak.soak_seconds, default=None,
                        help="how long a soak case runs (its own: 600); a soak runs only when named with --case")
    parser.add_argument("--list", action="store_true", help="list the cases with what each shows, and exit")
    parser.add_argument("--out", default="reports/benchmark", help="output prefix: <out>.json, Locust files in <out>/")
    args = parser.parse_args(argv)
    if args.list:
        print(format_cases(CASES + soak.CASES))
        return 0
    cases = [c for c in CASES if (c.name in args.case if args.case else not args.quick or c.requests == 5)]
    soaks = [c for c in soak.CASES if c.name in (args.case or ())]
    sleep = 0.5 if args.quick else TARGET_SLEEP
    from server.config import pg_max_connections

    # The embedded PostgreSQL's, unless PG_MAX_CONNECTIONS says otherwise; a DATABASE_URL keeps its own ceiling.
    max_connections = pg_max_connections() or MAX_CONNECTIONS
    out = Path(args.out)

    def run():
        started = time.time()
        env = {"socket": {}}
        if any(c.database == "tcp" for c in cases):
            import embedded_pg

            out.mkdir(parents=True, exist_ok=True)
            _, tcp_url, _ = embedded_pg.start_on_tcp((out / "tcp-pgdata").resolve(), free_port(),
                                                     max_connections)
            env["tcp"] = {"DATABASE_URL": tcp_url}
        bursts = [c for c in cases if c.judged_by != "bare"]
        results = run_all([Measurement(c.name, c.mode, c.profile, sleep if args.quick else c.sleep or sleep, c.requests,
                                       (c.endpoint,), {**env[c.database], **c.env}, c.spawn_rate)
                           for c in bursts], out, max_connections=max_connections) if bursts else []
        rows = [case_row(case, result, f"{out / result.measurement.slug}_server_timing.csv")
                for case, result in zip(bursts, results)]
        bare_rows = run_bare([c for c in cases if c.judged_by == "bare"], sleep, out, max_connections)
        for row, result in zip(rows, results):
            limit = physical_limit(result.summary(row["endpoint"]).prediction, result.facts, bare_rows)
            row["limit_s"] = None if limit is None else round(limit, 3)
        print()
        if rows:
            print(format_rows(rows))
        if bare_rows:
            print()
            print(format_bare_rows(bare_rows))
        rows += bare_rows
        if soaks:
            from .database import database_url

            soak_env = {"DATABASE_URL": database_url(max_connections)}
            for case in soaks:
                print(f"{case.name}: {args.soak_seconds or case.seconds:g} s steady on {case.mode}", flush=True)
                rows.append(soak.run_soak(case, out, soak_env, args.soak_seconds))
                print(soak.format_soak(rows[-1]))
        Path(f"{out}.json").write_text(json.dumps(
            {"measured": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)), "sleep_s": sleep,
             "cpus": os.cpu_count(), "load_average": os.getloadavg(), "cases": rows}, indent=2) + "\n")
        print(f"\nwritten: {out}.json")
        return 1 if any(row["met"] is False for row in rows) else 0
    return run_main(run, "benchmark")


if __name__ == "__main__":
    sys.exit(main())
