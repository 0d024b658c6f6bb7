"""The mechanism of uneven waves, in one process: stock QueuePool against FairQueuePool when a whole
wave of connections comes back at once.

On a real green worker a wave's queries end together and their greenlets return their
connections one after another before any woken request runs; whether they do depends on how
the machine schedules the backends, so a real burst only sometimes shows it (docs/uneven-waves.md
measures both). Here the returns are made at once for certain: under the pool's own locks, which
a woken request needs before it can take a connection. The connections are SQLite's: real DBAPI
connections the pools open and close, with no server to wait for.
"""

import contextlib
import sqlite3
import threading
import time

import pytest
from sqlalchemy import exc
from sqlalchemy.pool import QueuePool

from server.pool import FairQueuePool

POOL_SIZE, MAX_OVERFLOW = 2, 3
LIMIT = POOL_SIZE + MAX_OVERFLOW
WAITING = 3 * LIMIT
# The pool's timeout: a request still waiting this long gives up (or, in stock QueuePool, takes a freed slot).
TIMEOUT = 2


def waiting(pool):
    """How many requests wait for a connection (the condition's waiters are CPython's own list)."""
    if isinstance(pool, FairQueuePool):
        return pool._waiting
    return len(pool._pool.not_empty._waiters)


@contextlib.contextmanager
def returns_at_once(pool):
    """Hold the locks a woken request needs: every return made inside comes before any of them runs."""
    with contextlib.ExitStack() as held:
        if isinstance(pool, FairQueuePool):
            held.enter_context(pool._fair)
        held.enter_context(pool._pool.mutex)
        yield


@pytest.mark.parametrize("pool_class, next_wave", [(QueuePool, POOL_SIZE), (FairQueuePool, LIMIT)])
def test_a_wave_returned_at_once_feeds_the_next_wave(pool_class, next_wave):
    pool = pool_class(lambda: sqlite3.connect(":memory:", check_same_thread=False),
                      pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, timeout=TIMEOUT)
    first_wave = [pool.connect() for _ in range(LIMIT)]
    served = []

    def request():
        try:
            served.append(pool.connect())  # held to the end, as a request in its query would be
        except exc.TimeoutError:
            pass

    requests = [threading.Thread(target=request) for _ in range(WAITING)]
    for thread in requests:
        thread.start()
    deadline = time.monotonic() + 5
    while waiting(pool) < WAITING:
        assert time.monotonic() < deadline, f"{waiting(pool)} of {WAITING} requests waiting"
        time.sleep(0.01)

    with returns_at_once(pool):
        for connection in first_wave:
            connection.close()
    time.sleep(0.3)  # far more than handing over a connection takes, far less than the pool's timeout
    # Stock: the queue takes back pool_size and closes the overflow, whose freed slots wake no one.
    assert len(served) == next_wave
    for thread in requests:
        thread.join()
    # The freed slots are used in the end, by stock QueuePool only once a waiting request's wait ran out:
    # its next wave starts a pool timeout late. The rest of the requests timed out.
    assert len(served) == LIMIT
    for connection in served:
        connection.close()
    assert pool.checkedout() == 0
