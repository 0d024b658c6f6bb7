"""The database's faults mid-burst, on real Gunicorn modes and a PostgreSQL of this module's own: SIGSTOPped
(alive for TCP, silent) and resumed; the postmaster kill -9ed and started again by the lab.

Each test counts what it sent, what was answered and why; nothing may be lost (sent but never answered).
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter

import psutil
import pytest

import embedded_pg
from lab.servers import ROOT, start_mode
from support import SLEEP, private_directory

# The grace the tests run with: short, far above the machine's noise for a connect or a SELECT 1.
GRACE = 1.0
# How late past its bound a 504 may come on this loaded 2-core machine.
LATE = 2.0


@pytest.fixture(scope="module")
def silent_database():
    """An embedded PostgreSQL of this module's own, which its tests stop and resume (never the suite's)."""
    root = private_directory("pool-lab-dbfaults-")
    database = embedded_pg.start(root / "pgdata")
    yield database
    database.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def postgres_processes(database):
    postmaster = psutil.Process(database.get_pid())
    return [postmaster, *postmaster.children()]


def timed_get(server, path, answers):
    """GET `path` in a thread; append (status, body as JSON, seconds) when answered, None when not."""
    def one():
        started = time.monotonic()
        try:
            status, _, body = server.get(path, timeout=30)
        except OSError:
            answers.append(None)
        else:
            answers.append((status, json.loads(body), time.monotonic() - started))
    thread = threading.Thread(target=one)
    thread.start()
    return thread


def tally(answers):
    counts = Counter(sent=len(answers), answered=sum(a is not None for a in answers))
    counts["lost"] = counts["sent"] - counts["answered"]
    for status, body, _ in filter(None, answers):
        counts["ok" if status == 200 else body["error"]] += 1
    return counts


def steps(answers):
    """The step each 504 names, from its message ("did not answer the query ...")."""
    return Counter(body["message"].split("did not answer the ", 1)[1].split()[0]
                   for status, body, _ in filter(None, answers) if status == 504)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["green", "threads", "psycopg3"])
def test_a_silent_database_gives_504s_within_the_bound_and_recovers_on_resume(silent_database, tmp_path, mode):
    server = start_mode(mode, {"DATABASE_URL": silent_database.get_uri(), "DB_GRACE_SECONDS": str(GRACE)},
                        tmp_path / f"{mode}.log")
    stopped = []
    try:
        seconds = 2 * SLEEP
        assert server.get_json(f"/sleep/postgres/?seconds={SLEEP}")[0] == 200  # one pooled connection, idle
        burst = []
        threads = [timed_get(server, f"/sleep/postgres/?seconds={seconds}", burst) for _ in range(3)]
        time.sleep(SLEEP / 2)  # the three queries sleep in PostgreSQL
        stopped = postgres_processes(silent_database)
        for process in stopped:
            process.suspend()  # SIGSTOP: its sockets stay open, the kernel still ACKs
        during = []
        late = [timed_get(server, f"/sleep/postgres/?seconds={SLEEP}", during),
                timed_get(server, "/db", during)]
        status, body = server.get_json(f"/sleep/python/?seconds={SLEEP}")
        assert status == 200, "python requests must keep answering"
        for thread in threads + late:
            thread.join()

        # The burst's queries: 504s naming the query, not before their seconds + the grace, not much after.
        assert tally(burst) == Counter(sent=3, answered=3, lost=0, database_timeout=3)
        assert steps(burst) == Counter(query=3)
        for status, body, took in burst:
            assert body["status"] == 504 and f"DB_GRACE_SECONDS {GRACE:g}" in body["message"]
            assert seconds + GRACE - SLEEP / 2 <= took <= seconds + GRACE + LATE, body
        # A request that came during the stall, and /db: their own bounds (seconds + grace; the grace).
        assert tally(during) == Counter(sent=2, answered=2, lost=0, database_timeout=2)
        assert set(steps(during)) <= {"connect", "ping"}, during
        for status, body, took in during:
            assert took <= SLEEP + GRACE + LATE, body
        # Every connection that timed out was discarded: none out, none handed back.
        status, pool = server.get_json("/pool")
        assert pool["checked_out"] == 0 and pool["db_grace_seconds"] == GRACE
        log = server.log()
        assert log.count("504 database_timeout: PostgreSQL did not answer") == 5

        for process in stopped:
            process.resume()
        stopped = []
        # The very next request succeeds, no restart; the pool is back to idle.
        status, body = server.get_json(f"/sleep/postgres/?seconds={SLEEP}")
        assert status == 200 and body["todo_count"] == 50
        assert server.get_json("/db")[0] == 200
        status, pool = server.get_json("/pool")
        assert pool["checked_out"] == 0 and pool["checked_in"] <= pool["pool_size"]
        assert server.process.poll() is None
    finally:
        for process in stopped:
            process.resume()
        server.stop()


def lab_processes(pgdata):
    """Whatever still runs on `pgdata`: PostgreSQL's processes, a reaper."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(str(pgdata) in part for part in process.info["cmdline"] or ()):
                found.append(process)
        except psutil.Error:
            pass
    postmaster = [p for p in found if p.name() == "postgres"]
    return found + [child for p in postmaster for child in p.children()]


