"""The embedded PostgreSQL's start: the whole of it under the lab's start lock, repairs first."""

import os
import sys
from pathlib import Path

from . import data_directory, lock, postgres, reaper, system_user
from .failures import get_server
from .handles import forget_dead
from .settings import apply_max_connections


def say(message):
    print(f"pool-lab: {message}", file=sys.stderr, flush=True)


def start(pgdata, max_connections=None, with_reaper=False, log=say):
    """Start (or join) the embedded server on `pgdata`; return pgserver's handle, held until this process exits.

    `max_connections`: the server's (None: PostgreSQL's own 100). With with_reaper=True a detached
    reaper also stops the server once every holder is gone, even holders killed before they could
    stop it. Repairs are told through `log`, one line each; a start that cannot succeed raises
    StartError.
    """
    pgdata = Path(pgdata).expanduser().resolve()
    pgserver = postgres.load_pgserver()
    with lock.held():
        if os.geteuid() == 0:
            system_user.ensure(log)
        # pgserver's lock too, as for every change to a data directory: its reaper may be looking.
        with postgres.data_directory_lock():
            data_directory.prepare(pgdata, log)
            forget_dead(pgdata, log)
        if with_reaper:
            # Before the server starts: a master killed while starting it (Ctrl-C during the first
            # start; pg_ctl detaches PostgreSQL, so it lives on) leaves the reaper to stop it.
            reaper.spawn("postgres", pgdata)
        handle = get_server(pgserver, pgdata)
        apply_max_connections(handle, pgdata, max_connections, log)
        return handle


def database_url(configured, pgdata, max_connections=None, with_reaper=False, log=say):
    """The lab's one answer to "which database?": `configured` (DATABASE_URL) when set, else the
    embedded server's URL, started or joined on `pgdata` for as long as this process lives."""
    return configured or start(pgdata, max_connections, with_reaper, log).get_uri()
