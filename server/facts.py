"""What /pool and /db report: the pool and the worker as they are, and what the database says of its ceiling.

A load generator predicts a burst's waves from these facts (lab.waves).
"""

import os
import threading

import psutil
from flask import current_app
from sqlalchemy import create_engine, text
from sqlalchemy.pool import QueuePool, StaticPool

from . import bounds, pooler, worker


def pool_counts(pool):
    if not isinstance(pool, QueuePool):
        # NullPool keeps no connection and sets no limit: none of these apply.
        return dict.fromkeys(("pool_size", "max_overflow", "pool_limit", "timeout", "checked_out", "checked_in",
                              "overflow", "open_connections"))
    return {
        "pool_size": pool.size(),
        "max_overflow": current_app.config["MAX_OVERFLOW"],
        # The most connections the pool hands out at once: queries beyond it wait.
        "pool_limit": pool.size() + current_app.config["MAX_OVERFLOW"],
        "timeout": pool.timeout(),
        "checked_out": pool.checkedout(),
        "checked_in": pool.checkedin(),
        # SQLAlchemy's own count: connections beyond pool_size, negative until the pool has filled.
        "overflow": pool.overflow(),
        "open_connections": pool.checkedin() + pool.checkedout(),
    }


def pool_facts(engine):
    """/pool: the engine's pool and the worker it serves in."""
    pool = engine.pool
    described = worker.described()
    # The driver the engine really loaded, whatever the settings meant it to be.
    driver = engine.dialect.driver
    return {
        "pool_class": f"{type(pool).__module__}.{type(pool).__qualname__}",
        **pool_counts(pool),
        # The Procfile process, and what its worker can overlap.
        "mode": described.get("mode"),
        "concurrency": worker.concurrency(driver),
        "worker_class": described.get("worker_class"),
        "worker_concurrency": described.get("worker_concurrency", 1),
        "workers": described.get("workers", 1),
        # The cores this process may run on: what its workers' CPU can spread over (lab.waves).
        "cpus": len(os.sched_getaffinity(0)),
        "driver": driver,
        "driver_version": engine.dialect.dbapi.__version__.split()[0],
        "query_yields": worker.query_yields(driver),
        "psycogreen": worker.psycogreen_active(),
        "pid": os.getpid(),
        "database": engine.url.render_as_string(hide_password=True),
        # The PGBOUNCER setting: the postgres endpoint asks for PgBouncer (true even when there is none
        # to have; then /db's `pooler` says why), and /db's `pooler` holds its limits.
        "pgbouncer": current_app.config["PGBOUNCER"],
        # What ?seconds= defaults to and may reach: load generators predict waves from these.
        "sleep_seconds": current_app.config["SLEEP_SECONDS"],
        "max_sleep_seconds": current_app.config["MAX_SLEEP_SECONDS"],
        # A wait on the database past seconds + this is a 504 database_timeout; null where the worker cannot
        # keep a bound (sync, gevent), which worker_timeout then bounds, if anything (0: nothing).
        "db_grace_seconds": current_app.config["DB_GRACE_SECONDS"] if bounds.bounded() else None,
        "worker_timeout": described.get("worker_timeout"),
    }


# What PostgreSQL says of its own ceiling. Client backends only: not its own background processes.
CEILING_QUERY = text("""
    SELECT current_setting('max_connections')::int AS max_connections,
           current_setting('superuser_reserved_connections')::int AS superuser_reserved_connections,
           (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
           (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS open_connections,
           current_setting('server_version') AS server_version,
           pg_backend_pid() AS backend_pid""")
_ceiling_lock = threading.Lock()  # created in the worker, after gevent's patching: a greenlet lock there


def database_facts():
    """/db: what the database says of itself, on a connection of its own that is kept open: /db
    must answer while a burst holds every pooled connection, and even at max_connections. Straight
    to the database, never through the pooler, whose queue it would wait in."""
    extensions = current_app.extensions
    if "pool_lab_ceiling" not in extensions:
        url = current_app.config["DIRECT_DATABASE_URI"]
        extensions["pool_lab_ceiling"] = create_engine(url, poolclass=StaticPool, pool_pre_ping=True)
        # Bounded like the pool's: /db answers within DB_GRACE_SECONDS, or 504 naming the step.
        bounds.watch(extensions["pool_lab_ceiling"])
    with _ceiling_lock, extensions["pool_lab_ceiling"].connect() as connection:
        try:
            with bounds.step("query"):
                facts = dict(connection.execute(CEILING_QUERY).mappings().one())
        except bounds.DatabaseTimeout:
            connection.invalidate()  # StaticPool's one connection: the next /db opens another
            raise
    # Slots held back from the lab's role, and those a new connection of it can still take.
    facts["reserved"] = 0 if facts["superuser"] else facts["superuser_reserved_connections"]
    facts["accepts"] = max(facts["max_connections"] - facts["reserved"] - facts["open_connections"], 0)
    # The server's main process, when the database runs on this machine: whose backends'
    # memory a load generator here can sample.
    try:
        facts["postmaster_pid"] = psutil.Process(facts.pop("backend_pid")).ppid()
    except psutil.Error:
        facts["postmaster_pid"] = None
    facts["pooler"] = pooler_facts()
    return facts


def pooler_facts():
    """/db's `pooler`: PgBouncer's settings and state (PGBOUNCER=true), else None.

    `unavailable` says why when there is none to ask; `pid` is its process when it runs on this
    machine, found by its socket (whose memory a load generator here can sample).
    """
    config = current_app.config
    if not config["PGBOUNCER"]:
        return None
    if config["POOLER_PROBLEM"]:
        return {"unavailable": config["POOLER_PROBLEM"]}
    try:
        facts = pooler.admin_facts(config["POOLER_URL"])
    except Exception as error:  # the driver's error, whichever: say it, /db still answers
        return {"unavailable": str(error).strip().splitlines()[0]}
    facts["pid"] = pooler.local_pid(config["POOLER_URL"])
    return facts