@pytest.mark.slow
def test_a_killed_postmaster_is_named_and_the_lab_starts_it_again_leaving_nothing_running(tmp_path):
    root = private_directory("pool-lab-killed-")
    pgdata = root / "pgdata"
    # As honcho start runs it: the mode's master starts the embedded PostgreSQL and holds it (with its reaper).
    environment = {"EMBEDDED_PGDATA": str(pgdata), "DATABASE_URL": "", "DB_GRACE_SECONDS": str(GRACE)}
    server = start_mode("green", environment, tmp_path / "green.log")
    try:
        postmaster = psutil.Process(server.get_json("/db")[1]["postmaster_pid"])
        burst = []
        threads = [timed_get(server, f"/sleep/postgres/?seconds={4 * SLEEP}", burst) for _ in range(3)]
        time.sleep(SLEEP)
        backends = postmaster.children()
        postmaster.kill()  # kill -9: no shutdown, its backends orphaned
        for thread in threads:
            thread.join()
        # Backends see the postmaster's death and end their queries: 503s naming the database, at once.
        assert tally(burst) == Counter(sent=3, answered=3, lost=0, database_unavailable=3)
        assert all(took < 4 * SLEEP + GRACE for _, _, took in burst)
        psutil.wait_procs(backends, timeout=10)
        assert not [p for p in backends if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        status, headers, body = server.get(f"/sleep/postgres/?seconds={SLEEP}")
        assert status == 503 and json.loads(body)["error"] == "database_unavailable", body
        assert server.get_json(f"/sleep/python/?seconds={SLEEP}")[0] == 200

        # The lab starts it again while the mode runs (from its stale postmaster.pid): no Gunicorn restart.
        done = subprocess.run([sys.executable, "-m", "lab.database", "init-db", "--if-empty"], cwd=ROOT,
                              env={**os.environ, **environment}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        status, body = server.get_json(f"/sleep/postgres/?seconds={SLEEP}")
        assert status == 200 and body["todo_count"] == 50
        assert server.get_json("/pool")[1]["checked_out"] == 0
        log = server.log()
        assert "503 database_unavailable: " in log and "Traceback" not in log
    finally:
        server.stop()
    # The mode was the last holder: it stopped PostgreSQL (or its reaper does, within a few of its ticks).
    deadline = time.monotonic() + 15
    while lab_processes(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not lab_processes(pgdata), [p.info["cmdline"] for p in lab_processes(pgdata)]
    assert not (pgdata / "postmaster.pid").exists()
    shutil.rmtree(root, ignore_errors=True)


def summary_of(mode, statuses, **pool):
    """A postgres burst's summary on `mode` (its /pool facts with `pool`), one answer per status: 0 = none."""
    from lab import analysis
    from lab.records import completions
    from support import facts

    records = [{"endpoint": "postgres", "request_type": "GET", "name": "/sleep/postgres/",
                "response_time": 1000.0 * (n + 1),
                "response_length": 90, "start_time": 1000.0, "status_code": status, "timing": None,
                "exception": None if status == 200 else
                ("connection_error: no answer from the server" if status == 0 else
                 "database_timeout: PostgreSQL did not answer the query within 4 s")}
               for n, status in enumerate(statuses)]
    pool_facts = {**facts(mode), **pool}
    [summary] = analysis.summarize(completions(records), sleep=1.0, facts=pool_facts)
    return summary, pool_facts


@pytest.mark.parametrize("mode, worker_timeout, words", [
    ("sync", 90, "NOTE: the sync mode's worker blocks in each query, so it cannot bound one whose database does not "
                 "answer: only Gunicorn's worker timeout (90 s) does, by killing the worker with every request it "
                 "holds"),
    ("gevent", 0, "NOTE: the gevent mode's worker blocks in each query, so it cannot bound one whose database does "
                  "not answer, and it runs with --timeout 0: nothing bounds it"),
])
def test_a_blocked_workers_postgres_burst_left_unanswered_names_what_bounds_it(mode, worker_timeout, words):
    from lab import render

    summary, pool_facts = summary_of(mode, [200, 0, 0], db_grace_seconds=None, worker_timeout=worker_timeout)
    assert words in render.format_summary([summary], pool_facts)
    # Answered in full: nothing to explain.
    summary, _ = summary_of(mode, [200, 200, 200])
    assert "NOTE" not in render.format_summary([summary], pool_facts)


def test_a_mode_that_bounds_its_waits_gets_no_note_its_504s_say_it_all():
    from lab import render

    summary, pool_facts = summary_of("green", [200, 504, 504], db_grace_seconds=3.0, worker_timeout=90)
    text = render.format_summary([summary], pool_facts)
    assert "failures: database_timeout 2" in text and "NOTE" not in text
    assert render.database_bound_note(pool_facts) is None
    # A result file written before /pool said what bounds a query: no note, rather than a guess.
    assert render.database_bound_note({"mode": "sync"}) is None
