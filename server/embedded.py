"""The embedded PostgreSQL that runs when DATABASE_URL is unset.

pgserver (PyPI) ships PostgreSQL binaries, runs initdb on first use, and
keeps a list of the processes holding a handle on the data directory: the
last one to exit stops the server. Every Gunicorn master of the lab takes a
handle, so all modes share one server and it stops with the last mode.
It listens on a Unix socket only, so it adds no network port at all.
"""

import json
import os
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


def data_directory(environ=None):
    environ = os.environ if environ is None else environ
    return Path(environ.get("EMBEDDED_PGDATA") or DEFAULT_PGDATA).expanduser().resolve()


# The lab's own settings for the server, included from postgresql.conf (PG_MAX_CONNECTIONS).
SETTINGS_FILE = "pool-lab.conf"
REAPER_LOCK_FILE = ".reaper.lock"
REAPER_INTERVAL = 0.5


def _pgserver():
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp, which is fine here.
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def _forget_dead_handles(pgdata):
    """Drop pids of processes that died without releasing their handle; return the live ones.

    pgserver only stops the server when the exiting process is the last one in
    its list; a handle left by a killed process would keep it running forever.
    """
    handles = pgdata / HANDLE_PIDS_FILE
    if not handles.exists():
        return []
    pids = json.loads(handles.read_text() or "[]")
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
    return alive


def start(pgdata=None, reaper=False):
    """Start (or join) the embedded server; this process holds a handle until it exits.

    With reaper=True a detached watcher also stops the server once every holder is gone,
    even holders that were killed before they could stop it (honcho kills what has not
    stopped 5 s after Ctrl-C).
    """
    pgdata = data_directory() if pgdata is None else Path(pgdata)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    pgserver = _pgserver()
    with pgserver.PostgresServer._lock:
        if pgdata.exists():
            _forget_dead_handles(pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    _apply_max_connections(server, pgdata, config.pg_max_connections())
    if reaper:
        subprocess.Popen([sys.executable, "-m", "server.embedded", "reap", str(pgdata)], cwd=PROJECT_ROOT,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    return server


def _apply_max_connections(server, pgdata, wanted):
    """PG_MAX_CONNECTIONS (empty: PostgreSQL's own 100), which PostgreSQL reads only when it starts.

    pgserver starts the server with fixed options, so the value goes into a file that
    postgresql.conf includes; a server running with another value is restarted when this
    process is its only holder, and otherwise left running with a warning that says so.
    """
    import psycopg2

    pgserver = _pgserver()
    user = "pgserver" if os.geteuid() == 0 else None
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as out:
            out.write(f"\n# pool-lab's settings (PG_MAX_CONNECTIONS)\n{include}\n")
    (pgdata / SETTINGS_FILE).write_text("" if wanted is None else f"max_connections = {wanted}\n")
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
        print(f"pool-lab: the embedded PostgreSQL runs with max_connections {running}, not {configured}: "
              "other processes hold it; stop them all (Ctrl-C) and start again to apply PG_MAX_CONNECTIONS",
              file=sys.stderr)


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


def database_url(configured=None, pgdata=None, reaper=False):
    """The lab's one answer to "which database?": `configured` (DATABASE_URL) when set, else the
    embedded server's URL, started or joined for as long as this process lives."""
    return configured or start(pgdata, reaper=reaper).get_uri()


def reap(pgdata):
    """Watch the handles on `pgdata`; when none is alive, stop the server and exit.

    One reaper per data directory: every mode's master starts one, and all but the first
    give up after a short wait (long enough for a reaper that is just stopping the server
    to hand over to the one a new start brings).
    """
    import fasteners

    pgserver = _pgserver()
    reaper_lock = fasteners.InterProcessLock(pgdata / REAPER_LOCK_FILE)
    if not reaper_lock.acquire(timeout=2):
        return
    # pgserver runs PostgreSQL as its own system user when it runs as root.
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        while True:
            # Under pgserver's lock: no holder can join between the check and the stop.
            with pgserver.PostgresServer._lock:
                if not _forget_dead_handles(pgdata):
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
