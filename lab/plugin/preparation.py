"""Before each run, in the process that reports: the server's facts, and for a burst an idle pool,
the mode's CPU calibration, the memory sampler, the kernel's baseline, and where the files go."""

import json
import logging
import time
import urllib.parse
import urllib.request
from pathlib import Path

import gevent
from locust.runners import MasterRunner

from contract import DB_PATH, POOL_PATH

from .. import calibration, kernel, memory

# Where a run's files go when no --csv prefix is given (web UI runs); each web UI burst then
# writes its own request log, waves, timings and result under a prefix with its mode and time.
DEFAULT_PREFIX = "reports/webui"

log = logging.getLogger("pool-lab")


def fetch_facts(host):
    """The server's /pool, with its database's /db as "db": the facts its prediction is made from."""
    facts = {}
    for path in (POOL_PATH, DB_PATH):
        try:
            with urllib.request.urlopen(f"{host.rstrip('/')}{path}", timeout=5) as answer:
                facts[path] = json.load(answer)
        except (OSError, ValueError) as error:
            log.warning("%s%s did not answer (%s)", host, path, error)
    if POOL_PATH not in facts:
        log.warning("no prediction: without /pool the server's facts are unknown")
        return None
    return {**facts[POOL_PATH], "db": facts.get(DB_PATH)}


