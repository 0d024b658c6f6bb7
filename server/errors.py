"""Every error as JSON that names its cause; the worker keeps serving."""

from flask import current_app, jsonify
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from contract import (BAD_PARAMETER, CLIENT_CLOSED_REQUEST, DATABASE_UNAVAILABLE, POOL_TIMEOUT, TOO_MANY_CONNECTIONS,
                      BadParameter)

from .db import db
from .views import ClientGone


def error_response(status, error, message, **headers):
    response = jsonify(error=error, message=message, status=status)
    response.status_code = status
    response.headers.update(headers)
    return response


def bad_parameter(exc):
    return error_response(400, BAD_PARAMETER, str(exc))


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
    current_app.logger.warning(f"499 {CLIENT_CLOSED_REQUEST}: the client left; its query was cancelled")
    return error_response(499, CLIENT_CLOSED_REQUEST, "the client closed its connection; the query was cancelled")


def pool_timeout(exc):
    pool = db.engine.pool
    limit = pool.size() + current_app.config["MAX_OVERFLOW"]
    message = (f"no database connection free within POOL_TIMEOUT={pool.timeout():g}s: "
               f"all {limit} connections (pool_size {pool.size()} + max_overflow "
               f"{limit - pool.size()}) are in use")
    current_app.logger.warning("503 %s: %s", POOL_TIMEOUT, message)
    return error_response(503, POOL_TIMEOUT, message, **{"Retry-After": str(max(1, round(pool.timeout())))})


def database_cause(exc):
    """The driver's first line: it names the cause (refused, terminated) without the SQL or the URL."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__


# PostgreSQL's words when every connection slot is taken (SQLSTATE 53300, which psycopg2 does
# not set on an error raised while connecting).
REFUSED_WORDS = ("too many clients already", "remaining connection slots are reserved")


def database_error(exc):
    cause = database_cause(exc)
    if any(words in cause for words in REFUSED_WORDS):
        message = f"PostgreSQL refused a new connection: every one of its max_connections slots is taken ({cause})"
        current_app.logger.warning("503 %s: %s", TOO_MANY_CONNECTIONS, message)
        return error_response(503, TOO_MANY_CONNECTIONS, message, **{"Retry-After": "1"})
    current_app.logger.warning("503 %s: %s", DATABASE_UNAVAILABLE, cause)
    return error_response(503, DATABASE_UNAVAILABLE, f"the database failed: {cause}",
                          **{"Retry-After": "1"})


def init_app(app):
    app.register_error_handler(BadParameter, bad_parameter)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(PoolTimeoutError, pool_timeout)
    app.register_error_handler(DBAPIError, database_error)
    app.register_error_handler(ClientGone, client_gone)
