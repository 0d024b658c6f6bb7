"""Run one Locust profile against every mode (or pool shape) and compare them.

    python -m lab.compare                                  # 5-users profile, sync/gevent/green
    python -m lab.compare --profile 100-users --modes green,fair
    python -m lab.compare --modes sync,gevent,green,threads,psycopg3   # and today's two answers
    python -m lab.compare --profile 100-users --pools 5+10,15+0,fair:5+10
    python -m lab.compare --profile 150-users --pools null,5+10 --pg-max-connections 50
    python -m lab.compare --profile 100-users --pools 5+10,fair:5+10,pgbouncer:5+10,pgbouncer:fair:5+10,pgbouncer:null

Locust drives the load (its CLI, one run per mode); the servers are the Procfile's
own commands on free ports, stopped on exit, Ctrl-C or failure (lab.runs).
"""

import argparse
import csv
import os
import re
import sys
import time
from pathlib import Path

import configargparse

from contract import ENDPOINTS, TOO_MANY_CONNECTIONS, SecondsOption

from . import render
from .runs import Measurement, main as run_main, run_all
from .servers import PROCFILE, ROOT

TABLE_COLUMNS = ("variant", "mode", "pool_class", "pool_size", "max_overflow", "requests", "sleep_s",
                 "python_total_s", "postgres_total_s", "sum_s", "python_waves", "postgres_waves",
                 "python_ideal_s", "postgres_ideal_s", "ideal_sum_s", "measured_over_ideal", "python_model_s",
                 "postgres_model_s", "model_sum_s", "measured_over_model", "failures",
                 "too_many_connections", "connect_median_ms", "connect_p95_ms", "peak_backends",
                 "uss_mib_per_backend")
# The original README's table: per variant, python, postgres and their sum, with waves and ideal; in the
# Markdown file, the connections' costs too.
SHOWN = (("variant", "variant"), ("python", "python_total_s"), ("postgres", "postgres_total_s"),
         ("sum", "sum_s"), ("ideal", "ideal_sum_s"), ("measured/ideal", "measured_over_ideal"),
         ("model", "model_sum_s"), ("measured/model", "measured_over_model"),
         ("python waves", "python_waves"), ("postgres waves", "postgres_waves"), ("failures", "failures"),
         ("refused", "too_many_connections"), ("connect ms p50", "connect_median_ms"),
         ("connect ms p95", "connect_p95_ms"), ("backends", "peak_backends"), ("MiB/backend", "uss_mib_per_backend"))
# The terminal's table fits 120 columns: the sums, their ratios and the waves (cut to WAVES_WIDTH);
# everything else is in the CSV and the Markdown file, and LEGEND says so under the table.
TERMINAL = (("variant", "variant"), ("python", "python_total_s", ">"), ("postgres", "postgres_total_s", ">"),
            ("sum", "sum_s", ">"), ("ideal", "ideal_sum_s", ">"), ("/ideal", "measured_over_ideal", ">"),
            ("/model", "measured_over_model", ">"), ("python waves", "python_waves_cut"),
            ("postgres waves", "postgres_waves_cut"), ("failed", "failures", ">"))
TERMINAL_WIDTH = 120
WAVES_WIDTH = 19
LEGEND = (
    "python, postgres, sum: each endpoint's total, and both, in s; ideal: the prediction's sum, in s (no CPU)",
    "/ideal, /model: the measured sum over the ideal, and over the CPU model's sum (model_sum_s in the CSV)",
    "waves: sizes of the groups of answers that finished together (cut with '...'; all of them in the CSV)",
    "failed: failed requests; too_many_connections (refused), connect times, PostgreSQL backends and their",
    "  memory are per variant in the CSV and the Markdown file, and the model's arithmetic is below",
)


def cut(text, width=WAVES_WIDTH):
    """Wave sizes that fit `width` characters: whole numbers only, then '...'."""
    if len(text) <= width:
        return text
    return text[:text.rfind(" ", 0, width - 3)] + " ..."


