"""What this process really runs on: worker class, gevent patching, psycogreen."""

import os
import sys

# Set by gunicorn.conf.py's post_fork hook; absent under `flask run` or the test client.
WORKER_CLASS_VARIABLE = "GUNICORN_WORKER_CLASS"


def worker_class():
    return os.environ.get(WORKER_CLASS_VARIABLE)


def gevent_patched():
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("time")


def psycogreen_active():
    import psycopg2.extensions

    # psycogreen works by installing this callback; nothing else in the lab sets one.
    return psycopg2.extensions.get_wait_callback() is not None


def server_mode():
    """The lab's name for what this worker can overlap, read from the process itself."""
    if psycogreen_active():
        return "green"
    if gevent_patched():
        return "gevent"
    return "sync"
