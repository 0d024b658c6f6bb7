"""Every error as JSON that names its cause; the worker keeps serving.

Imports nothing of the app: db and views import from here (database_cause, ClientGone).
"""

from flask import current_app, g, jsonify
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from contract import (BAD_PARAMETER, CLIENT_CLOSED_REQUEST, DATABASE_TIMEOUT, DATABASE_UNAVAILABLE, ERRORS,
                      POOL_TIMEOUT, POOLER_QUERY_WAIT_TIMEOUT, POOLER_REFUSED, POOLER_UNAVAILABLE, TOO_MANY_CONNECTIONS,
                      BadParameter)

from .bounds import DatabaseTimeout
from .pooler import pooler_failure


class ClientGone(Exception):
    """The client closed its connection while its query ran; the query was cancelled."""


class PoolerUnavailable(Exception):
    """PGBOUNCER=true, and the master could not give the app a pooler; the message says why."""


def database_cause(exc):
    """The driver's first line: it names the cause (refused, terminated) without the SQL or the URL."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__


def error_response(status, error, message, **headers):
    response = jsonify(error=error, message=message, status=status)
    response.status_code = status
    response.headers.update(headers)
    return response


def contract_error(error, message, logged=None, **headers):
    """One of the contract's errors, with the status the contract gives it; `logged`, when given,
    goes to the server's log as "STATUS error: logged"."""
    status, _meaning = ERRORS[error]
    if logged is not None:
        current_app.logger.warning("%d %s: %s", status, error, logged)
    return error_response(status, error, message, **headers)


def bad_parameter(exc):
    return contract_error(BAD_PARAMETER, str(exc))


def http_error(exc):
    message = exc.description
    original = getattr(exc, "original_exception", None)
    if original is not None:
        # An unhandled exception: name its type, which says more than "Internal Server Error".
        message = f"{type(original).__name__} in the server; see the server log"
    # A 405 says which methods would do, as HTTP asks.
    allow = {name: value for name, value in exc.get_headers() if name == "Allow"}
    return error_response(exc.code, exc.name.lower().replace(" ", "_"), message, **allow)


def client_gone(exc):
    # Nobody reads this answer; the log is what tells (499, as nginx calls it).
    return contract_error(CLIENT_CLOSED_REQUEST, "the client closed its connection; the query was cancelled",
                          logged="the client left; its query was cancelled")


def pool_timeout(exc):
    # The pool that timed out was built from these settings (db.init_app); NullPool never times out.
    config = current_app.config
    size, overflow, timeout = config["POOL_SIZE"], config["MAX_OVERFLOW"], config["POOL_TIMEOUT"]
    message = (f"no database connection free within POOL_TIMEOUT={timeout:g}s: "
               f"all {size + overflow} connections (pool_size {size} + max_overflow {overflow}) are in use")
    return contract_error(POOL_TIMEOUT, message, logged=message, **{"Retry-After": str(max(1, round(timeout)))})


# PostgreSQL's words when every connection slot is taken (SQLSTATE 53300, which psycopg2 does
# not set on an error raised while connecting).
SLOTS_TAKEN = ("too many clients already", "remaining connection slots are reserved")


# What each of PgBouncer's failures means, said before the driver's own words.
POOLER_MESSAGES = {
    POOLER_REFUSED: "PgBouncer refused a new client connection: its max_client_conn are all taken",
    POOLER_QUERY_WAIT_TIMEOUT: "PgBouncer found no server connection free within its query_wait_timeout",
    POOLER_UNAVAILABLE: "PgBouncer could not be reached, or closed the connection",
}


def pooler_unavailable(exc):
    return contract_error(POOLER_UNAVAILABLE, str(exc), logged=str(exc), **{"Retry-After": "1"})


# Set on the errors of the engine that connects through PgBouncer (mark_through_pooler): only those
# may be the pooler's; /db's facts, straight to the database, fail with the database's causes.
THROUGH_POOLER = "pool_lab_through_pooler"


def mark_through_pooler(context):
    """The handle_error listener of the engine that connects through PgBouncer (db.init_app)."""
    if context.sqlalchemy_exception is not None:
        setattr(context.sqlalchemy_exception, THROUGH_POOLER, True)


def database_error(exc):
    cause = database_cause(exc)
    config = current_app.config
    if getattr(exc, THROUGH_POOLER, False):
        # views.postgres_sleep records when its query left; psycopg2 reports a query_wait_timeout
        # as a closed connection only, which the wait tells apart.
        failure = pooler_failure(cause, config["POOLER_URL"], g.get("query_started"))
        if failure:
            message = f"{POOLER_MESSAGES[failure]} ({cause})"
            return contract_error(failure, message, logged=message, **{"Retry-After": "1"})
    if any(words in cause for words in SLOTS_TAKEN):
        message = f"PostgreSQL refused a new connection: every one of its max_connections slots is taken ({cause})"
        return contract_error(TOO_MANY_CONNECTIONS, message, logged=message, **{"Retry-After": "1"})
    return contract_error(DATABASE_UNAVAILABLE, f"the database failed: {cause}", logged=cause,
                          **{"Retry-After": "1"})


def database_timeout(exc):
    message = f"{exc} (waited {exc.waited():.1f} s)"
    return contract_error(DATABASE_TIMEOUT, message, logged=message)


def init_app(app):
    app.register_error_handler(BadParameter, bad_parameter)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(PoolTimeoutError, pool_timeout)
    app.register_error_handler(DBAPIError, database_error)
    app.register_error_handler(ClientGone, client_gone)
    app.register_error_handler(DatabaseTimeout, database_timeout)
    app.register_error_handler(PoolerUnavailable, pooler_unavailable)

