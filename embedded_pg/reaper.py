"""A detached watcher that stops an embedded server once no process holds it, then exits.

honcho SIGKILLs a process still stopping 5 s after Ctrl-C (in-flight sleeps can take longer),
so a killed last mode cannot stop the database itself. So a start may spawn a reaper,
`python -m embedded_pg reap PROGRAM DIRECTORY`, one per directory: every mode's master starts
one, and all but the first give up after a short wait (long enough for a reaper that is just
stopping the server to hand over to the one a new start brings). PgBouncer's reaper
(`python -m embedded_pg reap pgbouncer DIRECTORY`) watches the pooler's own directory.
"""

import subprocess
import sys
import time
from pathlib import Path

from . import postgres
from .handles import forget_dead
from .lock import wait_for_starts

REAPER_LOCK_FILE = ".reaper.lock"
REAPER_INTERVAL = 0.5
# The directory this package is imported from: the reaper runs it with `python -m`.
IMPORT_ROOT = Path(__file__).resolve().parent.parent


def spawn(program, directory):
    """Start the reaper of `program`'s server on `directory`, detached from this process and its session."""
    subprocess.Popen([sys.executable, "-m", __package__, "reap", program, str(directory)], cwd=IMPORT_ROOT,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def watch(directory, stop_if_unheld):
    """Call `stop_if_unheld` every REAPER_INTERVAL until it says it stopped the server (True).

    The one reaper of `directory`: another that already watches it makes this one return.
    """
    import fasteners

    # Nothing before the start that spawned this reaper is over: it has no handle yet, and
    # initdb wants the data directory empty, without the reaper's lock file.
    wait_for_starts()
    reaper_lock = fasteners.InterProcessLock(directory / REAPER_LOCK_FILE)
    if not reaper_lock.acquire(timeout=2):
        return
    try:
        while not stop_if_unheld():
            time.sleep(REAPER_INTERVAL)
    finally:
        reaper_lock.release()


def reap_postgres(pgdata):
    """Stop the PostgreSQL of `pgdata` once none of its handles is alive."""
    def stop_if_unheld():
        # Under pgserver's lock: no holder can join between the check and the stop.
        with postgres.data_directory_lock():
            # A list cut short (None) may still name live holders: leave it to the next start.
            if forget_dead(pgdata) != []:
                return False
            if (pgdata / "postmaster.pid").exists():
                try:
                    postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata)
                except subprocess.CalledProcessError:
                    pass  # a stale postmaster.pid: nothing was running
            return True

    watch(pgdata, stop_if_unheld)


def reap_pgbouncer(directory):
    # Imported here: the pooler's module spawns this reaper, so it imports this one.
    from .pgbouncer import reap

    reap(directory)


REAPERS = {"postgres": reap_postgres, "pgbouncer": reap_pgbouncer}

