"""The lab's database: DATABASE_URL, or the embedded PostgreSQL; and its Todo table.

    python -m lab.database init-db              # the Todo table reset to its 50 seed rows
    python -m lab.database init-db --if-empty   # created and seeded only if missing or empty

The app starts no database (server.create_app needs a URL): whoever starts the lab's
servers decides which database they use, here, once (Gunicorn's on_starting, lab.runs, and
this command), and hands its URL on as DATABASE_URL.
"""

import argparse
import os
import subprocess
import sys

import embedded_pg
from server import config

from . import DEFAULT_PGDATA


class TableError(Exception):
    """The Todo table could not be prepared; the message is the database's own words."""


def data_directory(environ=None):
    """The embedded PostgreSQL's data directory: EMBEDDED_PGDATA, else var/pgdata in the checkout."""
    return config.embedded_pgdata(os.environ if environ is None else environ) or DEFAULT_PGDATA


def database_url(max_connections=None, environ=None, **start_options):
    """DATABASE_URL when set, else the embedded PostgreSQL's URL (EMBEDDED_PGDATA, else var/pgdata in
    the checkout), started or joined for as long as this process lives, with `max_connections`
    (None: PG_MAX_CONNECTIONS). `start_options` go to embedded_pg.start (with_reaper, log)."""
    environ = os.environ if environ is None else environ
    if max_connections is None:
        max_connections = config.pg_max_connections(environ)
    return embedded_pg.database_url(environ.get("DATABASE_URL", "").strip() or None, data_directory(environ),
                                    max_connections, **start_options)


def embedded_pooler(environ=None, **start_options):
    """The lab's own PgBouncer in front of the embedded PostgreSQL (data_directory) with the
    PGBOUNCER_* settings, started or joined for as long as this process lives (its Pooler, whose
    url is POOLER_URL). `start_options` go to embedded_pg.pgbouncer.start (with_reaper, log).
    Raises embedded_pg.StartError with one line, a bad PGBOUNCER_* setting's included."""
    from embedded_pg import pgbouncer

    environ = os.environ if environ is None else environ
    try:
        settings = pgbouncer.Settings(**config.embedded_pooler(config.load(environ)))
    except config.ConfigError as error:
        raise embedded_pg.StartError(str(error)) from None
    return pgbouncer.start(data_directory(environ), settings, **start_options)


def prepare_table(url, *options):
    """`flask --app server init-db OPTIONS` on `url`, in a child process (a Gunicorn master must not
    import the app before its workers patch with gevent); its output lines, or TableError."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "server", "init-db", *options],
                          env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True)
    if done.returncode != 0:
        # init-db ends a failure with one "Error: <the database's own words>" line (Click's form).
        last_line = (done.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("Error: ")
        raise TableError(f"could not prepare the todo table: {last_line}")
    return done.stdout.strip().splitlines()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.database", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    init_db = commands.add_parser("init-db", help="create the Todo table and its seed rows")
    init_db.add_argument("--if-empty", action="store_true", help="leave a table that already has rows as it is")
    args = parser.parse_args(argv)
    try:
        url = database_url()
        lines = prepare_table(url, *(["--if-empty"] if args.if_empty else []))
    except (config.ConfigError, embedded_pg.StartError, TableError) as error:
        print(f"pool-lab: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
