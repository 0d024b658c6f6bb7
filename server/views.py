"""The lab's endpoints: two ways to sleep, and a look at the connection pool."""

import os
import time

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import func, select, text

from . import runtime
from .db import Todo, db
from .params import sleep_seconds

bp = Blueprint("lab", __name__)


def requested_seconds():
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
    db.session.connection()  # checks a connection out of the pool (and pings it): may wait
    connected = time.time()
    # A bound parameter, never string formatting: the value reaches SQL as data.
    db.session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    queried = time.time()
    # The count, not the 50 rows the original sent: it proves the query ran on the same
    # checked-out connection, while keeping 100-user Locust runs about the sleep, not JSON size.
    todo_count = db.session.scalar(select(func.count()).select_from(Todo))
    return sleep_response("postgres", seconds, started, todo_count=todo_count,
                          pool_wait=round(connected - started, 6), query_seconds=round(queried - connected, 6))


@bp.get("/pool")
def pool_status():
    """The pool and the worker as they are: the facts a load generator predicts waves from."""
    pool = db.engine.pool
    config = current_app.config
    worker = runtime.worker()
    # The driver the engine really loaded, whatever the settings meant it to be.
    driver = db.engine.dialect.driver
    return jsonify(
        pool_class=f"{type(pool).__module__}.{type(pool).__qualname__}",
        pool_size=pool.size(),
        max_overflow=config["MAX_OVERFLOW"],
        # The most connections the pool hands out at once: queries beyond it wait.
        pool_limit=pool.size() + config["MAX_OVERFLOW"],
        timeout=pool.timeout(),
        checked_out=pool.checkedout(),
        checked_in=pool.checkedin(),
        # SQLAlchemy's own count: connections beyond pool_size, negative until the pool has filled.
        overflow=pool.overflow(),
        # The Procfile process, and what its worker can overlap.
        mode=worker.get("mode"),
        concurrency=runtime.concurrency(driver),
        worker_class=worker.get("worker_class"),
        worker_concurrency=worker.get("worker_concurrency", 1),
        workers=worker.get("workers", 1),
        driver=driver,
        driver_version=db.engine.dialect.dbapi.__version__.split()[0],
        query_yields=runtime.query_yields(driver),
        psycogreen=runtime.psycogreen_active(),
        pid=os.getpid(),
        database=db.engine.url.render_as_string(hide_password=True),
        # What ?seconds= defaults to and may reach: load generators predict waves from these.
        sleep_seconds=config["SLEEP_SECONDS"],
        max_sleep_seconds=config["MAX_SLEEP_SECONDS"],
    )
