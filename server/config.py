"""Settings read from the environment, checked once, with one clear line per mistake."""

import os

from contract import BadParameter, parse_seconds


class ConfigError(ValueError):
    """A setting in the environment that the lab cannot start with."""


def _integer(environ, name, default, minimum):
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _seconds(environ, name, default):
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse_seconds(raw, name)
    except BadParameter as error:
        raise ConfigError(str(error)) from None


# The most DB_GRACE_SECONDS may be: a database silent past the request's seconds + 10 s is not coming back soon.
MAX_DB_GRACE_SECONDS = 10.0


def _grace(environ, name="DB_GRACE_SECONDS", default=3.0):
    grace = _seconds(environ, name, default)
    # Above 0: a bound of exactly `seconds` would time out pg_sleep(seconds) itself, by a hair, now and then.
    if not 0 < grace <= MAX_DB_GRACE_SECONDS:
        raise ConfigError(f"{name} must be more than 0 and at most {MAX_DB_GRACE_SECONDS:g}, "
                          f"got {environ[name].strip()!r}")
    return grace


def _flag(environ, name):
    raw = environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


# The DBAPI drivers the lab runs on, by SQLAlchemy's name: psycopg2 (the original's, which psycogreen
# patches) and psycopg (psycopg 3).
DRIVERS = ("psycopg2", "psycopg")


def sqlalchemy_url(raw, driver):
    """Parse a PostgreSQL URL and pin it to `driver`, so DRIVER alone decides which one runs.

    SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3: left to it, the driver would depend
    on the URL's spelling.
    """
    # Imported here: Gunicorn's master loads this module and need not carry SQLAlchemy.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        # The raw value may hold a password: never echo it.
        raise ConfigError("DATABASE_URL is not a valid database URL "
                          "(expected postgresql://user:password@host:port/dbname)") from None
    if url.drivername in ("postgres", "postgresql"):
        return url.set(drivername=f"postgresql+{driver}")
    if url.drivername != f"postgresql+{driver}":
        raise ConfigError(f"DATABASE_URL must be a postgresql:// URL for {driver} (DRIVER), "
                          f"got {url.drivername}://")
    return url


POOL_CLASSES = ("queue", "fair", "null")


def _choice(environ, name, choices):
    raw = environ.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _database_url(environ, driver, name="DATABASE_URL"):
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        sqlalchemy_url(raw, driver)
    except ConfigError as error:
        raise ConfigError(str(error).replace("DATABASE_URL", name)) from None
    return raw


# Set by gunicorn.conf.py for its workers when PGBOUNCER=true and no pooler can be had: why, in one
# line, which the postgres endpoint answers with (503 pooler_unavailable). Not a setting.
POOLER_PROBLEM_VARIABLE = "POOL_LAB_POOLER_PROBLEM"


# The embedded PostgreSQL's settings, for those that start it (gunicorn.conf.py, the lab): the app never does.
def embedded_pgdata(environ=None):
    """The embedded PostgreSQL's data directory as EMBEDDED_PGDATA gives it; None when unset (the starter's
    default: lab.DEFAULT_PGDATA, var/pgdata in the checkout)."""
    environ = os.environ if environ is None else environ
    return environ.get("EMBEDDED_PGDATA", "").strip() or None


def pg_max_connections(environ=None):
    """The embedded PostgreSQL's max_connections; None for PostgreSQL's own default (100)."""
    # At least 4: PostgreSQL keeps 3 slots for superusers and needs one more to start.
    return _integer(os.environ if environ is None else environ, "PG_MAX_CONNECTIONS", None, minimum=4)


