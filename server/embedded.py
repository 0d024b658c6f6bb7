"""The embedded PostgreSQL that runs when DATABASE_URL is unset.

pgserver (PyPI) ships PostgreSQL binaries, runs initdb on first use, and
keeps a list of the processes holding a handle on the data directory: the
last one to exit stops the server. Every Gunicorn master of the lab takes a
handle, so all modes share one server and it stops with the last mode.
It listens on a Unix socket only, so it adds no network port at all.
"""

import json
import os
import warnings
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PGDATA = PROJECT_ROOT / "var" / "pgdata"
# pgserver's own file in the data directory listing the pids holding a handle.
HANDLE_PIDS_FILE = ".handle_pids.json"


def data_directory(environ=None):
    environ = os.environ if environ is None else environ
    return Path(environ.get("EMBEDDED_PGDATA") or DEFAULT_PGDATA).expanduser().resolve()


def _forget_dead_handles(pgdata):
    """Drop pids of processes that died without releasing their handle.

    pgserver only stops the server when the exiting process is the last one in
    its list; a handle left by a killed process would keep it running forever.
    """
    handles = pgdata / HANDLE_PIDS_FILE
    if not handles.exists():
        return
    pids = json.loads(handles.read_text() or "[]")
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def start(pgdata=None):
    """Start (or join) the embedded server; this process holds a handle until it exits."""
    pgdata = data_directory() if pgdata is None else Path(pgdata)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp, which is fine here.
        warnings.simplefilter("ignore")
        import pgserver
    with pgserver.PostgresServer._lock:
        if pgdata.exists():
            _forget_dead_handles(pgdata)
    return pgserver.get_server(pgdata, cleanup_mode="stop")
