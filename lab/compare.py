"""Run one Locust profile against every mode (or pool shape) and compare them.

    python -m lab.compare                                  # 5-users profile, sync/gevent/green
    python -m lab.compare --profile 100-users --modes green,fair
    python -m lab.compare --profile 100-users --pools 5+10,15+0,fair:5+10

Locust drives the load (its CLI, one run per mode); the servers are the Procfile's
own commands on free ports, stopped on exit, Ctrl-C or failure.
"""

import argparse
import csv
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import configargparse

from . import report
from .servers import PROCFILE, ROOT, LabServer, start_mode

ENDPOINTS = ("python", "postgres")
TABLE_COLUMNS = ("variant", "mode", "pool_class", "pool_size", "max_overflow", "requests", "sleep_s",
                 "python_total_s", "postgres_total_s", "sum_s", "python_waves", "postgres_waves",
                 "python_ideal_s", "postgres_ideal_s", "ideal_sum_s", "measured_over_ideal", "failures")


@dataclass
class Variant:
    """One server to measure: a Procfile mode, with environment overrides."""
    label: str
    mode: str
    env: dict = field(default_factory=dict)


@dataclass
class Result:
    variant: Variant
    pool: dict
    summaries: list
    completions: dict

    def summary(self, endpoint):
        return next((s for s in self.summaries if s.endpoint == endpoint), None)


def parse_pools(spec, mode):
    """'5+10,15+0,fair:5+10' -> Variants of `mode` with those pool shapes (and pool class)."""
    variants = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        match = re.fullmatch(r"(?:(queue|fair):)?(\d+)\+(\d+)", item)
        if not match:
            raise argparse.ArgumentTypeError(f"pool shape {item!r} is not like 5+10 or fair:5+10")
        pool_class, size, overflow = match.group(1) or "queue", match.group(2), match.group(3)
        label = f"{mode} {size}+{overflow}" + (" fair" if pool_class == "fair" else "")
        variants.append(Variant(label, mode, {"POOL_SIZE": size, "MAX_OVERFLOW": overflow,
                                              "POOL_CLASS": pool_class}))
    return variants


def default_port(mode):
    """The port the Procfile gives a mode, honouring its *_PORT variable as honcho would."""
    match = re.search(r"\$\{(\w+_PORT):-(\d+)\}", PROCFILE[mode])
    return int(os.environ.get(match.group(1)) or match.group(2))


def read_profile(path):
    with open(path) as profile:
        return configargparse.DefaultConfigFileParser().parse(profile)


def profile_path(name):
    path = Path(name)
    if not path.exists():
        path = ROOT / "profiles" / f"{name}.conf"
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no profile {name!r} (try 5-users or 100-users)")
    return path.resolve()


def count_answers(request_log):
    """Answered requests per endpoint so far, for the progress line."""
    counts = dict.fromkeys(ENDPOINTS, 0)
    try:
        counts.update({endpoint: len(done) for endpoint, done in report.read_request_log(request_log).items()})
    except FileNotFoundError:
        pass
    return counts


def run_locust(variant, server, profile, sleep, prefix, per_endpoint, progress, extra_args=()):
    """One headless Locust run of `profile` against `server`; returns its exit code."""
    command = [sys.executable, "-m", "locust", "--config", str(profile), "-H", server.url,
               "--csv", str(prefix), "--html", f"{prefix}.html", "--sleep-seconds", str(sleep),
               *extra_args]
    with open(f"{prefix}_locust.log", "w") as log:
        locust = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        try:
            shown = None
            while locust.poll() is None:
                counts = count_answers(f"{prefix}_requests.csv")
                if counts != shown:
                    shown = counts
                    progress(variant.label + ": " + ", ".join(
                        f"{endpoint} {counts[endpoint]}/{per_endpoint}" for endpoint in ENDPOINTS))
                time.sleep(0.5)
        finally:
            if locust.poll() is None:
                locust.terminate()
                locust.wait()
    return locust.returncode


def measure(variant, server, profile, sleep, prefix, per_endpoint, progress, extra_args=()):
    status, pool = server.get_json("/pool")
    if status != 200:
        raise RuntimeError(f"{variant.label}: /pool answered {status}")
    code = run_locust(variant, server, profile, sleep, prefix, per_endpoint, progress, extra_args)
    completions = report.read_request_log(f"{prefix}_requests.csv")
    if not completions:
        raise RuntimeError(f"{variant.label}: Locust answered nothing (exit {code}); see {prefix}_locust.log")
    return Result(variant, pool, report.summarize(completions, sleep, pool), completions)


