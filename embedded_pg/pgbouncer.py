"""PgBouncer in front of the embedded PostgreSQL: one pooler per data directory, started like the server.

Debian's `pgbouncer` program (not a Python package), in transaction pooling, configured from
files the lab writes in the pooler's directory (`pooler_directory`, beside the data directory),
listening on a Unix socket there only. Every process that uses it holds a handle in a list the
lab keeps in that directory (PgBouncer has none of its own, unlike pgserver): the last holder
to exit stops it, and the reaper covers holders that were killed. Starts and stops run under
the lab's start lock. PgBouncer will not run as root: as root it runs as the embedded server's
system user.
"""

import atexit
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psutil

from . import handles, lock, reaper, system_user
from .failures import StartError
from .start import say

PROGRAM = "pgbouncer"
# What to run when the program is missing (Debian's package, 1.18 on bookworm).
INSTALL = "apt-get install pgbouncer"
# Debian installs it in /usr/sbin, which an ordinary user's PATH often lacks.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
CONFIG_FILE = "pgbouncer.ini"
USERS_FILE = "userlist.txt"
PID_FILE = "pgbouncer.pid"
LOG_FILE = "pgbouncer.log"
# Only names the socket (.s.PGSQL.6432, PgBouncer's default port): no TCP port is opened.
PORT = 6432
# PgBouncer's admin console: the database named so, on the same socket.
ADMIN_DATABASE = "pgbouncer"
# pgserver's role, which every client of the embedded server logs in as.
USER = "postgres"
# Far longer than an honest start or stop, which take milliseconds.
WAIT_SECONDS = 10


def program():
    """The pgbouncer program's path, or None when it is not installed."""
    return shutil.which(PROGRAM, path=SEARCH_PATH)


def pooler_directory(pgdata):
    """Where the pooler of the data directory `pgdata` keeps its files: var/pgbouncer/pgdata for var/pgdata."""
    pgdata = Path(pgdata).expanduser().resolve()
    return pgdata.parent / PROGRAM / pgdata.name


@dataclass(frozen=True)
class Settings:
    """The pooler's settings that the lab chooses (server/config.py reads them from the environment)."""
    default_pool_size: int
    max_client_conn: int
    reserve_pool_size: int
    query_wait_timeout: float


def quoted(path):
    """A path as a value of the [databases] connection string, in its quotes (libpq's), so a space
    in it stays part of it."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def config_text(directory, pgdata, postgres_port, settings):
    # `*`: every database name goes to the embedded server's database of that name, as user postgres.
    # Its host quoted; the [pgbouncer] values are the rest of their line as it is (1.18's ini parser
    # keeps quotes as part of the value), spaces included.
    return (f"[databases]\n"
            f"* = host={quoted(pgdata)} port={postgres_port}\n"
            f"\n[pgbouncer]\n"
            f"pool_mode = transaction\n"
            f"default_pool_size = {settings.default_pool_size}\n"
            f"max_client_conn = {settings.max_client_conn}\n"
            f"reserve_pool_size = {settings.reserve_pool_size}\n"
            f"query_wait_timeout = {settings.query_wait_timeout:g}\n"
            # No listen_addr: a Unix socket only, as the embedded server itself.
            f"unix_socket_dir = {directory}\n"
            # Whoever reaches the socket logs in as the superuser (trust) and may SHUTDOWN the pooler
            # (admin_users): its own user alone, with the directory (start) its own too.
            f"unix_socket_mode = 0700\n"
            f"listen_port = {PORT}\n"
            # The embedded server trusts its socket's clients; the pooler does the same, but still
            # wants the user listed.
            f"auth_type = trust\n"
            f"auth_file = {directory / USERS_FILE}\n"
            # The lab reads SHOW CONFIG and SHOW POOLS from the admin console (/db).
            f"admin_users = {USER}\n"
            # A burst opens a client connection per request: its log keeps the disconnections, which name
            # their cause (query_wait_timeout, max_client_conn), not every login.
            f"log_connections = 0\n"
            f"pidfile = {directory / PID_FILE}\n"
            f"logfile = {directory / LOG_FILE}\n")


def url(directory):
    """The pooler's URL, for the app (POOLER_URL): its socket in `directory`, percent-encoded."""
    return f"postgresql://{USER}:@/postgres?host={quote(str(directory), safe='/')}&port={PORT}"


def running_pid(directory):
    """The pid of the pooler running on `directory`, or None."""
    try:
        pid = int((directory / PID_FILE).read_text().split()[0])
        if psutil.Process(pid).name() == PROGRAM:
            return pid
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return None


def postgres_address(pgdata):
    """(socket directory, port) of the PostgreSQL running on `pgdata`, from its postmaster.pid."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return lines[4], int(lines[3])
    except (OSError, ValueError, IndexError):
        raise StartError(f"the embedded PostgreSQL in {pgdata} is not running: the pooler starts after it") from None


def _why_it_failed(directory, offset, stderr):
    """PgBouncer's first error of this start, from its stderr or its log."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    try:
        with open(directory / LOG_FILE, errors="replace") as log:
            log.seek(offset)
            lines += [line.strip() for line in log.read().splitlines() if line.strip()]
    except OSError:
        pass
    for line in lines:
        for marker in ("FATAL", "ERROR"):
            if marker in line:
                return line[line.index(marker):]
    return lines[-1] if lines else "no output"


