"""The checks of a headless run before anything is sent: each mistake a user makes on the command
line ends the run with one `pool-lab:` line that names the fix, before Locust opens (and so
empties) a report file of the last good run.

Locust opens its --csv files right after it parses the command line, before any event a plugin
hears; so the checks run as the last step of that parse (see check_after_parsing).
"""

import fcntl
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from contract import POOL_PATH, BadParameter, SecondsOption

from ..endpoints import check_paths
from ..probe import parse_steps
from .users import declared_endpoints

# Where the modes are, for a message that tells how to start one.
START_A_MODE = "`honcho start` runs every mode (`honcho start green` one), the green one at http://127.0.0.1:8003"

# How long /pool may take: it answers at once unless the worker is blocked.
POOL_PATIENCE = 5.0
# The lock of each prefix this process writes, held until it exits (a reference keeps it from being collected).
_held = []


class RunRefused(Exception):
    """A run that must not start; the message is the fix, without the `pool-lab:` prefix."""


def check_host(host, field="-H"):
    """The host as Locust will use it, or RunRefused naming what is wrong with it (`field`: where it was given)."""
    if not host:
        raise RunRefused(f"no host: give the mode's address with {field}, such as {field} http://127.0.0.1:8003; "
                         f"{START_A_MODE}")
    parts = urllib.parse.urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RunRefused(f"{field} {host} is not a URL with a scheme: write {field} http://{host.split('://')[-1]}")
    return host.rstrip("/")


def fetch_pool(host, lab_only=True):
    """The server's /pool, or RunRefused saying nothing answers there and how to start a mode.

    A run of other endpoints than the lab's own (`lab_only` False) takes any server that answers
    (an HTTP error is an answer): {} where /pool is not the lab's."""
    try:
        with urllib.request.urlopen(f"{host}{POOL_PATH}", timeout=POOL_PATIENCE) as answer:
            return json.load(answer)
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        if not lab_only and isinstance(error, (urllib.error.HTTPError, ValueError)):
            return {}
        if not lab_only and not isinstance(reason, TimeoutError):
            raise RunRefused(f"nothing answers at {host} ({POOL_PATH}: {reason}): start the app there, or "
                             f"give its address with -H") from None
        if isinstance(reason, TimeoutError):
            # It accepted the connection (the kernel's backlog does) but its worker answers nothing:
            # a gevent worker blocked in an unpatched query, or a sync one busy with an earlier burst.
            raise RunRefused(f"the server at {host} took the connection but did not answer {POOL_PATH} within "
                             f"{POOL_PATIENCE:g} s: it is still busy, most likely with the requests of an "
                             f"interrupted run, which it serves to the end; wait for them and run again") from None
        raise RunRefused(f"no lab server answers at {host} ({POOL_PATH}: {reason}); {START_A_MODE}") from None


def lab_answers(host):
    """Whether the lab's /pool answers at `host` (a server that is the lab's takes ?seconds=)."""
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}{POOL_PATH}", timeout=POOL_PATIENCE) as answer:
            return "pool_limit" in json.load(answer)
    except (OSError, ValueError, TypeError):
        return False


def check_run_paths(options):
    """Every --path (lab.endpoints.check_path), else RunRefused naming the first bad one."""
    try:
        check_paths(list(getattr(options, "path", None) or []))
    except ValueError as error:
        raise RunRefused(f"{error}") from None


def lab_only(options):
    """Whether the run is of the lab's own endpoints alone, which need the lab's server."""
    return not getattr(options, "path", None) and declared_endpoints().lab_only


def check_seconds(options):
    """The lab's options of seconds, each a number (or empty, for its default), else RunRefused naming it."""
    for name in ("sleep_seconds", "idle_wait"):
        try:
            SecondsOption(f"--{name.replace('_', '-')}")(getattr(options, name, "") or "")
        except BadParameter as error:
            raise RunRefused(f"{error}") from None
    try:
        probe_settings(options)
    except BadParameter as error:
        raise RunRefused(f"{error}") from None


def probe_settings(options):
    """The probe's options as Settings takes them, checked (BadParameter names the one refused)."""
    steps = str(getattr(options, "probe_steps", "") or "").strip()
    seconds = SecondsOption("--step-seconds")(getattr(options, "step_seconds", "") or "")
    if seconds and float(seconds) <= 0:
        raise BadParameter(f"--step-seconds must be above 0, got {seconds!r}")
    return {"probe_steps": tuple(parse_steps(steps)) if steps else (),
            "step_seconds": float(seconds) if seconds else None}


def check_sleep(raw, pool):
    """--sleep-seconds within the server's MAX_SLEEP_SECONDS (which /pool reports), else RunRefused."""
    seconds = SecondsOption("--sleep-seconds")(raw or "")
    maximum = pool.get("max_sleep_seconds", math.inf)
    if seconds and float(seconds) > maximum:
        raise RunRefused(f"--sleep-seconds {seconds} is above the server's maximum of {maximum:g} s "
                         f"(MAX_SLEEP_SECONDS): give at most {maximum:g}, or start the mode with "
                         f"MAX_SLEEP_SECONDS={math.ceil(float(seconds))}")


def lock_prefix(prefix):
    """Hold `<prefix>.lock` until this process exits, or RunRefused naming the run that holds it.

    flock, not fcntl's record locks (fasteners): those end when the process closes any file of the
    lock's, such as one that reads who holds it.
    """
    path = Path(f"{prefix}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        try:
            holder = json.loads(lock.read())
            other = f"pid {holder['pid']}, started at {holder['started']}"
        except (ValueError, KeyError):
            other = "pid unknown"
        lock.close()
        raise RunRefused(f"{prefix} is being written by another run ({other}): wait for it to end, "
                         f"or give this run another prefix with --csv") from None
    # The lock is on the file, not its contents: the holder writes who it is, for the next one's message.
    lock.truncate(0)
    lock.write(json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    lock.flush()
    _held.append(lock)


def check_run(options):
    """Every check of a headless run, in the order a user would fix them."""
    check_run_paths(options)
    check_seconds(options)
    # As checked, without a trailing slash: http://host:8003/ + /sleep/... would ask for //sleep/...
    options.host = host = check_host(options.host)
    pool = fetch_pool(host, lab_only(options))
    check_sleep(options.sleep_seconds, pool)
    if options.csv_prefix:
        lock_prefix(options.csv_prefix)


def check_web_ui_run(host, settings):
    """A run the web UI's START asks for: its host, a server there, its sleep (its form's options are
    checked by Settings.read); RunRefused as for a headless run, said in the host field's name."""
    host = check_host(host, field="Host")
    check_sleep(settings.sleep_seconds, fetch_pool(host, settings.endpoints.lab_only))


def check_after_parsing(parser):
    """Have `parser` (Locust's, in init_command_line_parser) check a headless run once it has parsed it.

    A worker takes its host and options from its master, and the web UI takes them per run
    from its form: only the process that starts a headless run checks here.
    """
    parse_args = parser.parse_args

    def parse_and_check(*args, **kwargs):
        options = parse_args(*args, **kwargs)
        try:
            # Every process: the users of each --path are made at init, the web UI's and a worker's too.
            check_run_paths(options)
            if getattr(options, "headless", False) and not getattr(options, "worker", False):
                check_run(options)
        except RunRefused as refused:
            sys.exit(f"pool-lab: {refused}")
        return options

    parser.parse_args = parse_and_check
