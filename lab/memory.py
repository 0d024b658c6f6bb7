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
    # Client backends left out of the sample: other clients' (other modes', an earlier run's).
    others: int = 0


def client_backends(postmaster_pid):
    """The postmaster's client backend processes; None when it does not run here."""
    try:
        children = psutil.Process(postmaster_pid).children()
    except (psutil.Error, TypeError, ValueError):
        return None
    found = []
    for child in children:
        try:
            if CLIENT_BACKEND.match(" ".join(child.cmdline())):
                found.append(child)
        except psutil.Error:
            continue  # ended meanwhile
    return found


def backend_pids(postmaster_pid):
    """The pids of the postmaster's client backends now (empty when it does not run here)."""
    return {backend.pid for backend in client_backends(postmaster_pid) or ()}


def sample_backends(postmaster_pid, exclude=frozenset()):
    """Sum the memory of the postmaster's client backends, but those in `exclude`; None when it does not run here."""
    backends = client_backends(postmaster_pid)
    if backends is None:
        return None
    counted = uss = pss = others = 0
    for backend in backends:
        if backend.pid in exclude:
            others += 1
            continue
        try:
            memory = backend.memory_full_info()
        except psutil.Error:
            continue  # ended meanwhile
        counted += 1
        uss += memory.uss
        pss += memory.pss
    return Sample(counted, uss / MIB, pss / MIB, others)


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


def own_backends(new, everyone, before, reused):
    """The backends of the mode under test at a burst's peak: those `new` since the burst began (a
    sample of them: its own, it opened them) and `reused`, its pool's idle connections the burst took
    up again, which are among the `before` ones and cannot be told apart from other clients'.

    Their memory is counted at the new ones' mean, or without a new one at the mean of `everyone`
    (a sample of every client backend); None when nothing of the mode's was there to sample.
    """
    count = (new.backends if new else 0) + reused
    mean = new if new and new.backends else everyone
    if not count or mean is None or not mean.backends:
        return None
    return Sample(count, mean.uss_mib / mean.backends * count, mean.pss_mib / mean.backends * count,
                  max(before - reused, 0))