def answers(directory):
    """Whether the pooler on `directory` answers on its admin console (its socket file alone may be
    a killed pooler's, left behind)."""
    import psycopg2

    try:
        psycopg2.connect(host=str(directory), port=PORT, dbname=ADMIN_DATABASE, user=USER, connect_timeout=1).close()
        return True
    except psycopg2.Error:
        return False


def _launch(directory):
    """Start PgBouncer as a daemon on `directory`'s configuration; wait until it answers."""
    command = [program(), "-d"]
    if os.geteuid() == 0:
        command += ["-u", system_user.SYSTEM_USER]
    command.append(str(directory / CONFIG_FILE))
    log_file = directory / LOG_FILE
    offset = log_file.stat().st_size if log_file.exists() else 0
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + WAIT_SECONDS
    # Its pid file names a live pgbouncer, and it answers: a socket file alone may be stale.
    while result.returncode == 0 and not (running_pid(directory) and answers(directory)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if result.returncode != 0 or running_pid(directory) is None or not answers(directory):
        raise StartError(f"PgBouncer did not start in front of the embedded PostgreSQL: "
                         f"{_why_it_failed(directory, offset, result.stderr)} (its log: {log_file})")


def stop(directory):
    """Stop the pooler running on `directory`, if any, and wait until it has exited."""
    pid = running_pid(directory)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)  # PgBouncer's immediate shutdown
        psutil.Process(pid).wait(WAIT_SECONDS)
    except psutil.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass


def _write(directory, text):
    """Write the configuration `text` and the users file, for PgBouncer to read."""
    (directory / USERS_FILE).write_text(f'"{USER}" ""\n')
    (directory / CONFIG_FILE).write_text(text)
    if os.geteuid() == 0:
        # PgBouncer, as the system user, writes its pid file, log and socket here.
        for path in (directory, *directory.iterdir()):
            shutil.chown(path, system_user.SYSTEM_USER, system_user.SYSTEM_USER)


@dataclass(eq=False)
class Pooler:
    """A handle on the pooler of a data directory, held until cleanup() or this process's exit."""
    directory: Path
    # The process that holds it. A forked child (a Gunicorn worker) inherits the atexit cleanup but
    # holds nothing; as pgserver's handle, which stops nothing for a pid not in its list, it leaves
    # the handle alone, and without taking the machine-wide start lock on its way out.
    owner: int = field(default_factory=os.getpid)

    @property
    def url(self):
        return url(self.directory)

    @property
    def pid(self):
        return running_pid(self.directory)

    def cleanup(self):
        """Release this process's handle; the last holder stops the pooler. Nothing in another process."""
        if os.getpid() != self.owner:
            return
        atexit.unregister(self.cleanup)
        _HELD.pop(self.directory, None)
        if not self.directory.exists():
            return  # removed with everything beside it: nothing runs there
        with lock.held():
            if handles.release(self.directory) == []:
                stop(self.directory)


# This process's handles, one per pooler directory: a second start() joins the first's.
_HELD = {}


def start(pgdata, settings, with_reaper=False, log=say):
    """Start (or join) the pooler in front of the PostgreSQL running on `pgdata`; return its Pooler.

    A pooler already running with other settings restarts with them when this process is its only
    holder, and is otherwise left as it is, with a warning through `log`. Raises StartError with
    one line when it cannot start, the program missing included.
    """
    if program() is None:
        raise StartError(f"the {PROGRAM} program is not installed: {INSTALL}")
    pgdata = Path(pgdata).expanduser().resolve()
    directory = pooler_directory(pgdata)
    with lock.held():
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)  # its user's alone (config_text's unix_socket_mode says why); _write chowns it
        text = config_text(directory, pgdata, postgres_address(pgdata)[1], settings)
        config = directory / CONFIG_FILE
        changed = not config.exists() or config.read_text() != text
        others = [pid for pid in handles.forget_dead(directory, log) if pid != os.getpid()]
        if with_reaper:
            reaper.spawn(PROGRAM, directory)
        pid = running_pid(directory)
        if pid is not None and changed and others:
            # Its file stays what it runs with, so every later start sees the difference too.
            log(f"PgBouncer in {directory} runs with other settings: other processes hold it; stop them all "
                f"(Ctrl-C) and start again to apply the PGBOUNCER_* settings")
        elif pid is None:
            _write(directory, text)
            _launch(directory)
        elif changed:
            # Restarted, not reloaded: a reload keeps the server connections it holds, so a smaller
            # default_pool_size would not show in the next burst's waves.
            stop(directory)
            _write(directory, text)
            _launch(directory)
        handles.hold(directory, log)
    if directory not in _HELD or _HELD[directory].owner != os.getpid():  # not one a parent's fork left
        _HELD[directory] = Pooler(directory)
        atexit.register(_HELD[directory].cleanup)
    return _HELD[directory]


def reap(directory):
    """Stop the pooler of `directory` once none of its holders is alive (the reaper's work)."""
    def stop_if_unheld():
        with lock.held():
            if handles.forget_dead(directory) != []:
                return False
            stop(directory)
            return True

    reaper.watch(directory, stop_if_unheld)
