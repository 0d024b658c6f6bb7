"""Grouping completion times of a burst into waves, and what the pool predicts for them.

A burst sends N requests at once; each sleeps d seconds on the server. Requests
that ran side by side finish within moments of each other; a request that had
to wait for a worker or a pooled connection finishes about d later. So a wave
is a run of completions with no gap longer than half the sleep between them.
"""

import math
from dataclasses import dataclass

from contract import POOLER_REFUSED, TOO_MANY_CONNECTIONS

@dataclass(frozen=True)
class Completion:
    """One answered (or failed) request, timed from the start of its burst."""
    endpoint: str
    at: float
    failure: str | None = None


@dataclass(frozen=True)
class Wave:
    endpoint: str
    number: int
    size: int
    first: float
    last: float
    failures: int


def group_waves(completions, sleep_seconds):
    """Return the waves of one endpoint's completions, in order, numbered from 1."""
    ordered = sorted(completions, key=lambda c: c.at)
    # With no sleep there is nothing to tell waves apart by: one wave.
    gap = sleep_seconds / 2 if sleep_seconds > 0 else math.inf
    groups = []
    for completion in ordered:
        if groups and completion.at - groups[-1][-1].at <= gap:
            groups[-1].append(completion)
        else:
            groups.append([completion])
    return [
        Wave(
            endpoint=group[0].endpoint,
            number=number,
            size=len(group),
            first=group[0].at,
            last=group[-1].at,
            failures=sum(1 for c in group if c.failure),
        )
        for number, group in enumerate(groups, start=1)
    ]


