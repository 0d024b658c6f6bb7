"""`python3 -m server.gunicorn_command ARGS`: Gunicorn, once the lab's settings are known to be good
and the mode's address is free.

Gunicorn reads WEB_CONCURRENCY with a bare int() while it is being imported, before it reads
gunicorn.conf.py: a value such as `abc` would end in its traceback instead of the lab's one line.
A taken address Gunicorn retries for 5 s, a `Connection in use` line every half second, while
gunicorn.conf.py's on_starting has already started the database: the lab says it once, first.
"""

import errno
import os
import socket
import sys

from server.config import ConfigError, load


def option(argv, short, long):
    """The value of a Gunicorn option in `argv` (`-b X`, `--bind X` or `--bind=X`), or None."""
    for index, arg in enumerate(argv):
        if arg in (short, long) and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(f"{long}="):
            return arg.split("=", 1)[1]
    return None


def address_taken(address):
    """Why a host:port address cannot be bound, or None when it is free (bound as Gunicorn binds it)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return None  # a Unix socket or a form Gunicorn itself will judge
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
        except OSError as error:
            return error if error.errno == errno.EADDRINUSE else None
    return None


def main():
    try:
        settings = load()
    except ConfigError as error:
        sys.exit(f"pool-lab: {error}")
    mode, address = option(sys.argv, "-n", "--name"), option(sys.argv, "-b", "--bind")
    if address and address_taken(address):
        sys.exit(f"pool-lab: {mode or 'gunicorn'}: {address} is taken (by another honcho start, or another "
                 f"program); stop it, or move this mode with {(mode or 'the').upper()}_PORT=...")
    # The checked value: Gunicorn's int() would fail on a blank one, which the lab reads as unset.
    os.environ["WEB_CONCURRENCY"] = str(settings["WEB_CONCURRENCY"])
    from gunicorn.app.wsgiapp import run

    sys.exit(run())


if __name__ == "__main__":
    main()
