"""The lab's start lock: one start of an embedded server at a time, for all of a user's data directories.

The masters of `honcho start` start at the same moment, and pgserver locks only part of
its start: as root it creates its system user before taking its lock, and it creates the data
directory outside it. So the lab runs the whole start under one lock of its own, in pgserver's
runtime directory. Not pgserver's own .lockfile: fcntl locks belong to a process, so pgserver
taking and releasing that file inside the start would release it for the rest of the start.
One file for all of a user's data directories, because what root does first, useradd, is
machine-wide.
"""

from contextlib import contextmanager

from .failures import StartError
from .postgres import runtime_path

START_LOCK_FILE = "pool-lab-start.lock"
# Far longer than an honest start, which takes seconds even with initdb.
START_LOCK_TIMEOUT = 300


def _start_lock():
    import fasteners

    path = runtime_path() / START_LOCK_FILE
    return path, fasteners.InterProcessLock(path)


@contextmanager
def held():
    """Hold the start lock for the body, or raise StartError when it cannot be had."""
    path, lock = _start_lock()
    try:
        locked = lock.acquire(timeout=START_LOCK_TIMEOUT)
    except OSError as error:
        raise StartError(f"cannot lock {path}: {error.strerror}") from None
    if not locked:
        raise StartError(f"waited {START_LOCK_TIMEOUT} s for another start of the embedded PostgreSQL to finish; "
                         f"`fuser -v {path}` names it")
    try:
        yield
    finally:
        lock.release()


def wait_for_starts():
    """Return once no start holds the lock."""
    _, lock = _start_lock()
    lock.acquire()
    lock.release()
