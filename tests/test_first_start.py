"""The embedded PostgreSQL's first start on a fresh machine, and on one left half done.

Every start runs in a process of its own, on a machine of its own (tests/fresh_machine.py),
through the lab's real start: real useradd, initdb, pg_ctl and PostgreSQL.
"""

import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from embedded_pg import SYSTEM_USER
from embedded_pg.handles import HANDLE_PIDS_FILE
from embedded_pg.lock import START_LOCK_FILE
from embedded_pg.reaper import REAPER_LOCK_FILE
from lab.servers import PROCFILE, ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")),
                                reason="DATABASE_URL replaces the embedded server")]

# Waits until told, starts (or joins) the embedded server on the machine's data directory, queries
# it, prints its postmaster's pid, then holds its handle until told again.
STARTER = textwrap.dedent("""
    import os
    import sys
    import psycopg2
    import embedded_pg
    from embedded_pg.postgres import load_pgserver
    load_pgserver()  # imported now, so that the starts leave together when told
    print("ready", flush=True)
    sys.stdin.readline()
    postgres = embedded_pg.start(os.environ["EMBEDDED_PGDATA"])
    with psycopg2.connect(postgres.get_uri()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    print(postgres.get_pid(), flush=True)
    sys.stdin.readline()
""")


def read_line(process, deadline):
    """The next line `process` prints, or "" if it exits or the deadline passes first."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(max(0.0, deadline - time.monotonic())):
            return ""
    return process.stdout.readline().strip()


def starters(machine, count, log_dir):
    """`count` STARTERs on `machine`, each writing its stderr to log_dir/starter-N.log."""
    log_dir.mkdir(exist_ok=True)
    processes = []
    for number in range(count):
        stderr = (log_dir / f"starter-{number}.log").open("w")
        processes.append(subprocess.Popen(machine.command([sys.executable, "-c", STARTER]), cwd=ROOT,
                                          env=machine.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=stderr, text=True))
    return processes


def start_one(machine, log_dir):
    """One embedded start: (exit code, what it printed on stderr); the server stops as it exits."""
    [process] = starters(machine, 1, log_dir)
    deadline = time.monotonic() + 120
    assert read_line(process, deadline) == "ready"
    process.stdin.write("go\n")
    process.stdin.flush()
    read_line(process, deadline)
    process.stdin.close()
    process.wait(timeout=120)
    return process.returncode, (log_dir / "starter-0.log").read_text()


def stopped(machine):
    """True once nothing started on `machine` runs any more (PostgreSQL stops after its last holder)."""
    return machine.left_running() == [] and not (machine.pgdata / "postmaster.pid").exists()


def test_four_starts_at_once_on_a_fresh_machine_share_one_server(fresh_machine, tmp_path):
    """What a new user's `honcho start` does: four masters start the embedded server at the same moment."""
    if os.geteuid() == 0:
        fresh_machine.require_private_etc()
    processes = starters(fresh_machine, 4, tmp_path)

    def logs():
        return "".join(f"--- starter {n}:\n{(tmp_path / f'starter-{n}.log').read_text()}" for n in range(4))

    try:
        deadline = time.monotonic() + 120
        assert [read_line(p, deadline) for p in processes] == ["ready"] * 4
        # Everything is imported: released together, the four starts race for real.
        for process in processes:
            process.stdin.write("go\n")
        for process in processes:
            process.stdin.flush()
        postmasters = [read_line(p, deadline) for p in processes]
        assert all(postmasters) and len(set(postmasters)) == 1, logs()
    finally:
        for process in processes:
            process.stdin.close()
        for process in processes:
            process.wait(timeout=120)
    assert [p.returncode for p in processes] == [0] * 4, logs()
    if fresh_machine.etc is not None:
        assert len(fresh_machine.entries("passwd")) == 1
    assert stopped(fresh_machine)


def test_a_group_left_without_its_user_is_reused(fresh_machine, tmp_path):
    """A useradd killed halfway leaves the `pgserver` group but no user; a plain useradd then fails forever."""
    fresh_machine.require_private_etc()
    assert fresh_machine.run(["groupadd", SYSTEM_USER]).returncode == 0
    [[_, _, gid, *_]] = fresh_machine.entries("group")

    returncode, stderr = start_one(fresh_machine, tmp_path)
    assert returncode == 0, stderr
    [[_, _, _, user_gid, *_]] = fresh_machine.entries("passwd")
    assert user_gid == gid
    assert stderr.strip().splitlines() == [
        "pool-lab: group pgserver exists without its user (a useradd was interrupted): "
        "running useradd -s /bin/bash -g pgserver pgserver"]
    assert stopped(fresh_machine)