def load(environ=None):
    """Return the lab's settings as Flask config keys, or raise ConfigError."""
    environ = os.environ if environ is None else environ
    max_sleep = _seconds(environ, "MAX_SLEEP_SECONDS", 60.0)
    sleep = _seconds(environ, "SLEEP_SECONDS", 5.0)
    if sleep > max_sleep:
        raise ConfigError(f"SLEEP_SECONDS ({sleep:g}) must not exceed MAX_SLEEP_SECONDS ({max_sleep:g})")
    driver = _choice(environ, "DRIVER", DRIVERS)
    psycogreen = _flag(environ, "PSYCOGREEN")
    if psycogreen and driver != "psycopg2":
        # psycogreen sets psycopg2's wait callback; psycopg 3 never calls it, so the flag would do nothing.
        raise ConfigError(f"PSYCOGREEN=true patches psycopg2 only, not DRIVER={driver} "
                          f"(psycopg 3 waits through gevent by itself)")
    return {
        "DATABASE_URL": _database_url(environ, driver),
        "DRIVER": driver,
        "SLEEP_SECONDS": sleep,
        "MAX_SLEEP_SECONDS": max_sleep,
        "POOL_SIZE": _integer(environ, "POOL_SIZE", 5, minimum=1),
        "MAX_OVERFLOW": _integer(environ, "MAX_OVERFLOW", 10, minimum=0),
        # Whole seconds: Flask-SQLAlchemy builds the engine with engine_from_config, which casts
        # pool_timeout to int, so 0.5 would silently become 0 (fail at once).
        "POOL_TIMEOUT": _integer(environ, "POOL_TIMEOUT", 30, minimum=1),
        # How much longer than its `seconds` a request waits for the database to answer a connect, a ping
        # or a query before 504 database_timeout (server/bounds.py).
        "DB_GRACE_SECONDS": _grace(environ),
        "PSYCOGREEN": psycogreen,
        # The gthread worker's threads (the threads mode); gunicorn.conf.py hands it to Gunicorn.
        "THREADS": _integer(environ, "THREADS", 8, minimum=1),
        # Gunicorn's own variable: the worker processes of every mode; each holds a pool of its own.
        "WEB_CONCURRENCY": _integer(environ, "WEB_CONCURRENCY", 1, minimum=1),
        # Connections a gevent worker serves at once (Gunicorn's worker_connections): past it, the rest wait in the listen queue.
        "WORKER_CONNECTIONS": _integer(environ, "WORKER_CONNECTIONS", 1000, minimum=1),
        # queue: SQLAlchemy's stock QueuePool (the original's behaviour); fair: server.pool.FairQueuePool;
        # null: SQLAlchemy's NullPool, a new connection per request.
        "POOL_CLASS": _choice(environ, "POOL_CLASS", POOL_CLASSES),
        "PG_MAX_CONNECTIONS": pg_max_connections(environ),
        **pooler_settings(environ, driver),
        "EMBEDDED_PGDATA": embedded_pgdata(environ),
    }


def pooler_settings(environ, driver):
    """PGBOUNCER and the pooler's settings: the URL the app connects through, and what the lab
    starts its own PgBouncer with (docs/pgbouncer.md)."""
    pooler_url = _database_url(environ, driver, "POOLER_URL")
    if pooler_url and not environ.get("DATABASE_URL", "").strip():
        raise ConfigError("POOLER_URL is a PgBouncer you run yourself in front of DATABASE_URL: set DATABASE_URL "
                          "too (without either, the lab starts its own PgBouncer in front of the embedded "
                          "PostgreSQL)")
    return {
        # Connect through PgBouncer (the bouncer mode): at POOLER_URL, else the lab's own.
        "PGBOUNCER": _flag(environ, "PGBOUNCER"),
        "POOLER_URL": pooler_url,
        "POOLER_PROBLEM": environ.get(POOLER_PROBLEM_VARIABLE, "").strip() or None,
        # The lab's own PgBouncer. Its server connections per database and user: what faces max_connections.
        "PGBOUNCER_DEFAULT_POOL_SIZE": _integer(environ, "PGBOUNCER_DEFAULT_POOL_SIZE", 20, minimum=1),
        # Client connections it accepts; PgBouncer's own 100 would refuse the 150-user profile.
        "PGBOUNCER_MAX_CLIENT_CONN": _integer(environ, "PGBOUNCER_MAX_CLIENT_CONN", 1000, minimum=1),
        # Extra server connections for clients that waited reserve_pool_timeout (PgBouncer's 5 s); 0: none.
        "PGBOUNCER_RESERVE_POOL_SIZE": _integer(environ, "PGBOUNCER_RESERVE_POOL_SIZE", 0, minimum=0),
        # How long a client may wait for a server connection before PgBouncer drops it (PgBouncer's 120 s).
        "PGBOUNCER_QUERY_WAIT_TIMEOUT": _seconds(environ, "PGBOUNCER_QUERY_WAIT_TIMEOUT", 120.0),
    }


def embedded_pooler(settings):
    """The lab's own PgBouncer's settings from load()'s, as embedded_pg.pgbouncer.Settings takes them."""
    return {"default_pool_size": settings["PGBOUNCER_DEFAULT_POOL_SIZE"],
            "max_client_conn": settings["PGBOUNCER_MAX_CLIENT_CONN"],
            "reserve_pool_size": settings["PGBOUNCER_RESERVE_POOL_SIZE"],
            "query_wait_timeout": settings["PGBOUNCER_QUERY_WAIT_TIMEOUT"]}