def terminal_table(rows):
    """The comparison as the terminal shows it: TERMINAL's columns, then LEGEND."""
    shown = [{**row, **{f"{e}_waves_cut": cut(row[f"{e}_waves"]) for e in ENDPOINTS}} for row in rows]
    return render.format_table(TERMINAL, shown) + "\n\n" + "\n".join(LEGEND)


# A pool shape's prefix that runs it through PgBouncer (PGBOUNCER=true): pgbouncer:5+10, pgbouncer:null.
THROUGH_PGBOUNCER = "pgbouncer:"


def parse_pools(spec, mode):
    """'5+10,15+0,fair:5+10,null,pgbouncer:5+10' -> (label, mode, environment) for those pool shapes
    (and pool class; through PgBouncer with the pgbouncer: prefix)."""
    variants = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        pooler = item.startswith(THROUGH_PGBOUNCER)
        shape = item.removeprefix(THROUGH_PGBOUNCER)
        through = ({"PGBOUNCER": "true"}, " pgbouncer") if pooler else ({}, "")
        if shape == "null":
            variants.append((f"{mode} null{through[1]}", mode, {"POOL_CLASS": "null", **through[0]}))
            continue
        match = re.fullmatch(r"(?:(queue|fair):)?(\d+)\+(\d+)", shape)
        if not match:
            raise argparse.ArgumentTypeError(f"pool shape {item!r} is not like 5+10, fair:5+10, null or "
                                             f"pgbouncer:5+10")
        pool_class, size, overflow = match.group(1) or "queue", match.group(2), match.group(3)
        label = f"{mode} {size}+{overflow}" + (" fair" if pool_class == "fair" else "") + through[1]
        variants.append((label, mode, {"POOL_SIZE": size, "MAX_OVERFLOW": overflow, "POOL_CLASS": pool_class,
                                       **through[0]}))
    return variants


def profile_path(name):
    path = Path(name)
    if not path.exists():
        path = ROOT / "profiles" / f"{name}.conf"
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no profile {name!r} (try 5-users or 100-users)")
    return path.resolve()


def table_row(result):
    """One result as a row of the comparison (TABLE_COLUMNS)."""
    facts, sleep = result.facts, result.measurement.sleep
    row = {"variant": result.measurement.name, "mode": facts["mode"], "pool_class": facts["pool_class"].rsplit(".", 1)[-1],
           "pool_size": facts["pool_size"], "max_overflow": facts["max_overflow"],
           "requests": max(s.completed for s in result.summaries), "sleep_s": sleep,
           "failures": sum(s.failed for s in result.summaries),
           "too_many_connections": sum(s.failures[TOO_MANY_CONNECTIONS] for s in result.summaries),
           **{key: result.costs.get(key, "") for key in TABLE_COLUMNS[-4:]}}
    totals, ideals, models = [], [], []
    for endpoint in ENDPOINTS:
        s = result.summary(endpoint)
        model = s and s.prediction.model_total
        row[f"{endpoint}_total_s"] = f"{s.total:.2f}" if s else ""
        row[f"{endpoint}_waves"] = render.sizes(w.size for w in s.waves) if s else ""
        row[f"{endpoint}_ideal_s"] = f"{s.prediction.ideal_total:.2f}" if s else ""
        row[f"{endpoint}_model_s"] = f"{model:.2f}" if model else ""
        if s:
            totals.append(s.total)
            ideals.append(s.prediction.ideal_total)
            models.append(model)
    # A model for the sum only when every endpoint has one: a sum of a model and an ideal is neither.
    model_sum = sum(models) if models and all(models) else None
    row.update(sum_s=f"{sum(totals):.2f}", ideal_sum_s=f"{sum(ideals):.2f}",
               measured_over_ideal=f"{sum(totals) / sum(ideals):.2f}" if sum(ideals) else "",
               model_sum_s=f"{model_sum:.2f}" if model_sum else "",
               measured_over_model=f"{sum(totals) / model_sum:.2f}" if model_sum else "")
    return row