def start_mode_that_fails(machine):
    """Run the Procfile's green mode, which must stop during start-up; return its stderr."""
    result = subprocess.run(machine.command(["sh", "-c", PROCFILE["green"]]), cwd=ROOT,
                            env=machine.env(GREEN_PORT=str(free_port())), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_useradd_that_fails_stops_the_mode_with_one_line(fresh_machine):
    fresh_machine.require_private_etc()
    # What useradd meets while someone else edits the users (vipw, another useradd): a live lock.
    (fresh_machine.etc / "passwd.lock").write_text(str(os.getpid()))
    stderr = start_mode_that_fails(fresh_machine)
    assert stderr.strip().splitlines()[-1] == (
        "pool-lab: could not create the system user pgserver, which runs PostgreSQL when the lab runs as "
        f"root: `useradd -s /bin/bash pgserver` failed: useradd: lock /etc/passwd.lock already used by PID "
        f"{os.getpid()}; useradd: cannot lock /etc/passwd; try again later.")
    assert fresh_machine.entries("passwd") == []
    assert stopped(fresh_machine)


# What `initdb --no-clean` leaves when its bootstrap fails (seen with pgserver's initdb 16.2):
# PG_VERSION and the configuration files written, the catalogs not. A killed initdb leaves the
# same, or only the subdirectories when it dies before writing PG_VERSION.
INITDB_SUBDIRECTORIES = ("base/1", "global", "pg_commit_ts", "pg_dynshmem", "pg_logical/mappings",
                         "pg_logical/snapshots", "pg_multixact/members", "pg_multixact/offsets", "pg_notify",
                         "pg_replslot", "pg_serial", "pg_snapshots", "pg_stat", "pg_stat_tmp", "pg_subtrans",
                         "pg_tblspc", "pg_twophase", "pg_wal/archive_status", "pg_xact")
INITDB_FILES = ("PG_VERSION", "postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf")


@pytest.mark.parametrize("files", [INITDB_FILES, ()], ids=["in-bootstrap", "before-PG_VERSION"])
def test_a_data_directory_from_an_interrupted_initdb_is_started_afresh(fresh_machine, tmp_path, files):
    for directory in INITDB_SUBDIRECTORIES:
        (fresh_machine.pgdata / directory).mkdir(parents=True)
    for name in files:
        (fresh_machine.pgdata / name).write_text("16\n" if name == "PG_VERSION" else "")

    returncode, stderr = start_one(fresh_machine, tmp_path)
    assert returncode == 0, stderr
    assert stderr.strip().splitlines() == [
        f"pool-lab: {fresh_machine.pgdata} holds what an interrupted start left (no server ever ran on it, "
        f"so it holds no data): initializing it afresh"]
    assert (fresh_machine.pgdata / "postmaster.opts").exists()
    assert stopped(fresh_machine)


def test_a_directory_that_is_not_a_data_directory_is_never_deleted(fresh_machine):
    """EMBEDDED_PGDATA pointed at someone's directory by mistake: the mode stops with one line."""
    fresh_machine.pgdata.mkdir()
    (fresh_machine.pgdata / "thesis.tex").write_text("years of work")
    stderr = start_mode_that_fails(fresh_machine)
    assert stderr.strip().splitlines()[-1] == (
        f"pool-lab: {fresh_machine.pgdata} is not a PostgreSQL data directory (it holds thesis.tex): "
        f"point EMBEDDED_PGDATA at an empty or new directory")
    assert [p.name for p in fresh_machine.pgdata.iterdir()] == ["thesis.tex"]
    assert stopped(fresh_machine)


def test_a_server_that_will_not_start_stops_the_mode_with_one_line(fresh_machine, tmp_path):
    returncode, stderr = start_one(fresh_machine, tmp_path)
    assert returncode == 0, stderr
    # A typo in a hand edit of the configuration.
    with open(fresh_machine.pgdata / "postgresql.conf", "a") as conf:
        conf.write("shared_buffers = lots\n")
    stderr = start_mode_that_fails(fresh_machine)
    pgdata = fresh_machine.pgdata
    assert stderr.strip().splitlines()[-1] == (
        f"pool-lab: the embedded PostgreSQL in {pgdata} did not start: pg_ctl failed: FATAL:  configuration "
        f"file \"{pgdata}/postgresql.conf\" contains errors (the server's log: {pgdata}/log)")
    # The reaper that the mode started before the server sees no holder and leaves.
    assert stopped(fresh_machine)


def hold_and_die(paths):
    """A process that locks `paths` the way the lab and pgserver do, then is killed."""
    code = ("import sys, fasteners\n"
            "locks = [fasteners.InterProcessLock(p) for p in sys.argv[1:]]\n"
            "assert all(lock.acquire(blocking=False) for lock in locks)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, *map(str, paths)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    holder.send_signal(signal.SIGKILL)
    holder.wait()


def test_lock_files_left_by_a_killed_start_are_harmless(fresh_machine, tmp_path):
    runtime = fresh_machine.runtime / "python_PostgresServer"
    fresh_machine.pgdata.mkdir()
    hold_and_die([runtime / START_LOCK_FILE, runtime / ".lockfile", fresh_machine.pgdata / REAPER_LOCK_FILE])
    returncode, stderr = start_one(fresh_machine, tmp_path)
    assert returncode == 0, stderr
    # The reaper's lock file alone would make initdb refuse the data directory.
    assert stderr.strip().splitlines() == [
        f"pool-lab: {fresh_machine.pgdata} holds what an interrupted start left (no server ever ran on it, "
        f"so it holds no data): initializing it afresh"]
    assert stopped(fresh_machine)


def test_a_handle_list_cut_short_by_a_kill_is_reset(fresh_machine, tmp_path):
    returncode, stderr = start_one(fresh_machine, tmp_path / "first")
    assert returncode == 0, stderr
    # pgserver rewrites this list in place: a process killed while writing leaves half of it.
    (fresh_machine.pgdata / HANDLE_PIDS_FILE).write_text("[12")
    returncode, stderr = start_one(fresh_machine, tmp_path)
    assert returncode == 0, stderr
    assert stderr.strip().splitlines() == [
        f"pool-lab: {fresh_machine.pgdata / HANDLE_PIDS_FILE} was cut short ('[12') "
        f"by a process killed while writing it: starting it afresh"]
    assert stopped(fresh_machine)


def test_the_embedded_database_imports_neither_the_app_nor_the_lab():
    code = ("import sys, embedded_pg, embedded_pg.reaper\n"
            "print(sorted({name.split('.')[0] for name in sys.modules} & {'server', 'lab', 'contract'}))")
    probe = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "[]", probe.stderr
