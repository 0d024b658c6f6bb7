"""Every wait on the database bounded: a connect, a pool's ping or a query that gets no answer within the
request's `seconds` + DB_GRACE_SECONDS raises DatabaseTimeout (504 database_timeout), and its connection is
discarded, never handed back to the pool.

Why the lab bounds the wait itself, and how, in one place. A stopped PostgreSQL (SIGSTOP, a lost path to a
remote one, a lock that never comes free) is alive as far as TCP goes: the kernel still ACKs, so keepalives and
tcp_user_timeout never fire; statement_timeout is enforced by the server, which is the one not answering; libpq's
connect_timeout bounds a connect only, and psycopg2 leaves it unenforced once it waits through a callback. So the
bound is kept where the request waits, one way per worker:

- gevent, queries that yield (psycopg2 + psycogreen; psycopg 3): the request's greenlet waits in gevent's hub, so
  a gevent.Timeout interrupts the wait wherever it is. psycopg2 then closes the connection itself (green.c's
  green_panic, for any error in its wait callback); psycopg 3 leaves it mid-query; both are invalidated.
- gthread with psycopg2 (the threads mode): a thread cannot be interrupted, but psycopg2 waits through a callback
  when one is set (set_wait_callback, the hook psycogreen uses; psycopg2.extras.wait_select is its example, with no
  deadline): ours polls the socket until the step's deadline and raises there; psycopg2 closes the connection.
- sync, and gevent with psycopg2 unpatched: the query blocks the whole worker, so nothing in it runs to keep a
  bound. Gunicorn's worker timeout kills a sync worker silent that long; the gevent mode runs with --timeout 0,
  so nothing bounds it (docs/design.md, "Gunicorn's timeouts"). /pool says which applies (db_grace_seconds).

The steps SQLAlchemy takes by itself (a connect, the pool's pre-ping) are bounded by watch(engine), the
endpoints' queries by step("query").
"""

import select
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import worker

# What each step is, as a 504 names it.
STEPS = {
    "connect": "the connect (a new connection)",
    "ping": "the ping (the pool's SELECT 1 on an idle connection before handing it out)",
    "query": "the query",
}


@dataclass
class DatabaseTimeout(Exception):
    """The database did not answer `step` within the request's `seconds` + `grace`."""
    step: str
    seconds: float
    grace: float
    # Through PgBouncer: how long it may queue the query for a server connection (its query_wait_timeout).
    queue: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def bound(self):
        return self.seconds + self.grace + self.queue

    def __str__(self):
        queue = f" + PgBouncer's query_wait_timeout {self.queue:g}" if self.queue else ""
        return (f"PostgreSQL did not answer {STEPS[self.step]} within {self.bound:g} s (seconds {self.seconds:g} + "
                f"DB_GRACE_SECONDS {self.grace:g}{queue}); the connection was discarded")

    def waited(self):
        return time.monotonic() - self.started


# How this process keeps the bound: "gevent", "callback" (psycopg2 under threads), or None (nothing can).
_mechanism = None
# The callback's steps: the innermost step and its deadline, per thread.
_steps = threading.local()


def mechanism(driver):
    """How a process with `driver` keeps the bound: see the module's docstring."""
    if worker.gevent_patched():
        return "gevent" if worker.query_yields(driver) else None
    if worker.concurrency(driver) == "threads" and driver == "psycopg2":
        return "callback"
    return None


def init_app(app, driver):
    """Decide the process's way once; under threads, install psycopg2's wait callback."""
    global _mechanism
    _mechanism = mechanism(driver)
    if _mechanism == "callback":
        import psycopg2.extensions

        psycopg2.extensions.set_wait_callback(wait_until_the_deadline)


def bounded():
    """Whether this process bounds its waits on the database (else /pool's db_grace_seconds is null)."""
    return _mechanism is not None


def request_seconds():
    """What the current request asks the database to take (the view sets it): a step's bound adds the grace.
    0 for /db and outside a request."""
    from flask import g, has_app_context

    return g.get("database_seconds", 0.0) if has_app_context() else 0.0


@contextmanager
def step(name, queue=0.0):
    """Bound the waits on the database inside to the request's bound; DatabaseTimeout past it.

    `queue`: how long a queue on the way may hold it besides (PgBouncer's for a query through it, which its
    query_wait_timeout bounds, as POOL_TIMEOUT bounds the pool's); None: that queue waits for ever, and then a
    silent database cannot be told from it, so the step is not bounded.
    """
    if _mechanism is None or queue is None:
        yield
        return
    from flask import current_app

    timeout = DatabaseTimeout(name, request_seconds(), current_app.config["DB_GRACE_SECONDS"], queue)
    if _mechanism == "gevent":
        import gevent

        with gevent.Timeout(timeout.bound, timeout):
            yield
        return
    outer = getattr(_steps, "current", None)
    _steps.current = timeout
    try:
        yield
    finally:
        _steps.current = outer


def wait_until_the_deadline(connection):
    """psycopg2's wait callback under threads: psycopg2.extras.wait_select's loop, with the step's deadline.

    poll(2), not select(2): a gthread worker may hold more than 1024 descriptors.
    """
    import psycopg2.extensions as ext

    while True:
        state = connection.poll()
        if state == ext.POLL_OK:
            return
        if state not in (ext.POLL_READ, ext.POLL_WRITE):
            raise connection.OperationalError(f"bad state from poll: {state}")
        current = getattr(_steps, "current", None)
        left = None if current is None else current.started + current.bound - time.monotonic()
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN if state == ext.POLL_READ else select.POLLOUT)
        if (left is not None and left <= 0) or not poller.poll(None if left is None else left * 1000):
            raise current


def watch(engine):
    """Bound what SQLAlchemy waits for by itself on `engine`: its connects and its pool's pre-pings.

    Neither has an event around it (do_connect replaces a connect, and the ping has none), so the dialect's
    own methods are wrapped; the pool's queue is outside both, bounded by POOL_TIMEOUT. A step that fails
    there is invalidated by the pool itself (_ConnectionRecord._checkin_failed).
    """
    dialect = engine.dialect
    connect, ping = dialect.connect, dialect.do_ping

    def bounded_connect(*cargs, **cparams):
        with step("connect"):
            return connect(*cargs, **cparams)

    def bounded_ping(dbapi_connection):
        with step("ping"):
            return ping(dbapi_connection)

    dialect.connect, dialect.do_ping = bounded_connect, bounded_ping
