"""Settings read from the environment, checked once, with one clear line per mistake."""

import os

from .params import BadParameter, parse_seconds


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


def _flag(environ, name):
    raw = environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def psycopg2_url(raw):
    """Parse a PostgreSQL URL and pin it to psycopg2, the driver psycogreen patches.

    SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which the lab does not use.
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
        return url.set(drivername="postgresql+psycopg2")
    if url.drivername != "postgresql+psycopg2":
        raise ConfigError(f"DATABASE_URL must be a postgresql:// URL for psycopg2, got {url.drivername}://")
    return url


POOL_CLASSES = ("queue", "fair", "null")


def _choice(environ, name, choices):
    raw = environ.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _database_url(environ):
    raw = environ.get("DATABASE_URL", "").strip()
    if not raw:
        return None
    psycopg2_url(raw)
    return raw


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
    return {
        "DATABASE_URL": _database_url(environ),
        "SLEEP_SECONDS": sleep,
        "MAX_SLEEP_SECONDS": max_sleep,
        "POOL_SIZE": _integer(environ, "POOL_SIZE", 5, minimum=1),
        "MAX_OVERFLOW": _integer(environ, "MAX_OVERFLOW", 10, minimum=0),
        # Whole seconds: Flask-SQLAlchemy builds the engine with engine_from_config, which casts
        # pool_timeout to int, so 0.5 would silently become 0 (fail at once).
        "POOL_TIMEOUT": _integer(environ, "POOL_TIMEOUT", 30, minimum=1),
        "PSYCOGREEN": _flag(environ, "PSYCOGREEN"),
        # queue: SQLAlchemy's stock QueuePool (the original's behaviour); fair: server.pool.FairQueuePool;
        # null: SQLAlchemy's NullPool, a new connection per request.
        "POOL_CLASS": _choice(environ, "POOL_CLASS", POOL_CLASSES),
        "PG_MAX_CONNECTIONS": pg_max_connections(environ),
    }
