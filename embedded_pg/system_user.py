"""The system user that runs PostgreSQL when the lab runs as root, created before pgserver would.

As root, pgserver also opens every parent directory of the data directory, and of its own
binaries, to group and others (chmod g+rx,o+rx) so that this user can reach them: a checkout
under /root makes /root readable by everyone.
"""

import os
import subprocess

from .failures import StartError

# PostgreSQL refuses to run as root, so pgserver, as root, runs it as this user, made with useradd.
SYSTEM_USER = "pgserver"


def command_user():
    """Whom pgserver's commands on a data directory run as: its system user as root, else this process's user."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def ensure(log):
    """Create the system user, repairing a half-created one; say so through `log`, or raise StartError.

    pgserver runs useradd before it takes its lock, so the lab does it first, under its own start lock.
    """
    import grp
    import pwd

    try:
        pwd.getpwnam(SYSTEM_USER)
        return
    except KeyError:
        pass
    command = ["useradd", "-s", "/bin/bash", SYSTEM_USER]  # what pgserver runs
    try:
        grp.getgrnam(SYSTEM_USER)
    except KeyError:
        pass
    else:
        # useradd writes the group first: killed before it wrote the user, it leaves the group,
        # and every later plain useradd refuses to reuse it (status 9).
        command[-1:-1] = ["-g", SYSTEM_USER]
        log(f"group {SYSTEM_USER} exists without its user (a useradd was interrupted): running {' '.join(command)}")
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:
        failure = error.strerror
    else:
        if result.returncode == 0:
            return
        failure = "; ".join(line.strip() for line in result.stderr.splitlines() if line.strip()) \
            or f"exit status {result.returncode}"
    try:
        pwd.getpwnam(SYSTEM_USER)
        return  # made meanwhile by someone outside the lab
    except KeyError:
        raise StartError(f"could not create the system user {SYSTEM_USER}, which runs PostgreSQL when the lab "
                         f"runs as root: `{' '.join(command)}` failed: {failure}") from None
