"""PostgreSQL as pgserver runs it: pgserver imported quietly, its lock and runtime directory, its commands."""

import warnings

from .system_user import command_user


def load_pgserver():
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp, which is fine here.
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def runtime_path():
    """pgserver's runtime directory: python_PostgresServer in XDG_RUNTIME_DIR, /run/user/<uid> or /tmp/runtime-<uid>."""
    return load_pgserver().PostgresServer.runtime_path


def data_directory_lock():
    """pgserver's own lock, held for every change to a data directory's server or handles."""
    return load_pgserver().PostgresServer._lock


def pg_ctl(args, pgdata):
    return load_pgserver().pg_ctl(args, pgdata=pgdata, user=command_user())


def postgres(args, pgdata):
    return load_pgserver().postgres(args, pgdata=pgdata, user=command_user())
