"""The lab's settings of the embedded PostgreSQL: max_connections, which PostgreSQL reads only when it starts."""

import os

from . import postgres
from .handles import forget_dead

# The lab's own settings for the server, in a file that postgresql.conf includes: pgserver starts
# the server with fixed options.
SETTINGS_FILE = "pool-lab.conf"


def apply_max_connections(handle, pgdata, wanted, log):
    """Run the server of `handle` with max_connections `wanted` (None: PostgreSQL's own 100).

    A server running with another value is restarted when this process is its only holder, and
    otherwise left running with a warning through `log` that says so.
    """
    import psycopg2

    settings = pgdata / SETTINGS_FILE
    lines = "" if wanted is None else f"max_connections = {wanted}\n"
    if not lines and not (settings.exists() and settings.read_text()):
        return  # PostgreSQL's own value, as on every start before: nothing to check at start-up
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as out:
            out.write(f"\n# pool-lab's settings (PG_MAX_CONNECTIONS)\n{include}\n")
    settings.write_text(lines)
    configured = postgres.postgres(["-C", "max_connections"], pgdata).strip()
    # pgserver's URL leaves the port to libpq's default, which a server started on another lacks.
    port = handle.get_postmaster_info().port
    with psycopg2.connect(handle.get_uri(), port=port) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        running = cursor.fetchone()[0]
    connection.close()
    if running == configured:
        return
    with postgres.data_directory_lock():
        alone = forget_dead(pgdata) == [os.getpid()]
        if alone:
            postgres.pg_ctl(["-w", "-m", "fast", "restart"], pgdata)
            handle.ensure_postgres_running()  # reads the new postmaster's pid, for the stop at exit
    if not alone:
        log(f"the embedded PostgreSQL runs with max_connections {running}, not {configured}: other processes "
            "hold it; stop them all (Ctrl-C) and start again to apply PG_MAX_CONNECTIONS")
