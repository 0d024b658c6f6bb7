"""What the lab's server and its load generator agree on: the one definition both sides import.

The server (server/) answers by it and the lab (lab/) reads answers by it: the endpoints and
their paths, the fields of a sleep's answer, the error codes and what each means, and the one
check of a number of seconds (for ?seconds=, the settings and the lab's options).
"""

import argparse
import json
import math
import re

# The sleep endpoints, in a burst's order: python first, as in the original.
ENDPOINTS = ("python", "postgres")
# The server's facts: its pool and worker (what a prediction is made from), and its database's ceiling.
POOL_PATH = "/pool"
DB_PATH = "/db"


def sleep_path(endpoint):
    """'python' -> '/sleep/python/': where an endpoint is served, and the name Locust reports it by."""
    return f"/sleep/{endpoint}/"


def endpoint_of(request_name):
    """'/sleep/postgres/' -> 'postgres': the lab's name for what a request exercises."""
    return request_name.strip("/").rsplit("/", 1)[-1]


# The fields of a sleep's answer that time it: wall-clock (Unix) times and durations in seconds,
# comparable with the load generator's clock on the same machine; `pid` names the worker that served it.
# pool_wait, connect_seconds and query_seconds come from the postgres endpoint only.
TIMING_FIELDS = ("started_at", "finished_at", "pool_wait", "connect_seconds", "query_seconds", "pid")

# The server's error codes (the `error` field of every JSON error), with their status and meaning.
BAD_PARAMETER = "bad_parameter"
CLIENT_CLOSED_REQUEST = "client_closed_request"
POOL_TIMEOUT = "pool_timeout"
TOO_MANY_CONNECTIONS = "too_many_connections"
DATABASE_UNAVAILABLE = "database_unavailable"
DATABASE_TIMEOUT = "database_timeout"
# Through PgBouncer (the bouncer mode), named by PgBouncer's own words.
POOLER_REFUSED = "pooler_refused"
POOLER_QUERY_WAIT_TIMEOUT = "pooler_query_wait_timeout"
POOLER_UNAVAILABLE = "pooler_unavailable"
ERRORS = {
    BAD_PARAMETER: (400, "a ?seconds= the server refuses, or a parameter it does not take"),
    CLIENT_CLOSED_REQUEST: (499, "the client left while its query ran; the query was cancelled"),
    POOL_TIMEOUT: (503, "no pooled connection came free within POOL_TIMEOUT"),
    TOO_MANY_CONNECTIONS: (503, "PostgreSQL refused a new connection: max_connections reached"),
    DATABASE_UNAVAILABLE: (503, "the database failed or could not be reached"),
    DATABASE_TIMEOUT: (504, "the database did not answer a connect or a query within seconds + DB_GRACE_SECONDS"),
    POOLER_REFUSED: (503, "PgBouncer refused a new client connection: max_client_conn reached"),
    POOLER_QUERY_WAIT_TIMEOUT: (503, "no PgBouncer server connection came free within query_wait_timeout"),
    POOLER_UNAVAILABLE: (503, "PgBouncer is not installed, not running, or could not be reached"),
}
# The causes the lab counts failed requests by: the server's refusal of a parameter, its database
# errors, a connection the server closed or reset before it answered (its worker died), no
# connection at all, and anything else.
CONNECTION_LOST = "connection_lost"
CONNECTION_ERROR = "connection_error"
OTHER = "other"
FAILURE_CAUSES = (BAD_PARAMETER, POOL_TIMEOUT, TOO_MANY_CONNECTIONS, DATABASE_UNAVAILABLE, DATABASE_TIMEOUT,
                  POOLER_REFUSED, POOLER_QUERY_WAIT_TIMEOUT, POOLER_UNAVAILABLE, CONNECTION_LOST, CONNECTION_ERROR, OTHER)


def failure_message(status_code, body, lost=False):
    """What a failed answer says, led by the server's own error code when it sent one; `lost`: the
    connection was closed or reset before any answer."""
    if not status_code and lost:
        return f"{CONNECTION_LOST}: the server closed the connection before it answered"
    if not status_code:
        return f"{CONNECTION_ERROR}: no answer from the server"
    try:
        error = json.loads(body)
        return f"{error['error']}: {error['message']}"
    except (TypeError, ValueError, KeyError):
        return f"HTTP {status_code}"


def failure_cause(status_code, message):
    """The cause of a failed request (one of FAILURE_CAUSES) from its failure_message; None if it succeeded."""
    if not message:
        return None
    code = message.split(":", 1)[0]
    if code in FAILURE_CAUSES:
        return code
    if int(status_code or 0) == 0:
        return CONNECTION_ERROR
    return OTHER


# Longer than any sensible number ("59.999999999"), short enough to refuse junk cheaply.
MAX_PARAMETER_LENGTH = 32
# What a person types for seconds. float() alone would also take "1_0" (10) and other scripts' digits.
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


class BadParameter(ValueError, argparse.ArgumentTypeError):
    """A number the lab refuses; the message names the problem (argparse shows it as it is)."""


def parse_seconds(raw, name, maximum=math.inf, maximum_name=None):
    """Return `raw` as seconds: a finite number from 0 to `maximum`, or raise BadParameter naming `name`."""
    raw = raw.strip()
    if not raw:
        raise BadParameter(f"{name} is empty; give a number such as 0.5")
    if len(raw) > MAX_PARAMETER_LENGTH:
        raise BadParameter(f"{name} is {len(raw)} characters long; at most {MAX_PARAMETER_LENGTH} are accepted")
    try:
        seconds = float(raw)
    except ValueError:
        raise BadParameter(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(seconds):
        raise BadParameter(f"{name} must be a finite number, got {raw!r}")
    if not PLAIN_NUMBER.fullmatch(raw):
        raise BadParameter(f"{name} must be a number, got {raw!r}")
    if not 0 <= seconds <= maximum:
        bound = f"between 0 and {maximum:g} ({maximum_name})" if maximum_name else "at least 0"
        raise BadParameter(f"{name} must be {bound}, got {raw!r}")
    return seconds + 0.0  # -0 becomes 0.0: nobody means a negative zero


def sleep_seconds(values, default, maximum):
    """Return the seconds to sleep from the list of ?seconds= values of one request."""
    if not values:
        return default
    if len(values) > 1:
        raise BadParameter(f"seconds was given {len(values)} times; give it once")
    return parse_seconds(values[0], "seconds", maximum, "MAX_SLEEP_SECONDS")


class SecondsOption:
    """An argparse type for an option of seconds that may be left empty (a default applies):
    returns the text as given, checked; its errors name the option."""

    def __init__(self, name):
        self.name = name
        self.__name__ = name  # what argparse calls the type in its own messages

    def __call__(self, raw):
        raw = str(raw).strip()
        if raw:
            parse_seconds(raw, self.name)
        return raw
