"""The embedded PostgreSQL that runs when DATABASE_URL is unset.

pgserver (PyPI) ships PostgreSQL binaries, runs initdb on first use, and
keeps a list of the processes holding a handle on the data directory: the
last one to exit stops the server. Every Gunicorn master of the lab takes a
handle, so all modes share one server and it stops with the last mode.
It listens on a Unix socket only, so it adds no network port at all.

The four masters of `honcho start` start at the same moment, and pgserver
locks only part of its start: as root it creates its system user before
taking its lock, and it creates the data directory outside it. So the lab
runs the whole start under one lock of its own, and repairs what an
interrupted first start leaves behind.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psutil

from . import config

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PGDATA = PROJECT_ROOT / "var" / "pgdata"
# pgserver's own file in the data directory listing the pids holding a handle.
HANDLE_PIDS_FILE = ".handle_pids.json"
REAPER_LOCK_FILE = ".reaper.lock"
REAPER_INTERVAL = 0.5
# The lab's own settings for the server, included from postgresql.conf (PG_MAX_CONNECTIONS).
SETTINGS_FILE = "pool-lab.conf"
# Held around the lab's whole start, in pgserver's runtime directory. Not pgserver's own
# .lockfile: fcntl locks belong to a process, so pgserver taking and releasing that file inside
# the start would release it for the rest of the start. One file for all of a user's data
# directories, because what root does first, useradd, is machine-wide.
START_LOCK_FILE = "pool-lab-start.lock"
# Far longer than an honest start, which takes seconds even with initdb.
START_LOCK_TIMEOUT = 300
# The user pgserver runs PostgreSQL as when it runs as root (it refuses to run as root).
SYSTEM_USER = "pgserver"
# What initdb, PostgreSQL, pgserver and the lab put in a data directory.
DATA_DIRECTORY_ENTRIES = frozenset({
    "PG_VERSION", "base", "global", "pg_commit_ts", "pg_dynshmem", "pg_logical", "pg_multixact",
    "pg_notify", "pg_replslot", "pg_serial", "pg_snapshots", "pg_stat", "pg_stat_tmp", "pg_subtrans",
    "pg_tblspc", "pg_twophase", "pg_wal", "pg_xact", "postgresql.conf", "postgresql.auto.conf",
    "pg_hba.conf", "pg_ident.conf", "postmaster.pid", "log", HANDLE_PIDS_FILE, REAPER_LOCK_FILE, SETTINGS_FILE,
})
# PostgreSQL's socket and its lock file; pgserver also probes that name before a start.
SOCKET_PREFIX = ".s.PGSQL."
# PostgreSQL writes it at every server start; initdb never does.
SERVED_MARKER = "postmaster.opts"


class StartError(Exception):
    """The embedded server cannot start; the message says why, and what to do, in one line."""


def data_directory(environ=None):
    environ = os.environ if environ is None else environ
    return Path(environ.get("EMBEDDED_PGDATA") or DEFAULT_PGDATA).expanduser().resolve()


def say(message):
    print(f"pool-lab: {message}", file=sys.stderr, flush=True)


def _pgserver():
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp, which is fine here.
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def _forget_dead_handles(pgdata, log=None):
    """Drop pids of processes that died without releasing their handle; return the live ones.

    pgserver only stops the server when the exiting process is the last one in
    its list; a handle left by a killed process would keep it running forever.
    A list cut short by a process killed while writing it gives None, or, with
    `log` (a start, which then adds itself), is started afresh.
    """
    handles = pgdata / HANDLE_PIDS_FILE
    if not handles.exists():
        return []
    text = handles.read_text()
    try:
        pids = json.loads(text or "[]")
    except ValueError:
        if log is None:
            return None
        log(f"{handles} was cut short ({text!r}) by a process killed while writing it: starting it afresh")
        handles.write_text("[]")
        return []
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
    return alive


def _ensure_system_user(log):
    """Create pgserver's system user before pgserver would, repairing a half-created one."""
    import grp
    import pwd

    try:
        pwd.getpwnam(SYSTEM_USER)
        return
    except KeyError:
        pass
    command = ["useradd", "-s", "/bin/bash", SYSTEM_USER]  # what pgserver runs
    try:
        grp.getgrnam(SYSTEM_USER)
    except KeyError:
        pass
    else:
        # useradd writes the group first: killed before it wrote the user, it leaves the group,
        # and every later plain useradd refuses to reuse it (status 9).
        command[-1:-1] = ["-g", SYSTEM_USER]
        log(f"group {SYSTEM_USER} exists without its user (a useradd was interrupted): running {' '.join(command)}")
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:
        failure = error.strerror
    else:
        if result.returncode == 0:
            return
        failure = "; ".join(line.strip() for line in result.stderr.splitlines() if line.strip()) \
            or f"exit status {result.returncode}"
    try:
        pwd.getpwnam(SYSTEM_USER)
        return  # made meanwhile by someone outside the lab
    except KeyError:
        raise StartError(f"could not create the system user {SYSTEM_USER}, which runs PostgreSQL when the lab "
                         f"runs as root: `{' '.join(command)}` failed: {failure}") from None


