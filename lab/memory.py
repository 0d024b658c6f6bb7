"""The memory PostgreSQL's client backends hold, and PgBouncer's, sampled from this machine with psutil."""

import re
from dataclasses import dataclass

import psutil

# A client backend's process title: "postgres: USER DATABASE [local] ..." or "... HOST(PORT) ...";
# the server's own processes (checkpointer, walwriter, launchers) have other titles.
CLIENT_BACKEND = re.compile(r"postgres: \S+ \S+ (\[local\]|\S+\(\d+\))")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    backends: int
    uss_mib: float  # memory only these processes hold
    pss_mib: float  # with their share of what they share (PostgreSQL's shared buffers)


def sample_backends(postmaster_pid):
    """Sum the memory of the postmaster's client backends; None when it does not run here."""
    try:
        children = psutil.Process(postmaster_pid).children()
    except (psutil.Error, TypeError, ValueError):
        return None
    backends = uss = pss = 0
    for child in children:
        try:
            if not CLIENT_BACKEND.match(" ".join(child.cmdline())):
                continue
            memory = child.memory_full_info()
        except psutil.Error:
            continue  # ended meanwhile
        backends += 1
        uss += memory.uss
        pss += memory.pss
    return Sample(backends, uss / MIB, pss / MIB)


@dataclass(frozen=True)
class PoolerSample:
    """PgBouncer's own memory before a burst and at its peak, with the client connections it held then."""
    rest_uss_mib: float
    peak_uss_mib: float
    clients: int

    @property
    def kib_per_client(self):
        return None if not self.clients else 1024 * (self.peak_uss_mib - self.rest_uss_mib) / self.clients


def process_uss_mib(pid):
    """One process's own memory (USS) in MiB; None when it does not run here."""
    try:
        return psutil.Process(pid).memory_full_info().uss / MIB
    except (psutil.Error, TypeError, ValueError):
        return None
