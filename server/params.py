"""The one check of a number of seconds, for ?seconds=, the settings and the lab's options."""

import argparse
import math
import re

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


def seconds_option(raw):
    """An argparse type for --sleep-seconds: empty (the server's or profile's default) or seconds."""
    raw = str(raw).strip()
    if raw:
        parse_seconds(raw, "--sleep-seconds")
    return raw
