"""The lab's endpoints: two ways to sleep, and a look at the connection pool."""

import os
import socket
import time
from contextlib import contextmanager

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from . import runtime
from .db import Todo, database_facts, db
from contract import BadParameter, sleep_seconds

bp = Blueprint("lab", __name__)


class ClientGone(Exception):
    """The client closed its connection while its query ran; the query was cancelled."""


def requested_seconds():
    # A misspelt ?Seconds= would otherwise sleep the default without a word.
    unknown = sorted(set(request.args) - {"seconds"})
    if unknown:
        raise BadParameter(f"unknown parameter {unknown[0]!r}; this endpoint takes only seconds")
    return sleep_seconds(
        request.args.getlist("seconds"),
        default=current_app.config["SLEEP_SECONDS"],
        maximum=current_app.config["MAX_SLEEP_SECONDS"],
    )


def sleep_response(endpoint, seconds, started, **extra):
    finished = time.time()
    return jsonify(
        endpoint=endpoint,
        seconds=seconds,
        elapsed=round(finished - started, 4),
        # Wall-clock times, comparable with the load generator's on the same machine:
        # the benchmark splits a request's time into load generator, server and database.
        started_at=round(started, 6),
        finished_at=round(finished, 6),
        mode=runtime.worker().get("mode"),
        pid=os.getpid(),
        **extra,
    )


@contextmanager
def cancelled_when_the_client_leaves(connection):
    """Cancel the query if the client closes its connection, so the pooled connection comes back
    at once instead of after the whole sleep.

    Only where queries yield to gevent (green, fair): a greenlet can then watch the client's
    socket while the request's greenlet waits for PostgreSQL. Elsewhere nothing can watch.
    """
    client = request.environ.get("gunicorn.socket")
    if client is None or not (runtime.gevent_patched() and runtime.query_yields(db.engine.dialect.driver)):
        yield
        return
    import gevent
    from gevent.socket import wait_read

    def watch():
        wait_read(client.fileno())  # the client sent nothing more: readable means it closed
        try:
            closed = client.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            closed = True
        if closed:
            connection.cancel()
    watcher = gevent.spawn(watch)
    try:
        yield
    except OperationalError as error:
        # query_canceled: pgcode in psycopg2, sqlstate in psycopg 3.
        if watcher.dead and "57014" in (getattr(error.orig, "pgcode", None), getattr(error.orig, "sqlstate", None)):
            raise ClientGone() from error
        raise
    finally:
        # Not waiting for it to die: that would yield here, and let requests waiting for the pool
        # run before this one returns its connection, which changes the waves the lab measures.
        watcher.kill(block=False)


@bp.get("/")
def index():
    """What the lab serves, for whoever starts at the root."""
    return jsonify(mode=runtime.worker().get("mode"), endpoints={
        "/sleep/python/?seconds=S": "time.sleep(S) in the worker, no database",
        "/sleep/postgres/?seconds=S": "SELECT pg_sleep(S) on a pooled connection",
        "/pool": "the pool and the worker: the facts a prediction is made from",
        "/db": "what the database says of its ceiling: max_connections, connections open",
    })


@bp.get("/sleep/python/")
def python_sleep():
    seconds = requested_seconds()
    started = time.time()
    # No database here, on purpose: this endpoint measures Python's sleep alone,
    # and keeps answering when the database is down.
    time.sleep(seconds)
    return sleep_response("python", seconds, started)


@bp.get("/sleep/postgres/")
def postgres_sleep():
    seconds = requested_seconds()
    started = time.time()
    # Checks a connection out of the pool (and pings it): may wait.
    connection = db.session.connection().connection.dbapi_connection
    connected = time.time()
    with cancelled_when_the_client_leaves(connection):
        # A bound parameter, never string formatting: the value reaches SQL as data.
        db.session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    queried = time.time()
    # The count, not the 50 rows the original sent: it proves the query ran on the same
    # checked-out connection, while keeping 100-user Locust runs about the sleep, not JSON size.
    todo_count = db.session.scalar(select(func.count()).select_from(Todo))
    # pool_wait includes connect_seconds: the time spent opening a new connection, if one was opened.
    return sleep_response("postgres", seconds, started, todo_count=todo_count,
                          pool_wait=round(connected - started, 6), query_seconds=round(queried - connected, 6),
                          connect_seconds=round(g.get("connect_seconds", 0.0), 6))


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


@bp.get("/db")
def database_status():
    """What the database says of itself: the ceiling a prediction without a pool limit needs."""
    return jsonify(database_facts())


@bp.get("/pool")
def pool_status():
    """The pool and the worker as they are: the facts a load generator predicts waves from."""
    pool = db.engine.pool
    worker = runtime.worker()
    # The driver the engine really loaded, whatever the settings meant it to be.
    driver = db.engine.dialect.driver
    return jsonify(
        pool_class=f"{type(pool).__module__}.{type(pool).__qualname__}",
        **pool_counts(pool),
        # The Procfile process, and what its worker can overlap.
        mode=worker.get("mode"),
        concurrency=runtime.concurrency(driver),
        worker_class=worker.get("worker_class"),
        worker_concurrency=worker.get("worker_concurrency", 1),
        workers=worker.get("workers", 1),
        # The cores this process may run on: what its workers' CPU can spread over (lab.waves).
        cpus=len(os.sched_getaffinity(0)),
        driver=driver,
        driver_version=db.engine.dialect.dbapi.__version__.split()[0],
        query_yields=runtime.query_yields(driver),
        psycogreen=runtime.psycogreen_active(),
        pid=os.getpid(),
        database=db.engine.url.render_as_string(hide_password=True),
        # What ?seconds= defaults to and may reach: load generators predict waves from these.
        sleep_seconds=current_app.config["SLEEP_SECONDS"],
        max_sleep_seconds=current_app.config["MAX_SLEEP_SECONDS"],
    )