@dataclass(frozen=True)
class Prediction:
    """The waves a server should answer a burst in, from what limits its concurrency."""
    wave_sizes: tuple[int, ...]
    sleep: float
    reason: str
    # Requests refused at once: the first wave, answered at once; `refused_as` names the cause
    # (the database's too_many_connections, or PgBouncer's pooler_refused past max_client_conn).
    refused: int = 0
    refused_as: str = TOO_MANY_CONNECTIONS
    # Requests PgBouncer drops after query_wait_timeout (pooler_query_wait_timeout): not in wave_sizes,
    # which are the answered waves; they fail together, at about `timed_out_at` seconds.
    timed_out: int = 0
    timed_out_at: float = 0.0
    # The CPU model (see cpu_model): c, the CPU seconds one request costs the server's workers, from
    # the mode's calibration, and the part of it before the handler's sleep; the load generator's
    # CPU per request, and the cores it shares with the server (None: it runs elsewhere); None
    # without a calibration, and `cpu_unavailable` says why.
    requests: int = 0
    cpu_per_request: float | None = None
    cpu_before_sleep: float | None = None
    load_cpu_per_request: float | None = None
    load_cpu_before_sleep: float | None = None
    # The load generator's CPU per request to release it: gevent runs every user woken at its gate up
    # to its first wait (its resolver thread, before it connects), one after another, before the server
    # can read any request (lab.calibration).
    load_cpu_release: float | None = None
    load_processes: int = 1
    shared_cores: int | None = None
    cpu_workers: int = 1
    cpu_workers_reason: str = ""
    cpu_unavailable: str = ""
    # What c is: "cpu" (the workers' CPU time, read with psutil) or "wall" (the calibration's wall time).
    cpu_measured_as: str = "wall"

    @property
    def ideal_total(self):
        return (len(self.wave_sizes) - bool(self.refused)) * self.sleep

    def in_waves(self, c, before):
        """The CPU seconds of N requests of c each (`before` of it before the sleep; None: unknown)
        that delay the last answer.

        In the first wave every request's Python up to its sleep runs one after another, and its
        answers' Python one after another too, a sleep later, while the rest sleep: the slower of
        the two halves delays the last answer (all of c when the part before is unknown), unless
        the wave's whole Python outlasts its sleep by more: then the worker is busy from the first
        request to the last answer. Each later wave waits for an earlier one's answers and then
        runs its own: it pays its requests' whole c. Waves of 1 pay N x c.
        """
        first = self.wave_sizes[0] if self.wave_sizes else 0
        if first > 1 and before is not None:
            first_wave = max(first * max(before, c - before), first * c - self.sleep)
        else:
            first_wave = first * c
        return first_wave + (self.requests - first) * c

    @property
    def server_cpu(self):
        """The server's CPU seconds that delay the last answer, before any spread over workers."""
        return None if self.cpu_per_request is None else self.in_waves(self.cpu_per_request, self.cpu_before_sleep)

    @property
    def load_cpu(self):
        """The load generator's, the same way: it sends the requests, and reads their answers a sleep later."""
        if self.load_cpu_per_request is None:
            return None
        release = self.load_release_per_request
        # Medians of different rounds (a round may not tell the part before the sleep): never below nothing.
        before = None if self.load_cpu_before_sleep is None else max(0.0, self.load_cpu_before_sleep - release)
        return self.in_waves(self.load_cpu_per_request - release, before)

    @property
    def load_processes_at_once(self):
        """The load generator's processes that send at the same moment: one per core it shares at most."""
        return min(self.load_processes, self.shared_cores or self.load_processes)

    @property
    def load_release_per_request(self):
        """The load generator's CPU to release one request; 0 when it was not measured (an entry of an older
        kind) or the load generator's CPU is not in the model."""
        if self.load_cpu_release is None or self.load_cpu_per_request is None:
            return 0.0
        return self.load_cpu_release

    @property
    def release_cpu(self):
        """The seconds before the server can read any request: each load generator process wakes its share
        of the users, one after another, up to their first wait."""
        return self.requests * self.load_release_per_request / self.load_processes_at_once

    def cpu_spreads(self):
        """[(seconds, what they are)]: the ways the burst's CPU may delay its last answer; the longest does."""
        server = self.server_cpu
        if server is None:
            return []
        workers = "1 worker" if self.cpu_workers == 1 else f"{self.cpu_workers} workers at once"
        spreads = [(server / self.cpu_workers, f"the server's CPU on {workers}")]
        if self.load_cpu_per_request is not None:
            load = self.load_cpu
            # The load generator's processes each send their share one after another...
            processes = self.load_processes_at_once
            spreads.append((load / processes, f"the load generator's CPU in {plural(processes, 'process')}"))
            if self.shared_cores:
                # ...and on the server's cores, both kinds of process take turns.
                spreads.append(((server + load) / self.shared_cores,
                                f"the server's and the load generator's CPU sharing {self.shared_cores} cores"))
        return spreads

    @property
    def cpu_total(self):
        """The burst's CPU beyond its sleeps: the release, then the longest of its spreads."""
        spreads = self.cpu_spreads()
        return self.release_cpu + max(spreads)[0] if spreads else None

    @property
    def cpu_decided_by(self):
        """What the model's CPU term is: the spread that decided it."""
        spreads = self.cpu_spreads()
        return max(spreads)[1] if spreads else None

    @property
    def model_total(self):
        return None if self.cpu_total is None else self.ideal_total + self.cpu_total

    def model_explained(self):
        """The model in one line: the ideal, the CPU it adds, and what it assumed."""
        if self.model_total is None:
            return f"model: unavailable ({self.cpu_unavailable})"
        line = (f"model {self.model_total:.2f} s = ideal {self.ideal_total:.2f} s + {self.requests} x "
                f"{1000 * self.cpu_per_request:.2f} ms of CPU per request {self.cpu_workers_reason}")
        assumed = []
        if self.cpu_before_sleep is not None and self.requests > 1:
            assumed.append(f"{1000 * self.cpu_before_sleep:.2f} ms of it before the sleep")
        if self.load_cpu_per_request is not None:
            where = (f"sharing {self.shared_cores} cores with the server" if self.shared_cores else
                     "on another machine")
            release = (f", {1000 * self.load_cpu_release:.2f} ms of it releasing each request before the server "
                       f"reads any ({self.release_cpu:.2f} s first)" if self.load_cpu_release is not None else "")
            assumed.append(f"the load generator {1000 * self.load_cpu_per_request:.2f} ms per request in "
                           f"{plural(self.load_processes, 'process')}{release}, {where}")
        if len(self.cpu_spreads()) > 1:
            assumed.append(f"the longest: {self.cpu_decided_by}")
        if self.cpu_measured_as == "wall":
            assumed.append("c from the calibration's wall time, not the workers' CPU")
        return line + (f" ({'; '.join(assumed)})" if assumed else "")


def plural(count, noun):
    # render.counted's rule, with "processes": render imports this module, not the other way round.
    return f"{count} {noun}" if count == 1 else f"{count} {noun}es" if noun.endswith("s") else f"{count} {noun}s"


