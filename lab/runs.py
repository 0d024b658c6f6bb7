"""One measurement runner: a variant's server, a headless Locust burst against it, its result.

compare and benchmark only declare what they measure (Measurement) and how they report it;
this module starts and stops the servers, runs Locust, shows progress and reads the result,
with one cleanup and one Ctrl-C path for both.
"""

import csv
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from contract import ENDPOINTS, endpoint_of

from . import files
from .servers import PROCFILE, ROOT, RunningMode, start_mode

# locustfile.py's user class for each endpoint.
USER_CLASSES = {"python": "PythonSleepUser", "postgres": "PostgresSleepUser"}


@dataclass(frozen=True)
class Measurement:
    """One Locust burst on a server of its own (a Procfile mode with `env` overrides): `requests`
    per endpoint of `endpoints`, `sleep` seconds each, the rest from `profile`."""
    name: str
    mode: str
    profile: Path
    sleep: float
    requests: int
    endpoints: tuple = ENDPOINTS
    env: dict = field(default_factory=dict)
    # Users spawned a second; None: as many as there are, at most 100 (Locust warns above 100 per process).
    spawn_rate: int | None = None

    @property
    def slug(self):
        return re.sub(r"[^\w.+-]+", "-", self.name)


@dataclass
class Result:
    measurement: Measurement
    facts: dict
    summaries: list
    completions: dict
    costs: dict

    def summary(self, endpoint):
        return next((s for s in self.summaries if s.endpoint == endpoint), None)


def default_port(mode):
    """The port the Procfile gives a mode, honouring its *_PORT variable as honcho would."""
    match = re.search(r"\$\{(\w+_PORT):-(\d+)\}", PROCFILE[mode])
    return int(os.environ.get(match.group(1)) or match.group(2))


def answered(prefix, endpoints):
    """Answered requests per endpoint so far, from Locust's small stats file (rewritten every second)."""
    counts = dict.fromkeys(endpoints, 0)
    try:
        with open(f"{prefix}_stats.csv", newline="") as stats:
            for row in csv.DictReader(stats):
                if row["Name"] != "Aggregated":
                    counts[endpoint_of(row["Name"])] = int(row["Request Count"])
    except (FileNotFoundError, KeyError, ValueError):
        pass  # not written yet, or caught mid-write: the next look will do
    return counts


def run_locust(measurement, running, prefix):
    """One headless Locust run of the measurement against the `running` mode, with a progress line; its exit code."""
    m = measurement
    users = m.requests * len(m.endpoints)
    command = [sys.executable, "-m", "locust", "--config", str(m.profile), "-H", running.url,
               "--csv", str(prefix), "--html", f"{prefix}.html", "--sleep-seconds", str(m.sleep),
               # At most 100 a second: Locust warns above that, and the burst waits for everyone anyway.
               "-u", str(users), "-r", str(m.spawn_rate or min(users, 100)), *(USER_CLASSES[e] for e in m.endpoints)]
    with open(f"{prefix}_locust.log", "w") as log:
        locust = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            shown = None
            while True:
                running = locust.poll() is None
                counts = answered(prefix, m.endpoints)
                if counts != shown:
                    shown = counts
                    print(f"  {m.name}: " + ", ".join(f"{e} {n}/{m.requests}" for e, n in counts.items()), flush=True)
                if not running:
                    break
                time.sleep(0.5)
        finally:
            if locust.poll() is None:
                locust.terminate()
                locust.wait()
    return locust.returncode


def asks_for_pgbouncer(measurement):
    """Whether the measurement's server connects through PgBouncer (PGBOUNCER=true, its line's or its own)."""
    return "PGBOUNCER=true" in PROCFILE[measurement.mode] or measurement.env.get("PGBOUNCER") == "true"


def not_running(measurements):
    """The measurements' modes that answer no /pool on their Procfile ports, as "mode (url)"."""
    import urllib.request

    missing = []
    for mode in dict.fromkeys(m.mode for m in measurements):
        url = f"http://127.0.0.1:{default_port(mode)}"
        try:
            urllib.request.urlopen(f"{url}/pool", timeout=5).close()
        except OSError:
            missing.append(f"{mode} ({url})")
    return missing


def run_all(measurements, out, use_running=False, max_connections=None):
    """Measure each in turn on a server of its own (or the running mode); return the Results.

    The embedded PostgreSQL they share runs with `max_connections` (None: the PG_MAX_CONNECTIONS
    setting; a DATABASE_URL keeps its own). Every server started here is stopped when this
    returns, raises or gets Ctrl-C.
    """
    if use_running:
        missing = not_running(measurements)
        if missing:
            raise RuntimeError(f"--use-running, but nothing answers for {', '.join(missing)}: start them with "
                               f"`honcho start`, or leave out --use-running and compare starts its own")
    out.mkdir(parents=True, exist_ok=True)
    environment = {}
    if not use_running:
        import embedded_pg

        from .database import database_url, embedded_pooler

        # Held for the whole run, so the database is not restarted between servers.
        environment["DATABASE_URL"] = database_url(max_connections)
        if any(asks_for_pgbouncer(m) for m in measurements) and not os.environ.get("DATABASE_URL"):
            # The lab's own PgBouncer, held for the whole run too (with DATABASE_URL, yours: POOLER_URL).
            try:
                environment["POOLER_URL"] = embedded_pooler().url
            except embedded_pg.StartError as error:
                raise RuntimeError(str(error)) from None
    results = []
    for number, m in enumerate(measurements, start=1):
        print(f"[{number}/{len(measurements)}] {m.name}: {m.requests} requests per endpoint "
              f"({', '.join(m.endpoints)}), {m.sleep:g} s sleeps", flush=True)
        if use_running:
            running = RunningMode(m.mode, f"http://127.0.0.1:{default_port(m.mode)}")
        else:
            running = start_mode(m.mode, {**environment, **m.env}, out / f"{m.slug}_server.log")
        for stale in ("_result.json", "_stats.csv"):  # an earlier run's files: no result, and no progress of this one
            Path(f"{out / m.slug}{stale}").unlink(missing_ok=True)
        try:
            code = run_locust(m, running, out / m.slug)
        finally:
            running.stop()
        if not Path(f"{out / m.slug}_result.json").exists():
            raise RuntimeError(f"{m.name}: Locust answered nothing (exit {code}); see {out / m.slug}_locust.log")
        results.append(Result(m, *files.read_result(f"{out / m.slug}_result.json")))
    return results


def main(run, program):
    """The commands' shared frame: run(), with one message for a failure and one for Ctrl-C."""
    # SIGTERM (kill, a CI timeout) takes Ctrl-C's path, so the servers started are stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return run()
    except KeyboardInterrupt:
        print(f"pool-lab: {program}: interrupted: stopped the servers it started", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as error:
        print(f"pool-lab: {program}: {error}", file=sys.stderr)
        return 1
