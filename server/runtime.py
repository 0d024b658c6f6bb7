"""What this worker really runs on, read from the process itself: the facts a prediction needs."""

import json
import os
import sys

# Set by gunicorn.conf.py's post_fork hook; absent under `flask run` or the test client.
WORKER_VARIABLE = "POOL_LAB_WORKER"


def describe_worker(cfg, worker):
    """Record, for the app in this worker, what Gunicorn runs it in (called in post_fork)."""
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
    })


def worker():
    return json.loads(os.environ.get(WORKER_VARIABLE) or "{}")


def gevent_patched():
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("time")


def psycogreen_active():
    import psycopg2.extensions

    # psycogreen works by installing this callback; nothing else in the lab sets one.
    return psycopg2.extensions.get_wait_callback() is not None


def query_yields():
    """Whether the worker runs other requests while a query waits for PostgreSQL.

    Threads do (psycopg2 releases the GIL); greenlets only when psycogreen makes psycopg2
    wait through gevent, else the query blocks the whole worker.
    """
    return psycogreen_active() or not gevent_patched()


def concurrency():
    """The lab's name for what this worker can overlap (what the mode is, not which mode)."""
    if psycogreen_active():
        return "green"
    if gevent_patched():
        return "gevent"
    return "threads" if worker().get("worker_concurrency", 1) > 1 else "sync"
