"""The lab's CPU per request beside a bare Flask app's, under the same Gunicorn worker (the benchmark's
`bare` cases).

Both servers run at once on free ports, the lab's mode from its Procfile line, the bare app
(lab/bare_app.py) with lab/bare_gunicorn.conf.py; the same client (lab.calibration's: a new
connection per request, as a Locust user's first request) sends to each in turn, alternating
rounds so the machine's load falls on both alike, while each server's workers' CPU time is read
(lab.calibration.cpu_seconds). N = 1 is requests one after another with no sleep; larger N are
bursts of N concurrent sleeps, whose CPU before the sleep is read too (lab.calibration.burst).
"""

import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

import psutil

from . import calibration
from .servers import ROOT, RunningMode, free_port, start_mode

# Requests one after another for N = 1: each costs well under a millisecond of wall time.
SEQUENTIAL = 200
ROUNDS = 5


def start_bare(log_path, timeout=30):
    """The bare app under Gunicorn on a free port, once it answers."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "lab" / "bare_gunicorn.conf.py"),
                                    "-b", f"127.0.0.1:{port}"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    running = RunningMode("bare", f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the bare app exited with {process.returncode}:\n{running.log()}")
            try:
                urllib.request.urlopen(f"{running.url}{calibration.path_for(0)}", timeout=5).close()
                return running
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the bare app did not answer within {timeout}s:\n{running.log()}")
    except BaseException:
        running.stop()
        raise


def workers_of(running):
    """The Gunicorn workers of a server started here: its master's children."""
    return psutil.Process(running.process.pid).children()


def one_round(running, workers, requests, sleep):
    """CPU seconds per request (the whole, and before the sleep, or None) and the round's wall time."""
    if requests == 1:
        rounds = [calibration.burst(running.url, 1, 0, workers) for _ in range(SEQUENTIAL)]
        server, wall = sum(r["server"] for r in rounds), sum(r["wall"] for r in rounds)
        return {"cpu": server / SEQUENTIAL, "before": None, "wall": wall / SEQUENTIAL}
    burst = calibration.burst(running.url, requests, sleep, workers)
    return {"cpu": burst["server"] / requests, "before": None if burst["before"] is None else burst["before"] / requests,
            "wall": burst["wall"]}


def measure(requests, sleep, lab, bare, rounds=ROUNDS):
    """The lab's and the bare app's CPU per request at N = `requests`, rounds alternating: medians."""
    sides = {"lab": (lab, workers_of(lab)), "bare": (bare, workers_of(bare))}
    measured = {side: [] for side in sides}
    for _ in range(rounds):
        for side, (running, workers) in sides.items():
            measured[side].append(one_round(running, workers, requests, sleep if requests > 1 else 0))

    def median(side, part):
        values = [m[part] for m in measured[side] if m[part] is not None]
        return statistics.median(values) if values else None

    return {side: {"cpu_per_request": median(side, "cpu"), "cpu_before_sleep": median(side, "before"),
                   "wall_s": median(side, "wall"), "rounds_cpu_per_request": [round(m["cpu"], 7) for m in measured[side]]}
            for side in sides}


class Servers:
    """The lab's mode and the bare app, started once for every bare case of a run and stopped at its end."""

    def __init__(self, mode, environment, out):
        self.mode, self.environment, self.out = mode, environment, out
        self.lab = self.bare = None

    def __enter__(self):
        try:
            self.lab = start_mode(self.mode, self.environment, self.out / f"bare-{self.mode}_server.log")
            self.bare = start_bare(self.out / "bare_server.log")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for running in (self.bare, self.lab):
            if running:
                running.stop()


def top_frames(raw_path, count=12):
    """py-spy's raw (collapsed) stacks as [(share of samples, frame)], the frames most often on the
    stack, each counted once per sample: where the worker's CPU goes, inclusive."""
    inclusive, total = {}, 0
    with open(raw_path) as stacks:
        for line in stacks:
            stack, _, samples = line.rstrip().rpartition(" ")
            total += int(samples)
            # "function (path/to/file.py:line)" -> "function (file.py)": one entry per function.
            for frame in {re.sub(r" \((?:.*/)?([^/]+\.py):\d+\)", r" (\1)", f) for f in stack.split(";")}:
                inclusive[frame] = inclusive.get(frame, 0) + int(samples)
    return sorted(((n / total, frame) for frame, n in inclusive.items()), reverse=True)[:count]


def profile(out, requests=1000, bursts=8, sleep=0.5):
    """Profile both servers' workers with py-spy while `bursts` bursts of `requests` run against each;
    print the top frames of each side by side and return the paths of the raw profiles."""
    from .database import database_url

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    with Servers("green", {"DATABASE_URL": database_url()}, out) as servers:
        for side in ("lab", "bare"):
            running = getattr(servers, side)
            workers = workers_of(running)
            paths[side] = out / f"profile-{side}.txt"
            # --nonblocking: sampling does not pause the worker, so the profile does not slow what it measures.
            spy = subprocess.Popen(["py-spy", "record", "--nonblocking", "--rate", "250", "--format", "raw",
                                    "--output", str(paths[side]), "--pid", str(workers[0].pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            try:
                time.sleep(1)  # py-spy attaches
                for _ in range(bursts):
                    calibration.burst(running.url, requests, sleep, workers)
            finally:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on Ctrl-C
                spy.wait(timeout=30)
    tops = {side: top_frames(path, 20) for side, path in paths.items()}
    for side, top in tops.items():
        print(f"{side}: share of samples with the frame on the stack")
        for share, frame in top:
            print(f"  {100 * share:5.1f}%  {frame}")
    return paths


if __name__ == "__main__":
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m lab.bare", description="profile the lab's green worker and the "
                                     "bare app's with py-spy during bursts of 1000 python requests")
    parser.add_argument("--out", default="reports/profile", help="directory for the raw profiles and servers' logs")
    profile(Path(parser.parse_args().out))
