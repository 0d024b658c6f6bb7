"""The lab's endpoints: two ways to sleep, and a look at the pool and the database (facts)."""

import os
import socket
import time
from contextlib import contextmanager

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from contract import DB_PATH, POOL_PATH, BadParameter, sleep_path, sleep_seconds

from . import bounds, facts, pooler, worker
from .bounds import DatabaseTimeout
from .db import Todo, db
from .errors import ClientGone, PoolerUnavailable

bp = Blueprint("lab", __name__)


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
        mode=worker.described().get("mode"),
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
    if client is None or not (worker.gevent_patched() and worker.query_yields(db.engine.dialect.driver)):
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
            try:
                connection.cancel()
            except connection.Error:
                # Its query failed first (the database gone): the connection is closed, or its server cannot
                # take a cancel; the request answers with that cause, and there is nothing left to cancel.
                pass
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
    return jsonify(mode=worker.described().get("mode"), endpoints={
        f"{sleep_path('python')}?seconds=S": "time.sleep(S) in the worker, no database",
        f"{sleep_path('postgres')}?seconds=S": "SELECT pg_sleep(S) on a pooled connection",
        POOL_PATH: "the pool and the worker: the facts a prediction is made from",
        DB_PATH: "what the database says of its ceiling: max_connections, connections open; and PgBouncer's, "
                 "through it",
    })


@bp.get(sleep_path("python"))
def python_sleep():
    seconds = requested_seconds()
    started = time.time()
    # No database here, on purpose: this endpoint measures Python's sleep alone,
    # and keeps answering when the database is down.
    time.sleep(seconds)
    return sleep_response("python", seconds, started)


@bp.get(sleep_path("postgres"))
def postgres_sleep():
    seconds = requested_seconds()
    started = time.time()
    if current_app.config["PGBOUNCER"] and current_app.config["POOLER_PROBLEM"]:
        raise PoolerUnavailable(current_app.config["POOLER_PROBLEM"])
    # What the database may take to answer, beyond the grace (server/bounds.py).
    g.database_seconds = seconds
    # Checks a connection out of the pool (and pings it): may wait; the connect and the ping are bounded.
    connection = db.session.connection()
    connected = time.time()
    # Through PgBouncer the wait for a server connection starts here: errors.database_error reads it.
    g.query_started = connected
    try:
        # Through PgBouncer the query also waits in its queue for a server connection (transaction pooling).
        queue = pooler.queue_seconds(current_app.config["POOLER_URL"]) if current_app.config["PGBOUNCER"] else 0.0
        with bounds.step("query", queue), cancelled_when_the_client_leaves(connection.connection.dbapi_connection):
            # A bound parameter, never string formatting: the value reaches SQL as data.
            db.session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
            queried = time.time()
            # The count, not the 50 rows the original sent: it proves the query ran on the same
            # checked-out connection, while keeping 100-user Locust runs about the sleep, not JSON size.
            todo_count = db.session.scalar(select(func.count()).select_from(Todo))
    except DatabaseTimeout:
        # Its state is unknown (psycopg 3 leaves it mid-query): never back into the pool.
        connection.invalidate()
        raise
    # pool_wait includes connect_seconds: the time spent opening a new connection, if one was opened.
    return sleep_response("postgres", seconds, started, todo_count=todo_count,
                          pool_wait=round(connected - started, 6), query_seconds=round(queried - connected, 6),
                          connect_seconds=round(g.get("connect_seconds", 0.0), 6))


@bp.get(DB_PATH)
def database_status():
    """What the database says of itself: the ceiling a prediction without a pool limit needs."""
    return jsonify(facts.database_facts())


@bp.get(POOL_PATH)
def pool_status():
    """The pool and the worker as they are: the facts a load generator predicts waves from."""
    return jsonify(facts.pool_facts(db.engine))