class Preparation:
    """What the run's report is made against; `burst` says when the postgres burst begins (for the sampler)."""

    def __init__(self, environment, options, burst):
        self.environment = environment
        self.burst = burst
        csv_prefix = environment.parsed_options.csv_prefix if environment.parsed_options else None
        self.web_ui_prefix = not csv_prefix  # a run of its own prefix each, not to overwrite the last one's files
        self.prefix = Path(csv_prefix or DEFAULT_PREFIX)
        self.facts, self.sleep, self.warnings = None, None, []
        self.postgres = None  # the run's endpoint that is the lab's postgres one (its connections are sampled)
        self.unpredicted = None  # why there is no prediction
        self.memory_sample, self.sampler = None, None
        # PgBouncer's memory (a memory.PoolerSample) when the server connects through one on this machine.
        self.pooler_rest, self.pooler_sample = None, None
        self.memory_note = None  # why there is no memory sample, once a burst has begun
        self.status, self.started = "no run yet", None  # what the run is doing, and when it started (web UI)
        self.backends_before = set()  # PostgreSQL's client backends before the burst: others', and the pool's idle
        self.overflows_before = None  # the kernel's ListenOverflows when the burst began, if it counts here
        options.run_starting.add_listener(self.prepare)

    def prepare(self, settings, **kwargs):
        """The facts and the prefix at once; a burst's slower steps (an idle pool, the calibration) in a
        greenlet of their own, which the burst waits for: in the web UI this runs inside the START
        request, which must answer at once so the page follows the run and shows these steps."""
        host = self.environment.host
        self.warnings = []
        self.started = time.strftime("%Y-%m-%d %H:%M:%S")
        self.postgres = settings.endpoints.of_lab("postgres")
        # --ignore-facts: as if /pool had not answered; the lab's server still takes ?seconds=.
        self.facts = None if settings.ignore_facts else fetch_facts(host)
        self.unpredicted = ("/pool ignored: --ignore-facts" if settings.ignore_facts else
                            "the server's /pool did not answer")
        # What each request sleeps: the option, else the server's default (unknown without /pool).
        self.sleep = float(settings.sleep_seconds) if settings.sleep_seconds else (self.facts or {}).get(
            "sleep_seconds")
        if self.web_ui_prefix and self.facts:
            self.prefix = Path(f"{DEFAULT_PREFIX}-{self.facts['mode']}-{time.strftime('%Y%m%d-%H%M%S')}")
        if settings.burst:
            self.burst.prepared.clear()
            self.status = "preparing"
            gevent.spawn(self.prepare_burst, host, settings)
        else:
            self.status = "steady run: waves are measured in burst runs"

    def prepare_burst(self, host, settings):
        try:
            # A connection still held by an earlier client would skew the waves.
            self.status = "waiting for the pool to be idle"
            self.wait_until_idle(host, settings.idle_wait)
            self.facts = calibration.with_cpu_cost(self.facts, host, self.prefix.parent, settings.calibrate,
                                                   progress=self.calibrating, path=settings.calibration_file)
            if self.facts:
                self.facts = {**self.facts, "load_generator": self.load_generator(host)}
            self.backends_before = memory.backend_pids(self.postmaster())
            self.pooler_rest = memory.process_uss_mib(self.pooler_pid())
            self.pooler_sample = None
            self.memory_sample, self.sampler = None, gevent.spawn(self.sample_memory)
            self.memory_note = ("not sampled: the postgres burst ended before its sample's moment, halfway through "
                                "its first wave (see its failures)")
            # The kernel's count is this machine's: it tells about a server on this machine only.
            local = urllib.parse.urlsplit(host).hostname in calibration.LOOPBACK
            self.overflows_before = kernel.listen_overflows() if local else None
        finally:
            self.status = "burst running"
            self.burst.prepared.set()

    def load_generator(self, host):
        """The processes that send the burst (a master's workers, else this one), and whether they run on
        the server's machine, sharing its cores: the CPU model spreads their CPU as it does the server's."""
        runner = self.environment.runner
        processes = runner.worker_count if isinstance(runner, MasterRunner) else 1
        return {"processes": max(processes, 1), "local": urllib.parse.urlsplit(host).hostname in calibration.LOOPBACK}

    def calibrating(self, done, rounds):
        self.status = f"calibrating the CPU model: {done} of {rounds} rounds done"

    def wait_until_idle(self, host, patience):
        deadline = time.monotonic() + patience
        while self.facts and self.facts["checked_out"] and time.monotonic() < deadline:
            gevent.sleep(0.2)
            self.facts = fetch_facts(host) or self.facts
        if self.facts and self.facts["checked_out"]:
            self.warnings.append(f"the pool had {self.facts['checked_out']} connection(s) checked out when the "
                                 f"burst began, still after {patience:g} s (--idle-wait): an earlier client's requests")
            log.warning("%s", self.warnings[-1])

    def postmaster(self):
        return ((self.facts or {}).get("db") or {}).get("postmaster_pid")

    def sample_memory(self):
        """Sample the mode's client backends halfway through the postgres burst's first wave, when
        its connections are all open and sleeping (if the database runs on this machine).

        Once, not on a timer: psutil reads each backend's /proc files in this process, which
        would hold up Locust's users for as long; half a sleep from any answer, it delays none.
        Only the mode's: those the burst opened, and its pool's idle connections it took up again
        (/pool's checked_in before the burst); every other client's are left out and counted.
        """
        if not (self.postgres and self.facts):
            self.memory_note = ("not sampled: the server's database is unknown (no /pool)" if self.postgres else
                                "not sampled: the run has no postgres endpoint of the lab's")
            return
        self.burst.wait_begun(self.postgres)
        gevent.sleep((self.sleep or 0) / 2)
        new = memory.sample_backends(self.postmaster(), exclude=self.backends_before)
        reused = min((self.facts or {}).get("checked_in") or 0, self.burst.sent[self.postgres])
        self.check_no_other_client()
        everyone = None if new and new.backends else memory.sample_backends(self.postmaster())
        self.memory_sample = memory.own_backends(new, everyone, len(self.backends_before), reused)
        if new is None:
            self.memory_note = "cannot be sampled: the database does not run on this machine (or /db did not answer)"
        elif not self.memory_sample:
            self.memory_note = "not sampled: no connection of the mode's was open at the sample's moment"
        peak = memory.process_uss_mib(self.pooler_pid())
        if self.pooler_rest is not None and peak is not None:
            # The clients it held at that moment, from its admin console (through /db).
            pooler = (fetch_facts(self.environment.host) or {}).get("db", {}).get("pooler") or {}
            clients = pooler.get("clients_active", 0) + pooler.get("clients_waiting", 0)
            self.pooler_sample = memory.PoolerSample(self.pooler_rest, peak, clients)

    def pooler_pid(self):
        return (((self.facts or {}).get("db") or {}).get("pooler") or {}).get("pid")

    def check_no_other_client(self):
        """At the first wave's middle, the pool holds the burst's connections and no more: more out
        means another client sent meanwhile (another run, another tab), whose requests took the
        burst's slots; the summary says so rather than blame the pool for what it did to the waves."""
        limit = (self.facts or {}).get("pool_limit")
        if not limit:
            return  # NullPool: no pool to count
        try:
            with urllib.request.urlopen(f"{self.environment.host.rstrip('/')}{POOL_PATH}", timeout=2) as answer:
                checked_out = int(json.load(answer)["checked_out"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # a blocked worker answers late: nothing to tell
        workers = self.facts.get("workers") or 1
        ours = min(self.burst.sent[self.postgres], limit * workers)
        # /pool speaks for the one worker that answers it; with several, its share of ours is unknown.
        if workers == 1 and checked_out > ours:
            self.warnings.append(f"another client held {checked_out - ours} more of the pool's connections during "
                                 f"the postgres burst ({checked_out} checked out, {ours} of them this burst's): "
                                 f"another run or web UI on this server; its requests took this burst's slots")
            log.warning("%s", self.warnings[-1])

    def stop_sampling(self):
        if self.sampler:
            self.sampler.kill()