def pooler_of(facts):
    """PgBouncer's facts (/db's `pooler`) when the server connects through one that answered, else None."""
    pooler = (facts.get("db") or {}).get("pooler") if facts.get("pgbouncer") else None
    return pooler if pooler and "unavailable" not in pooler else None


def pooler_servers(ceiling, pooler):
    """(the server connections PgBouncer's pool may open, default_pool_size + reserve_pool_size;
    the most PostgreSQL lets it have: what it accepts more, plus those the pooler holds now).
    Past the second PostgreSQL refuses the pooler's logins and PgBouncer keeps its clients
    waiting: it refuses none of them. `ceiling`: /db's facts; `pooler`: their `pooler`."""
    most = pooler["default_pool_size"] + pooler["reserve_pool_size"]
    room = ceiling["accepts"] + pooler["servers_active"] + pooler["servers_idle"]
    return most, room


def limits(endpoint, facts):
    """What caps how many of `endpoint`'s requests run at once, each with why; from /pool's facts
    (and through PgBouncer, its pool from /db's, as "db")."""
    workers = facts["workers"]
    at_once = facts["worker_concurrency"] * workers
    worker = facts["worker_class"].rsplit(".", 1)[-1] if facts["worker_class"] else "the worker"
    found = [(at_once, f"serial: {worker} runs one request at a time" if at_once == 1 else
              f"overlapped: {worker} runs up to {at_once} requests at once")]
    if endpoint == "postgres":
        if not facts["query_yields"]:
            found.append((workers, f"serial: a query blocks the whole {worker} (its driver does not yield)"))
        if facts["pool_limit"] is not None:
            found.append((facts["pool_limit"] * workers, f"waves of the pool limit: pool_size "
                                                         f"{facts['pool_size']} + max_overflow {facts['max_overflow']}"))
        pooler = pooler_of(facts)
        if pooler:
            # One pool for every worker: PgBouncer's, per database and user (the lab has one pair).
            size, reserve = pooler["default_pool_size"], pooler["reserve_pool_size"]
            found.append((size, f"waves of the pooler's pool: PgBouncer's default_pool_size {size}" + (
                f" (reserve_pool_size {reserve} more for clients waiting past reserve_pool_timeout "
                f"{pooler['reserve_pool_timeout']:g} s)" if reserve else "")))
            ceiling = facts.get("db") or {}
            if "accepts" in ceiling:
                room = pooler_servers(ceiling, pooler)[1]
                if room < size:
                    found.append((room, f"waves of what PostgreSQL lets the pooler open: {room} server connections "
                                        f"of its pool of {size}, the clients past them kept waiting"))
    return found


def parallel_workers(facts):
    """How many of a server's worker processes run Python at the same moment: one per core at most."""
    return max(1, min(facts["workers"], facts.get("cpus") or facts["workers"]))


def cpu_model(requests, facts):
    """Prediction fields for the CPU a burst of `requests` costs, from the mode's calibration in the facts.

    Each worker process runs its requests' Python one after another, so the server's CPU is spread
    over the workers that run at once: as many as there are workers, but at most one per core the
    server may run on (`cpus` in /pool). The load generator's processes (`load_generator` in the
    facts: how many, and whether on the server's machine) send theirs the same way, and on the same
    machine the server and they share those cores.
    """
    calibration = facts.get("calibration")
    if not calibration:
        return {"requests": requests, "cpu_unavailable": "no CPU calibration"}
    if "error" in calibration:
        return {"requests": requests, "cpu_unavailable": calibration["error"]}
    workers, at_once = facts["workers"], parallel_workers(facts)
    if workers == 1:
        reason = "on 1 worker"
    elif at_once == workers:
        reason = f"over {workers} workers"
    else:
        reason = f"over {workers} workers on {at_once} cores"
    load = facts.get("load_generator") or {}
    fields = {"requests": requests, "cpu_per_request": calibration["cpu_per_request"], "cpu_workers": at_once,
              "cpu_workers_reason": reason, "cpu_measured_as": calibration.get("measured_as", "wall"),
              "cpu_before_sleep": calibration.get("cpu_before_sleep")}
    if calibration.get("load_cpu_per_request") is not None and load:
        fields.update(load_cpu_per_request=calibration["load_cpu_per_request"],
                      load_cpu_before_sleep=calibration.get("load_cpu_before_sleep"),
                      load_cpu_release=calibration.get("load_cpu_release"),
                      load_processes=load.get("processes", 1),
                      shared_cores=(facts.get("cpus") or workers) if load.get("local") else None)
    return fields