def model_lines(results):
    """Per variant and endpoint, the model's arithmetic: where its difference from the ideal comes from."""
    return [f"{result.measurement.name} {s.endpoint}: {s.prediction.model_explained()}"
            for result in results for s in result.summaries if s.prediction]


def write_markdown(path, rows, profile, sleep):
    lines = [f"# pool-lab comparison: {profile.stem}, {sleep:g} s sleeps", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python -m lab.compare`.", "",
             render.format_table(SHOWN, rows, markdown=True)]
    Path(path).write_text("\n".join(lines) + "\n")


def write_csv(path, rows):
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", type=profile_path, default="5-users",
                        help="a profile name from profiles/ or a path (default: 5-users)")
    parser.add_argument("--sleep-seconds", type=SecondsOption("--sleep-seconds"), default="",
                        help="seconds each request sleeps (default: the profile's)")
    parser.add_argument("--modes", default="sync,gevent,green",
                        help=f"Procfile modes to compare, from {', '.join(PROCFILE)} (default: sync,gevent,green)")
    parser.add_argument("--pools", default=None,
                        help="compare pool shapes at one mode instead, e.g. 5+10,15+0,fair:5+10,null; "
                             "pgbouncer:SHAPE runs a shape through PgBouncer")
    parser.add_argument("--pg-max-connections", type=int, default=None, metavar="N",
                        help="the embedded PostgreSQL's max_connections for this comparison (PG_MAX_CONNECTIONS)")
    parser.add_argument("--mode", default="green", help="the mode --pools runs in (default: green)")
    parser.add_argument("--use-running", action="store_true",
                        help="measure the modes already running on their Procfile ports (honcho start)")
    parser.add_argument("--out", default="reports/compare",
                        help="output prefix: <out>.md, <out>.csv, <out>.png, Locust files in <out>/")
    args = parser.parse_args(argv)
    unknown = [m for m in [*args.modes.split(","), args.mode] if m not in PROCFILE]
    if unknown:
        parser.error(f"unknown mode {', '.join(unknown)}; the Procfile has {', '.join(PROCFILE)}")
    if args.pools:
        try:
            variants = parse_pools(args.pools, args.mode)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
        if args.use_running:
            parser.error("--pools starts its own servers; it cannot use running ones")
    else:
        variants = [(mode, mode, {}) for mode in args.modes.split(",")]
    if args.pg_max_connections is not None:
        if os.environ.get("DATABASE_URL") or args.use_running:
            parser.error("--pg-max-connections sets the embedded PostgreSQL's: not with DATABASE_URL or --use-running")
        if args.pg_max_connections < 4:
            parser.error("--pg-max-connections must be at least 4")
    with open(args.profile) as profile_file:
        profile = configargparse.DefaultConfigFileParser().parse(profile_file)
    args.sleep_seconds = float(args.sleep_seconds or profile.get("sleep-seconds") or 5)
    # Locust splits the profile's users evenly between the two user classes.
    requests = int(profile.get("users", 2)) // len(ENDPOINTS)
    args.measurements = [Measurement(label, mode, args.profile, args.sleep_seconds, requests, env=env)
                         for label, mode, env in variants]
    return args


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)

    def run():
        results = run_all(args.measurements, out, args.use_running, args.pg_max_connections)
        rows = [table_row(result) for result in results]
        print()
        print(terminal_table(rows))
        print("\n" + "\n".join(model_lines(results)))
        write_markdown(f"{out}.md", rows, args.profile, args.sleep_seconds)
        write_csv(f"{out}.csv", rows)
        from .plot import plot_completions

        plot_completions(f"{out}.png", results, f"pool-lab: {args.profile.stem}, {args.sleep_seconds:g} s sleeps, "
                                                 f"measured {time.strftime('%Y-%m-%d %H:%M')}")
        print(f"\nwritten: {out}.md, {out}.csv, {out}.png (Locust's files in {out}/)")
        return 0
    return run_main(run, "compare")


if __name__ == "__main__":
    sys.exit(main())
