"""The data directory made fit for pgserver: empty, a data directory, or what an interrupted start left, emptied."""

import shutil

from .failures import StartError
from .handles import HANDLE_PIDS_FILE
from .reaper import REAPER_LOCK_FILE
from .settings import SETTINGS_FILE

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


def prepare(pgdata, log):
    """Make `pgdata` fit for pgserver; say what was repaired through `log`, or raise StartError.

    A directory that is neither is never deleted.
    """
    # EMBEDDED_PGDATA: the setting the lab's callers read the data directory from.
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
