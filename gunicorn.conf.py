"""Gunicorn settings shared by every mode of the lab; the Procfile picks name, worker class and port.

Gunicorn reads this file from the working directory by itself, and treats every module-level
name that matches a setting as one ("config" is a setting too): import with care.
"""

import json
import os
import sys

from lab.kernel import somaxconn
from server.config import ConfigError, load as load_settings

try:
    settings = load_settings()
except ConfigError as error:
    sys.exit(f"pool-lab: {error}")

# The app, once for every mode (the Procfile lines name no app).
wsgi_app = "server:create_app()"
# Overridden per mode by -b in the Procfile; set here so Gunicorn never falls back to 0.0.0.0:$PORT.
bind = ["127.0.0.1:8000"]
# WEB_CONCURRENCY, checked by the lab (1 by default, like the original: what one worker overlaps).
workers = settings["WEB_CONCURRENCY"]
# WORKER_CONNECTIONS (Gunicorn's 1000 by default): what one gevent worker overlaps; see raise_open_files().
worker_connections = settings["WORKER_CONNECTIONS"]
# Must stay off: with gevent, the pool's locks have to be created after the worker's monkey patching.
preload_app = False
# The sync worker reports to the master only between requests, so one request may hold it silent
# for MAX_SLEEP_SECONDS: allow that. (The gevent mode turns it off in the Procfile: docs/design.md says why.)
timeout = int(settings["MAX_SLEEP_SECONDS"]) + 30
# On SIGTERM, in-flight sleeps (at most MAX_SLEEP_SECONDS each) get to finish.
graceful_timeout = int(settings["MAX_SLEEP_SECONDS"]) + 5
# Several masters run at once; they would all claim the same default control socket path.
control_socket_disable = True
# The kernel caps every listen queue at net.core.somaxconn: ask for all of it (Gunicorn's default
# is 2048), so a burst's connections wait in the queue, not for a SYN retry a second later.
backlog = somaxconn() or 2048


def on_starting(arbiter):
    import embedded_pg
    from lab import database

    gevent_worker = arbiter.cfg.worker_class_str.startswith("gevent")
    raise_open_files(arbiter, gevent_worker)
    # Refuse a mode that would silently measure something else.
    if settings["PSYCOGREEN"] and not gevent_worker:
        sys.exit(f"pool-lab: PSYCOGREEN=true needs the gevent worker (-k gevent), "
                 f"not {arbiter.cfg.worker_class_str!r}")
    if settings["DRIVER"] == "psycopg" and gevent_worker:
        blocking = psycopg_would_block_gevent()
        if blocking:
            sys.exit(f"pool-lab: DRIVER=psycopg would block the whole gevent worker in every query: {blocking}")
    if arbiter.cfg.worker_class_str == "gthread":
        # Here, not as a module-level `threads`: Gunicorn turns a sync worker with threads into gthread.
        arbiter.cfg.set("threads", settings["THREADS"])
    try:
        # The master takes the embedded server's handle (when DATABASE_URL is unset); its workers and the
        # init-db child inherit the URL.
        os.environ["DATABASE_URL"] = database.database_url(with_reaper=True, log=arbiter.log.warning)
        if settings["PGBOUNCER"]:
            # Before the facts: through the pooler, its pool is what the sizing check weighs.
            through_the_pooler(arbiter)
        # The same child that seeds the table reports the database's ceiling, for the sizing check.
        ready, facts = database.prepare_table(os.environ["DATABASE_URL"], "--if-empty", "--facts")[-2:]
    except (embedded_pg.StartError, database.TableError) as error:
        sys.exit(f"pool-lab: {error}")
    arbiter.log.info(ready)
    oversized = pools_past_the_ceiling(arbiter.cfg.workers, json.loads(facts))
    if oversized:
        arbiter.log.warning("pool-lab: %s", oversized)


def through_the_pooler(arbiter):
    """Hand the workers a PgBouncer (POOLER_URL): yours, or the lab's own in front of the embedded
    PostgreSQL. When there is none to have, hand them the reason instead, which their postgres
    endpoint answers with, and carry on: honcho stops every mode when one exits."""
    import embedded_pg
    from lab.database import embedded_pooler
    from server.config import POOLER_PROBLEM_VARIABLE

    if settings["POOLER_URL"]:
        return
    if settings["DATABASE_URL"]:
        problem = ("PGBOUNCER=true with DATABASE_URL needs POOLER_URL, a PgBouncer you run in front of it "
                   "(the lab starts its own only in front of the embedded PostgreSQL)")
    else:
        try:
            # Held by this master like the embedded server: the last holder stops it, else the reaper.
            os.environ["POOLER_URL"] = embedded_pooler(with_reaper=True, log=arbiter.log.warning).url
            return
        except embedded_pg.StartError as error:
            problem = str(error)
    os.environ[POOLER_PROBLEM_VARIABLE] = problem
    arbiter.log.warning("pool-lab: %s; until then %s answers postgres requests with 503 pooler_unavailable",
                        problem, arbiter.cfg.settings["proc_name"].get())


