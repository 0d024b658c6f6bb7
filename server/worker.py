"""The worker this app runs in, read from the process itself: what it can overlap, and whether its queries yield.

Imported by gunicorn.conf.py's post_fork before the gevent worker's monkey patching: nothing
at its top may import Flask, SQLAlchemy or a driver.
"""

import json
import os
import sys

# Set by gunicorn.conf.py's post_fork hook; absent under `flask run` or the test client.
WORKER_VARIABLE = "POOL_LAB_WORKER"


def describe(cfg, worker):
    """Record, for the app in this Gunicorn `worker`, what Gunicorn runs it in (called in post_fork)."""
    from gunicorn.workers.base_async import AsyncWorker
    from gunicorn.workers.gthread import ThreadWorker

    if isinstance(worker, AsyncWorker):
        at_once = cfg.worker_connections  # one greenlet per connection, up to this many
    elif isinstance(worker, ThreadWorker):
        at_once = cfg.threads
    else:
        at_once = 1
    worker_class = type(worker)
    os.environ[WORKER_VARIABLE] = json.dumps({
        # The Procfile names each mode with -n (Gunicorn's proc_name).
        "mode": cfg.settings["proc_name"].get(),
        "worker_class": f"{worker_class.__module__}.{worker_class.__qualname__}",
        "worker_concurrency": at_once,
        "workers": cfg.workers,
        # Gunicorn's worker timeout (0: none): all that bounds a query where the lab's bound cannot (server/bounds.py).
        "worker_timeout": cfg.timeout,
    })


def described():
    """What describe() recorded, or {}."""
    return json.loads(os.environ.get(WORKER_VARIABLE) or "{}")


def gevent_patched():
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("time")


def psycogreen_active():
    import psycopg2.extensions

    # psycogreen works by installing its callback; the threads mode installs the lab's own (server/bounds.py).
    return getattr(psycopg2.extensions.get_wait_callback(), "__module__", None) == "psycogreen.gevent"


def psycopg_waits_through_gevent():
    """Whether psycopg 3 waits for PostgreSQL through gevent here, for its queries and its connects.

    psycopg/waiting.py chooses both once, when it is imported: `wait` (queries) is wait_c, its C loop
    on the socket, which never yields to gevent, unless _is_select_patched() finds gevent's patched
    select by then (or PSYCOPG_WAIT_FUNC names another); `DefaultSelector` (wait_conn, connecting) is
    gevent's only if the patching came first. So psycopg must be imported after the gevent worker's
    monkey patching (docs/advanced/async.rst, "Gevent support": official from psycopg 3.1.14).
    """
    import selectors

    from psycopg import waiting

    return (waiting.wait is not getattr(waiting, "wait_c", None)
            and waiting.DefaultSelector is selectors.DefaultSelector)


def query_yields(driver):
    """Whether the worker runs other requests while a query of `driver` waits for PostgreSQL.

    Threads do: both drivers release the GIL while they wait. Greenlets only when the driver
    waits through gevent (psycopg2 with psycogreen, psycopg 3 imported after the patching),
    else the query blocks the whole worker.
    """
    if not gevent_patched():
        return True
    return psycogreen_active() if driver == "psycopg2" else psycopg_waits_through_gevent()


def concurrency(driver):
    """The lab's name for what this worker can overlap (what the mode is, not which mode)."""
    if gevent_patched():
        return "green" if query_yields(driver) else "gevent"
    return "threads" if described().get("worker_concurrency", 1) > 1 else "sync"
