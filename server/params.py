"""Checking the ?seconds= query parameter before anything sleeps or touches the database."""

import math

# Longer than any sensible number ("59.999999999"), short enough to refuse junk cheaply.
MAX_PARAMETER_LENGTH = 32


class BadParameter(ValueError):
    """A query parameter the lab refuses; the message names the problem."""


def sleep_seconds(values, default, maximum):
    """Return the seconds to sleep from the list of ?seconds= values of one request."""
    if not values:
        return default
    if len(values) > 1:
        raise BadParameter(f"seconds was given {len(values)} times; give it once")
    raw = values[0].strip()
    if not raw:
        raise BadParameter("seconds is empty; give a number such as 0.5")
    if len(raw) > MAX_PARAMETER_LENGTH:
        raise BadParameter(f"seconds is {len(raw)} characters long; at most {MAX_PARAMETER_LENGTH} are accepted")
    try:
        seconds = float(raw)
    except ValueError:
        raise BadParameter(f"seconds must be a number, got {raw!r}") from None
    if not math.isfinite(seconds):
        raise BadParameter(f"seconds must be a finite number, got {raw!r}")
    if not 0 <= seconds <= maximum:
        raise BadParameter(f"seconds must be between 0 and {maximum:g} (MAX_SLEEP_SECONDS), got {raw!r}")
    return seconds