def predict(endpoint, requests, sleep, facts):
    """Predict a burst of `requests` sleeps of `sleep` seconds on one endpoint: waves of the tightest limit.

    With /db's facts (`facts["db"]`), the database's ceiling too: A, the connections it still
    accepts. When more than A requests open a connection at once (no pool limit, or W workers'
    pools larger than A together), it takes A and refuses the rest at once; and requests waiting
    for the pool are refused too, as each refused connect frees its pool slot at once while the
    database stays full. A pool limit above A that this burst does not reach is named as a risk.
    """
    concurrency, reason = min(limits(endpoint, facts), key=lambda limit: limit[0])
    pooler = pooler_of(facts) if endpoint == "postgres" else None
    if pooler:
        return predict_through_pooler(requests, sleep, facts, pooler, concurrency, reason)
    ceiling = facts.get("db") if endpoint == "postgres" else None
    if ceiling:
        accepts = ceiling["accepts"]
        where = f"max_connections {ceiling['max_connections']}, {ceiling['open_connections']} open"
        if min(requests, concurrency) > accepts:
            # With pools, the best case: the burst spread evenly, so every worker's pool asks at once.
            pools = "" if facts["pool_limit"] is None else (
                f" (spread evenly, {facts['workers']} workers' pools ask for up to {concurrency} at once)")
            return Prediction((requests - accepts, accepts), sleep, refused=requests - accepts, reason=(
                f"the database's ceiling: it accepts {accepts} more connections ({where}) and refuses the rest"
                f"{pools}"), **cpu_model(requests, facts))
        if facts["pool_limit"] is not None and facts["pool_limit"] * facts["workers"] > accepts:
            reason += f"; beyond the {accepts} connections the database accepts ({where}): expect refusals"
    full, rest = divmod(requests, concurrency)
    return Prediction((concurrency,) * full + ((rest,) if rest else ()), sleep, reason, **cpu_model(requests, facts))


def predict_through_pooler(requests, sleep, facts, pooler, concurrency, reason):
    """predict() for postgres through PgBouncer: waves of the tightest limit, its pool among them.

    Its max_client_conn is a ceiling of its own: the client connections the app opens at once
    (one per request under NullPool, the pools' limits else) beyond those it still accepts are
    refused at once (pooler_refused; as at the database's ceiling, requests waiting for an app
    pool slot freed by a refusal are refused too). The requests that must wait longer than
    query_wait_timeout for a server connection fail then (pooler_query_wait_timeout). The
    database's ceiling faces the pooler's pool, not the requests: a pool larger than what it
    accepts is named as a risk.
    """
    app_limits = [limit for limit, why in limits("postgres", {**facts, "pgbouncer": False})]
    clients_at_once = min([requests, *app_limits])
    accepts = max(pooler["max_client_conn"] - pooler["clients_active"] - pooler["clients_waiting"], 0)
    refused = requests - accepts if clients_at_once > accepts else 0
    if refused:
        reason += (f"; PgBouncer's max_client_conn {pooler['max_client_conn']} ({accepts} more accepted) refuses the "
                   f"client connections past it")
    ceiling = facts.get("db") or {}
    if "accepts" in ceiling:
        most, room = pooler_servers(ceiling, pooler)
        if most > room:
            reason += (f"; the pooler's pool is larger than the {room} connections the database accepts: expect refusals "
                       f"of its server logins in PostgreSQL's log")
    answered = requests - refused
    full, rest = divmod(answered, concurrency)
    waves = [concurrency] * full + ([rest] if rest else [])
    timed_out, timeout = 0, pooler["query_wait_timeout"]
    if timeout > 0 and sleep > 0:
        # Wave k (from 0) waits k sleeps for a server connection; PgBouncer drops those that wait longer.
        kept = math.floor(timeout / sleep) + 1
        timed_out = sum(waves[kept:])
        if timed_out:
            waves = waves[:kept]
            reason += f"; PgBouncer drops the requests that wait longer than query_wait_timeout {timeout:g} s"
    return Prediction(tuple(([refused] if refused else []) + waves), sleep, reason, refused=refused,
                      refused_as=POOLER_REFUSED, timed_out=timed_out, timed_out_at=timeout if timed_out else 0.0,
                      **cpu_model(requests, facts))