def table_rows(results, sleep):
    rows = []
    for result in results:
        python, postgres = result.summary("python"), result.summary("postgres")
        totals = [s.total for s in (python, postgres) if s]
        ideals = [s.prediction.ideal_total for s in (python, postgres) if s]
        failures = sum(sum(s.failures.values()) for s in result.summaries)
        rows.append({
            "variant": result.variant.label,
            "mode": result.pool["mode"],
            "pool_class": result.pool["pool_class"].rsplit(".", 1)[-1],
            "pool_size": result.pool["pool_size"],
            "max_overflow": result.pool["max_overflow"],
            "requests": max(s.requests for s in result.summaries),
            "sleep_s": sleep,
            "python_total_s": f"{python.total:.2f}" if python else "",
            "postgres_total_s": f"{postgres.total:.2f}" if postgres else "",
            "sum_s": f"{sum(totals):.2f}",
            "python_waves": " ".join(str(w.size) for w in python.waves) if python else "",
            "postgres_waves": " ".join(str(w.size) for w in postgres.waves) if postgres else "",
            "python_ideal_s": f"{python.prediction.ideal_total:.2f}" if python else "",
            "postgres_ideal_s": f"{postgres.prediction.ideal_total:.2f}" if postgres else "",
            "ideal_sum_s": f"{sum(ideals):.2f}",
            "measured_over_ideal": f"{sum(totals) / sum(ideals):.2f}" if sum(ideals) else "",
            "failures": failures,
        })
    return rows


def format_table(rows):
    """The original README's table: per mode, python, postgres and their sum, with waves and ideal."""
    headers = ("variant", "python", "postgres", "sum", "ideal", "measured/ideal", "python waves",
               "postgres waves", "failures")
    lines = [(r["variant"], r["python_total_s"], r["postgres_total_s"], r["sum_s"], r["ideal_sum_s"],
              r["measured_over_ideal"], r["python_waves"], r["postgres_waves"], str(r["failures"]))
             for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    render = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([render(headers), render("-" * w for w in widths), *map(render, lines)])


def write_markdown(path, rows, profile, sleep):
    headers = ("variant", "python (s)", "postgres (s)", "sum (s)", "ideal (s)", "measured/ideal",
               "python waves", "postgres waves", "failures")
    keys = ("variant", "python_total_s", "postgres_total_s", "sum_s", "ideal_sum_s",
            "measured_over_ideal", "python_waves", "postgres_waves", "failures")
    lines = [f"# pool-lab comparison: {profile.stem}, {sleep:g} s sleeps",
             "", f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python -m lab.compare`.", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
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
    parser.add_argument("--sleep-seconds", type=float, default=None,
                        help="seconds each request sleeps (default: the profile's)")
    parser.add_argument("--modes", default="sync,gevent,green",
                        help=f"Procfile modes to compare, from {', '.join(PROCFILE)} (default: sync,gevent,green)")
    parser.add_argument("--pools", default=None,
                        help="compare pool shapes at one mode instead, e.g. 5+10,15+0,fair:5+10")
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
            args.variants = parse_pools(args.pools, args.mode)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
        if args.use_running:
            parser.error("--pools starts its own servers; it cannot use running ones")
    else:
        args.variants = [Variant(mode, mode) for mode in args.modes.split(",")]
    profile = read_profile(args.profile)
    if args.sleep_seconds is None:
        args.sleep_seconds = float(profile.get("sleep-seconds") or 5)
    if not math.isfinite(args.sleep_seconds) or args.sleep_seconds < 0:
        parser.error("--sleep-seconds must be a finite number >= 0")
    # Locust splits the profile's users evenly between the two user classes.
    args.per_endpoint = int(profile.get("users", 2)) // len(ENDPOINTS)
    return args


def progress(line):
    print(f"  {line}", flush=True)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    (out.parent).mkdir(parents=True, exist_ok=True)
    out.mkdir(exist_ok=True)
    environment = {}
    if not args.use_running and not os.environ.get("DATABASE_URL"):
        from server import embedded

        # Held for the whole comparison, so the database is not restarted between modes.
        environment["DATABASE_URL"] = embedded.start().get_uri()
    results, started = [], []
    try:
        for number, variant in enumerate(args.variants, start=1):
            print(f"[{number}/{len(args.variants)}] {variant.label}: {args.per_endpoint} requests per "
                  f"endpoint, {args.sleep_seconds:g} s sleeps", flush=True)
            slug = re.sub(r"[^\w.+-]+", "-", variant.label)
            if args.use_running:
                server = LabServer(variant.mode, f"http://127.0.0.1:{default_port(variant.mode)}")
            else:
                server = start_mode(variant.mode, {**environment, **variant.env}, out / f"{slug}_server.log")
                started.append(server)
            results.append(measure(variant, server, args.profile, args.sleep_seconds, out / slug,
                                   args.per_endpoint, progress))
            server.stop()
    except KeyboardInterrupt:
        print("interrupted: stopping the servers this comparison started", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as error:
        print(f"compare failed: {error}", file=sys.stderr)
        return 1
    finally:
        for server in started:
            server.stop()
    rows = table_rows(results, args.sleep_seconds)
    print()
    print(format_table(rows))
    write_markdown(f"{out}.md", rows, args.profile, args.sleep_seconds)
    write_csv(f"{out}.csv", rows)
    from .plot import plot_completions

    plot_completions(f"{out}.png", results, args.sleep_seconds)
    print(f"\nwritten: {out}.md, {out}.csv, {out}.png (Locust's files in {out}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
