"""PgBouncer as the app sees it: its admin console's facts, and which of its failures a driver error is.

Imports nothing of the app: facts (/db) and errors import from here.
"""

import functools
import time

from contract import POOLER_QUERY_WAIT_TIMEOUT, POOLER_REFUSED, POOLER_UNAVAILABLE

# SHOW CONFIG's keys that decide how the pooler queues and refuses (docs/pgbouncer.md).
CONFIG_KEYS = ("pool_mode", "default_pool_size", "max_client_conn", "reserve_pool_size", "reserve_pool_timeout",
               "query_wait_timeout")
# What a SHOW CONFIG value is, per key: PgBouncer reports every value as text.
NUMBERS = {"default_pool_size": int, "max_client_conn": int, "reserve_pool_size": int,
           "reserve_pool_timeout": float, "query_wait_timeout": float}
# PgBouncer 1.18's own words (src/client.c; src/janitor.c) as psycopg passes them on.
REFUSED_WORDS = "no more connections allowed (max_client_conn)"
QUERY_WAIT_TIMEOUT_WORDS = "query_wait_timeout"
# libpq's words when the pooler's socket is not there or nobody listens on it.
UNREACHABLE_WORDS = ("No such file or directory", "Connection refused")
# libpq's words when the other side closed the connection. psycopg2 says only this when PgBouncer
# closes a client with an error (query_wait_timeout): the error message itself is lost.
CLOSED_WORDS = ("server closed the connection unexpectedly", "consuming input failed", "connection is lost")
# PgBouncer drops a client that waited past query_wait_timeout in its janitor, which runs every
# 1/3 s (full_maint_period in 1.18's src/janitor.c): within that after the timeout, and the rest of
# this second for the worker to notice on a busy machine. A connection closed at any other time is not that.
QUERY_WAIT_DROP_WINDOW = 1.0


def queue_seconds(pooler_url):
    """How long PgBouncer at `pooler_url` may hold a query in its queue for a server connection (its
    query_wait_timeout, asked once per worker): a query's wait through it includes that queue, so its bound
    adds it (server/bounds.py). None when PgBouncer waits for ever (0); 0 when it cannot be asked (the query
    will fail with the cause)."""
    try:
        return _query_wait_timeout(pooler_url) or None
    except Exception:  # the driver's error, whichever
        return 0.0


@functools.lru_cache
def _query_wait_timeout(pooler_url):
    return admin_facts(pooler_url)["query_wait_timeout"]


def admin_url(pooler_url):
    """The admin console's URL: the pooler's, on its `pgbouncer` database, as libpq reads it."""
    from sqlalchemy.engine import make_url

    url = make_url(pooler_url).set(drivername="postgresql", database="pgbouncer")
    address, _, query = url.render_as_string(hide_password=False).partition("?")
    # SQLAlchemy writes a space in the query as "+" (a "+" as %2B), which libpq does not read back.
    return f"{address}?{query.replace('+', '%20')}" if query else address


def admin_facts(pooler_url, timeout=2):
    """SHOW CONFIG and SHOW POOLS of the pooler at `pooler_url`, from its admin console.

    psycopg2, whatever the app's driver: the console speaks the simple query protocol only, and
    refuses transactions (so autocommit). Raises the driver's error when the pooler cannot be reached.
    """
    import psycopg2

    connection = psycopg2.connect(admin_url(pooler_url), connect_timeout=timeout)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SHOW CONFIG")
            config = {key: value for key, value, *_ in cursor.fetchall() if key in CONFIG_KEYS}
            cursor.execute("SHOW POOLS")
            columns = [column[0] for column in cursor.description]
            pools = [dict(zip(columns, row)) for row in cursor.fetchall()]
    finally:
        connection.close()
    facts = {key: NUMBERS.get(key, str)(config[key]) for key in CONFIG_KEYS if key in config}
    # The lab's pools (the admin console's own `pgbouncer` one left out), added up.
    served = [pool for pool in pools if pool["database"] != "pgbouncer"]
    for name, column in (("clients_active", "cl_active"), ("clients_waiting", "cl_waiting"),
                         ("servers_active", "sv_active"), ("servers_idle", "sv_idle")):
        facts[name] = sum(pool[column] for pool in served)
    facts["max_wait"] = max((pool["maxwait"] + pool["maxwait_us"] / 1e6 for pool in served), default=0.0)
    return facts


def pooler_failure(cause, pooler_url, query_started):
    """Which pooler failure (contract's POOLER_* code) the driver's error `cause` is, or None for
    the database's own. `query_started`: when the failed query was sent (time.time()), or None."""
    if REFUSED_WORDS in cause:
        return POOLER_REFUSED
    if QUERY_WAIT_TIMEOUT_WORDS in cause:
        return POOLER_QUERY_WAIT_TIMEOUT
    if any(words in cause for words in UNREACHABLE_WORDS):
        return POOLER_UNAVAILABLE
    if not any(words in cause for words in CLOSED_WORDS):
        return None
    # Closed: by a pooler that has stopped, by one that is up and dropped this client after it
    # waited query_wait_timeout for a server connection, or by the database (a terminated backend).
    try:
        wait_timeout = admin_facts(pooler_url)["query_wait_timeout"]
    except Exception:  # the driver's error, whichever: the pooler is not there
        return POOLER_UNAVAILABLE
    waited = None if query_started is None else time.time() - query_started
    if waited is not None and 0 < wait_timeout <= waited <= wait_timeout + QUERY_WAIT_DROP_WINDOW:
        return POOLER_QUERY_WAIT_TIMEOUT
    return None


def local_pid(pooler_url):
    """The pid of the process that listens on the pooler's Unix socket on this machine, or None."""
    import psutil
    from sqlalchemy.engine import make_url

    url = make_url(pooler_url)
    host, port = url.query.get("host"), url.query.get("port") or url.port or 5432
    if not host or not str(host).startswith("/"):
        return None
    socket_path = f"{host}/.s.PGSQL.{port}"
    try:
        for connection in psutil.net_connections(kind="unix"):
            if connection.laddr == socket_path and connection.pid:
                return connection.pid
    except psutil.Error:
        pass
    return None