def _prepare_data_directory(pgdata, log):
    """Make `pgdata` fit for pgserver: empty, a data directory, or what an interrupted start left, emptied."""
    fix = "point EMBEDDED_PGDATA at an empty or new directory"
    try:
        pgdata.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StartError(f"{pgdata} is not a directory: {fix}") from None
    except OSError as error:
        raise StartError(f"cannot create the data directory {pgdata}: {error.strerror}") from None
    names = sorted(entry.name for entry in pgdata.iterdir())
    if not names or SERVED_MARKER in names:
        return
    foreign = [name for name in names if name not in DATA_DIRECTORY_ENTRIES and not name.startswith(SOCKET_PREFIX)]
    if not foreign:
        # No server ever ran on it, so it holds no data: an initdb cut short, or lock files of a
        # failed start. pgserver would run initdb on it when PG_VERSION is missing (initdb refuses
        # a directory that is not empty) or start it when it is there (and fail on the missing
        # catalogs), every time.
        log(f"{pgdata} holds what an interrupted start left (no server ever ran on it, so it holds no data): "
            f"initializing it afresh")
        for entry in pgdata.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    elif "PG_VERSION" not in names:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise StartError(f"{pgdata} is not a PostgreSQL data directory (it holds {shown}): {fix}")
    # Else a data directory no server ran on here, such as a restored backup: pgserver's to start.