def pools_past_the_ceiling(workers, facts):
    """Why the workers' pools together may ask PostgreSQL for more connections than it accepts, or None.

    `facts` are /db's (server.facts.database_facts). Each worker has a pool of its own; NullPool has no limit to check.
    Through PgBouncer it is the pooler's pool that faces max_connections, and the workers' pools face max_client_conn.
    """
    pooler = facts.get("pooler")
    if pooler and "unavailable" not in pooler:
        return pooler_past_the_ceiling(workers, facts, pooler)
    if settings["POOL_CLASS"] == "null":
        return None
    pool_size, max_overflow = settings["POOL_SIZE"], settings["MAX_OVERFLOW"]
    most = workers * (pool_size + max_overflow)
    if most <= facts["accepts"]:
        return None
    return (f"{workers} workers x (pool_size {pool_size} + max_overflow {max_overflow}) = {most} connections at "
            f"most, more than PostgreSQL accepts: max_connections {facts['max_connections']} - reserved {facts['reserved']} "
            f"- open {facts['open_connections']} = {facts['accepts']}; a burst past {facts['accepts']} postgres "
            f"requests gets 503 too_many_connections")


def pooler_past_the_ceiling(workers, facts, pooler):
    """pools_past_the_ceiling through PgBouncer: its server pool against max_connections, the workers'
    pools against its max_client_conn."""
    from lab.waves import pooler_servers

    problems = []
    most, room = pooler_servers(facts, pooler)
    if most > room:
        problems.append(f"PgBouncer's pool (default_pool_size {pooler['default_pool_size']} + reserve_pool_size "
                        f"{pooler['reserve_pool_size']} = {most}) is more than PostgreSQL accepts: max_connections "
                        f"{facts['max_connections']} - reserved {facts['reserved']} - open {facts['open_connections']} "
                        f"+ the pooler's own {room - facts['accepts']} = {room}; PostgreSQL refuses its server logins "
                        f"past that (lower PGBOUNCER_DEFAULT_POOL_SIZE)")
    if settings["POOL_CLASS"] != "null":
        clients = workers * (settings["POOL_SIZE"] + settings["MAX_OVERFLOW"])
        if clients > pooler["max_client_conn"]:
            problems.append(f"{workers} workers x (pool_size {settings['POOL_SIZE']} + max_overflow "
                            f"{settings['MAX_OVERFLOW']}) = {clients} client connections at most, more than "
                            f"PgBouncer's max_client_conn {pooler['max_client_conn']}: past it a burst gets 503 "
                            f"pooler_refused")
    return "; ".join(problems) or None


def raise_open_files(arbiter, gevent_worker):
    """Every connection a gevent worker holds is a file: let each worker open as many as it serves.

    The soft limit (often 1024) goes up to the hard one, which only root can raise; workers
    inherit it. Past the hard limit a worker's accept fails (EMFILE) and Gunicorn logs it,
    so say beforehand which setting to lower.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Its clients' connections, its pool's, and some for its logs, listening socket and imports.
    needed = arbiter.cfg.worker_connections + settings["POOL_SIZE"] + settings["MAX_OVERFLOW"] + 100
    if gevent_worker and hard != resource.RLIM_INFINITY and needed > hard:
        arbiter.log.warning("pool-lab: worker_connections %d needs about %d open files per worker, more than the "
                            "hard limit of %d (ulimit -Hn): connections past it fail; lower WORKER_CONNECTIONS "
                            "or raise the limit", arbiter.cfg.worker_connections, needed, hard)


def post_worker_init(worker):
    # The port answers as soon as the master binds; this line says the worker has loaded the app.
    address = "http://%s:%s" % worker.sockets[0].getsockname()[:2]
    worker.log.info("pool-lab: %s ready at %s", worker.cfg.settings["proc_name"].get(), address)


def psycopg_would_block_gevent():
    """Why psycopg 3 would not yield to gevent in a worker forked from this master, or None.

    psycopg/waiting.py picks its wait function once, at import: the cooperative ones only when
    _is_select_patched() finds gevent's select patched, and only if PSYCOPG_WAIT_FUNC does not
    choose one first (see server.worker.psycopg_waits_through_gevent). Reads psycopg's version
    from its metadata: importing psycopg here would be exactly the mistake.
    """
    from importlib.metadata import version

    installed = version("psycopg")
    # "Gevent support" (psycopg's docs/advanced/async.rst): broken in 3.1.4, official from 3.1.14.
    if tuple(int(part) for part in installed.split(".")[:3] if part.isdigit()) < (3, 1, 14):
        return f"psycopg {installed} predates 3.1.14, the first release that supports gevent"
    if os.environ.get("PSYCOPG_WAIT_FUNC") == "wait_c":
        return "PSYCOPG_WAIT_FUNC=wait_c waits in C, never through gevent"
    if "psycopg" in sys.modules:
        # Workers inherit the module as it is: wait_c, chosen before their monkey patching.
        return "psycopg was imported in the master, before the worker's monkey patching (preload_app?)"
    return None


def post_fork(arbiter, worker):
    # Runs before the gevent worker's monkey patching: nothing here may import psycopg.
    from server.worker import describe

    # Read by the app's /pool, so it reports the worker it really runs in.
    describe(arbiter.cfg, worker)
    if settings["PSYCOGREEN"]:
        # psycopg2 then waits for the database through gevent, so a query yields to other greenlets.
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
