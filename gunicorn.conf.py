"""Gunicorn settings shared by every mode of the lab; the Procfile picks worker class and port."""

import os
import subprocess
import sys

# Gunicorn reads every module-level name that matches a setting ("config" is one): import with care.
from server import embedded, runtime
from server.config import ConfigError, load as load_settings

try:
    settings = load_settings()
except ConfigError as error:
    sys.exit(f"pool-lab: {error}")

# Overridden per mode by -b in the Procfile; set here so Gunicorn never falls back to 0.0.0.0:$PORT.
bind = ["127.0.0.1:8000"]
# One worker per mode, like the original: the lab shows what a single worker can overlap.
workers = 1
# Must stay off: with gevent, the pool's locks have to be created after the worker's monkey patching.
preload_app = False
# The sync worker reports to the master only between requests, so one request may hold it silent
# for MAX_SLEEP_SECONDS: allow that. (The gevent mode turns this off in the Procfile: see there.)
timeout = int(settings["MAX_SLEEP_SECONDS"]) + 30
# On SIGTERM, in-flight sleeps (at most MAX_SLEEP_SECONDS each) get to finish.
graceful_timeout = int(settings["MAX_SLEEP_SECONDS"]) + 5
# Three masters run at once; they would all claim the same default control socket path.
control_socket_disable = True


def on_starting(server):
    # Refuse a mode that would silently measure something else.
    if settings["PSYCOGREEN"] and not server.cfg.worker_class_str.startswith("gevent"):
        sys.exit(f"pool-lab: PSYCOGREEN=true needs the gevent worker (-k gevent), "
                 f"not {server.cfg.worker_class_str!r}")
    if not settings["DATABASE_URL"]:
        # The master takes the embedded server's handle; workers inherit the URL.
        try:
            handle = embedded.start(reaper=True, log=server.log.warning)
        except embedded.StartError as error:
            sys.exit(f"pool-lab: {error}")
        os.environ["DATABASE_URL"] = handle.get_uri()
        server.log.info("embedded PostgreSQL ready in %s", embedded.data_directory())
    # Run as a child, so the master never imports the app before its workers patch with gevent.
    seeded = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "server", "init-db", "--if-empty"],
        capture_output=True, text=True,
    )
    if seeded.returncode != 0:
        last_line = (seeded.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"pool-lab: could not prepare the todo table: {last_line}")
    server.log.info(seeded.stdout.strip())


def post_fork(server, worker):
    # Read by the app's /pool, so it reports the worker class it really runs in.
    worker_class = type(worker)
    os.environ[runtime.WORKER_CLASS_VARIABLE] = f"{worker_class.__module__}.{worker_class.__qualname__}"
    if settings["PSYCOGREEN"]:
        # psycopg2 then waits for the database through gevent, so a query yields to other greenlets.
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