class _PgserverErrors(logging.Handler):
    """Keeps what pgserver logs about a failed command, instead of its many lines on stderr."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.stderr = ""

    def emit(self, record):
        # pgserver's "Failed postgres command" record: (args, kwargs, error, stdout, stderr).
        if isinstance(record.args, tuple) and len(record.args) == 5 and isinstance(record.args[4], str):
            self.stderr = record.args[4]


def _first_error(lines, markers):
    """The first line that reports an error, from its marker on (no log timestamp); what follows
    it is mostly its consequences, such as initdb cleaning up."""
    for line in lines:
        for marker in markers:
            if marker in line:
                return line[line.index(marker):]
    return None


def _why_the_command_failed(stderr):
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return _first_error(lines, ("PANIC:", "FATAL:", "error:")) or (lines[-1] if lines else "")


def _why_the_server_failed(server_log, offset):
    """What this start added to the server's log, in one line: its first error, else all of it
    (PostgreSQL writes errors found before its logging is set up as bare lines)."""
    try:
        with open(server_log, errors="replace") as log:
            log.seek(offset)
            lines = [line.strip() for line in log.read().splitlines() if line.strip()]
    except OSError:
        return ""
    return _first_error(lines, ("PANIC:", "FATAL:")) or " ".join(lines)


def _get_server(pgserver, pgdata):
    """pgserver.get_server, its failures told in one line."""
    logger = logging.getLogger("pgserver")
    errors = _PgserverErrors()
    logger.addHandler(errors)
    propagate, logger.propagate = logger.propagate, False
    server_log = pgdata / "log"
    offset = server_log.stat().st_size if server_log.exists() else 0
    try:
        return pgserver.get_server(pgdata, cleanup_mode="stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        failure = error
        # After a failed pg_ctl pgserver reads the server's log, which fails when pg_ctl never
        # wrote it: pg_ctl's failure is the one to tell.
        if isinstance(error, OSError) and isinstance(error.__context__, subprocess.SubprocessError):
            failure = error.__context__
        prefix = f"the embedded PostgreSQL in {pgdata} did not start"
        if isinstance(failure, subprocess.TimeoutExpired):
            # pgserver gives pg_ctl 10 s to see the server ready.
            message = (f"{prefix}: {Path(failure.cmd[0]).name} saw no ready server within {failure.timeout:.0f} s "
                       f"(the server's log: {server_log})")
        elif isinstance(failure, subprocess.CalledProcessError):
            program = Path(failure.cmd[0]).name
            detail = _why_the_command_failed(errors.stderr) or f"exit status {failure.returncode}"
            if program == "pg_ctl":
                detail = f"{_why_the_server_failed(server_log, offset) or detail} (the server's log: {server_log})"
            message = f"{prefix}: {program} failed: {detail}"
        else:
            message = f"{prefix}: {failure}"
        raise StartError(message) from None
    finally:
        logger.removeHandler(errors)
        logger.propagate = propagate


def start(pgdata=None, reaper=False, log=say):
    """Start (or join) the embedded server; this process holds a handle until it exits.

    With reaper=True a detached watcher also stops the server once every holder is gone,
    even holders that were killed before they could stop it (honcho kills what has not
    stopped 5 s after Ctrl-C). Repairs are told through `log`, one line each; a start that
    cannot succeed raises StartError.
    """
    import fasteners

    pgdata = data_directory() if pgdata is None else Path(pgdata).expanduser().resolve()
    pgserver = _pgserver()
    lock_path = pgserver.PostgresServer.runtime_path / START_LOCK_FILE
    lock = fasteners.InterProcessLock(lock_path)
    try:
        locked = lock.acquire(timeout=START_LOCK_TIMEOUT)
    except OSError as error:
        raise StartError(f"cannot lock {lock_path}: {error.strerror}") from None
    if not locked:
        raise StartError(f"waited {START_LOCK_TIMEOUT} s for another start of the embedded PostgreSQL to finish; "
                         f"`fuser -v {lock_path}` names it")
    try:
        if os.geteuid() == 0:
            _ensure_system_user(log)
        # pgserver's lock too, as for every change to a data directory: its reaper may be looking.
        with pgserver.PostgresServer._lock:
            _prepare_data_directory(pgdata, log)
            _forget_dead_handles(pgdata, log)
        if reaper:
            # Before the server starts: a master killed while starting it (Ctrl-C during the first
            # start; pg_ctl detaches PostgreSQL, so it lives on) leaves the reaper to stop it.
            subprocess.Popen([sys.executable, "-m", "server.embedded", "reap", str(pgdata)], cwd=PROJECT_ROOT,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        server = _get_server(pgserver, pgdata)
        _apply_max_connections(server, pgdata, config.pg_max_connections(), log)
        return server
    finally:
        lock.release()


def _apply_max_connections(server, pgdata, wanted, log):
    """PG_MAX_CONNECTIONS (empty: PostgreSQL's own 100), which PostgreSQL reads only when it starts.

    pgserver starts the server with fixed options, so the value goes into a file that
    postgresql.conf includes; a server running with another value is restarted when this
    process is its only holder, and otherwise left running with a warning that says so.
    """
    import psycopg2

    settings = pgdata / SETTINGS_FILE
    lines = "" if wanted is None else f"max_connections = {wanted}\n"
    if not lines and not (settings.exists() and settings.read_text()):
        return  # PostgreSQL's own value, as on every start before: nothing to check at start-up
    pgserver = _pgserver()
    user = "pgserver" if os.geteuid() == 0 else None
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as out:
            out.write(f"\n# pool-lab's settings (PG_MAX_CONNECTIONS)\n{include}\n")
    settings.write_text(lines)
    configured = pgserver.postgres(["-C", "max_connections"], pgdata=pgdata, user=user).strip()
    # pgserver's URL leaves the port to libpq's default, which a server started on another lacks.
    port = server.get_postmaster_info().port
    with psycopg2.connect(server.get_uri(), port=port) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        running = cursor.fetchone()[0]
    connection.close()
    if running == configured:
        return
    with pgserver.PostgresServer._lock:
        alone = _forget_dead_handles(pgdata) == [os.getpid()]
        if alone:
            pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=user)
            server.ensure_postgres_running()  # reads the new postmaster's pid, for the stop at exit
    if not alone:
        log(f"the embedded PostgreSQL runs with max_connections {running}, not {configured}: other processes "
            "hold it; stop them all (Ctrl-C) and start again to apply PG_MAX_CONNECTIONS")


def start_on_tcp(pgdata, port):
    """An embedded server of its own that listens on 127.0.0.1:`port` and on its Unix socket:
    (server, TCP URL, Unix socket URL), two ways into one server.

    The lab's server listens on a Unix socket only (pgserver starts it so); this one lets
    the lab measure what a loopback TCP handshake adds to a new connection.
    """
    server = start(pgdata)
    pgserver = _pgserver()
    info = server.get_postmaster_info()
    # With -o, pg_ctl restart replaces the start options, so the socket directory is given again.
    pgserver.pg_ctl(["-w", "-m", "fast", "-o", f"-h 127.0.0.1 -p {port} -k {info.socket_dir}", "restart"],
                    pgdata=pgdata, user="pgserver" if os.geteuid() == 0 else None)
    server.ensure_postgres_running()  # the new postmaster's pid, for the stop at exit
    # The socket's name carries the port too, which pgserver's URL leaves to libpq's default.
    return server, f"postgresql://postgres@127.0.0.1:{port}/postgres", f"{server.get_uri()}&port={port}"


def database_url(configured=None, pgdata=None, reaper=False, log=say):
    """The lab's one answer to "which database?": `configured` (DATABASE_URL) when set, else the
    embedded server's URL, started or joined for as long as this process lives."""
    return configured or start(pgdata, reaper=reaper, log=log).get_uri()


def reap(pgdata):
    """Watch the handles on `pgdata`; when none is alive, stop the server and exit.

    One reaper per data directory: every mode's master starts one, and all but the first
    give up after a short wait (long enough for a reaper that is just stopping the server
    to hand over to the one a new start brings).
    """
    import fasteners

    pgserver = _pgserver()
    # Nothing before the start that spawned this reaper is over: it has no handle yet, and
    # initdb wants the data directory empty, without the reaper's lock file.
    start_lock = fasteners.InterProcessLock(pgserver.PostgresServer.runtime_path / START_LOCK_FILE)
    start_lock.acquire()
    start_lock.release()
    reaper_lock = fasteners.InterProcessLock(pgdata / REAPER_LOCK_FILE)
    if not reaper_lock.acquire(timeout=2):
        return
    # pgserver runs PostgreSQL as its own system user when it runs as root.
    user = SYSTEM_USER if os.geteuid() == 0 else None
    try:
        while True:
            # Under pgserver's lock: no holder can join between the check and the stop.
            with pgserver.PostgresServer._lock:
                # A list cut short (None) may still name live holders: leave it to the next start.
                if _forget_dead_handles(pgdata) == []:
                    if (pgdata / "postmaster.pid").exists():
                        try:
                            pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
                        except subprocess.CalledProcessError:
                            pass  # a stale postmaster.pid: nothing was running
                    return
            time.sleep(REAPER_INTERVAL)
    finally:
        reaper_lock.release()


if __name__ == "__main__" and sys.argv[1:2] == ["reap"]:
    reap(Path(sys.argv[2]))
