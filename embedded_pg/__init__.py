"""The embedded PostgreSQL: a private server for a checkout, started or joined by every process that asks.

pgserver (PyPI) ships PostgreSQL binaries, runs initdb on first use, and keeps a list of the
processes holding a handle on the data directory: the last one to exit stops the server.
Every Gunicorn master of the lab takes a handle, so all modes share one server and it stops
with the last mode. It listens on a Unix socket only, so it adds no network port at all.

Development tooling beside the app, not part of it: Gunicorn's hooks (gunicorn.conf.py), the
lab and the tests start it and hand its URL on as DATABASE_URL. It reads no setting of its own:
its callers pass the data directory and max_connections.

PgBouncer (embedded_pg.pgbouncer) is started the same way, in front of it, by the modes that
connect through a pooler: one per data directory, stopped with its last user.
"""

from .failures import StartError
from .start import database_url, start
from .system_user import SYSTEM_USER
from .tcp import start_on_tcp

__all__ = ["SYSTEM_USER", "StartError", "database_url", "start", "start_on_tcp"]
