"""FairQueuePool: a QueuePool whose waves stay full past the first.

Why stock QueuePool's later waves shrink (sqlalchemy/pool/impl.py, QueuePool):
a request that finds no idle connection and no free overflow slot blocks in
``self._pool.get(wait, timeout)``, and only a ``put`` into that queue wakes it.
``_do_return_conn`` puts a returned connection back only while the queue holds
fewer than pool_size; when it is full it closes the connection and calls
``_dec_overflow()``. When a whole wave of pool_size + max_overflow returns at
once, the queue fills with pool_size, the overflow connections are closed, and
their freed slots wake no one: the next wave holds about pool_size, not the
full limit.

This pool keeps its own count of waiting requests. A connection returned while
requests wait is handed to one of them instead of being queued or closed; with
nobody waiting it behaves exactly like QueuePool, so idle overflow connections
are still closed and the pool shrinks back to pool_size. No connection is ever
created beyond pool_size + max_overflow, and the pool timeout still applies.
"""

import collections
import threading
import time

from sqlalchemy import exc
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import queue as sqla_queue


class FairQueuePool(QueuePool):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Created with the pool, so after gevent's monkey patching in a worker.
        self._fair = threading.Condition(threading.RLock())
        self._waiting = 0
        self._handed_over = collections.deque()

    def _do_return_conn(self, record):
        with self._fair:
            if len(self._handed_over) < self._waiting:
                self._handed_over.append(record)
                self._fair.notify()
                return
            # Under the same lock: a request that starts waiting now sees this connection.
            super()._do_return_conn(record)

    def _do_get(self):
        if self._max_overflow == -1:
            # Unlimited overflow never makes anyone wait: nothing to be fair about.
            return super()._do_get()
        deadline = time.monotonic() + self._timeout
        with self._fair:
            while True:
                if self._handed_over:
                    return self._handed_over.popleft()
                try:
                    return self._pool.get(False)
                except sqla_queue.Empty:
                    pass
                if self._inc_overflow():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise exc.TimeoutError(
                        f"FairQueuePool limit of size {self.size()} overflow {self._max_overflow} "
                        f"reached, connection timed out, timeout {self._timeout:0.2f}",
                        code="3o7r",
                    )
                self._waiting += 1
                try:
                    self._fair.wait(remaining)
                finally:
                    self._waiting -= 1
        # Connect outside the lock: other requests keep getting and returning meanwhile.
        try:
            return self._create_connection()
        except BaseException:
            self._dec_overflow()
            with self._fair:
                # The slot this request took is free again: let a waiting request try it.
                self._fair.notify()
            raise

    def status(self):
        return f"{super().status()} Waiting: {self._waiting}"
