"""`honcho start` as a newcomer runs it: every mode on one embedded PostgreSQL, crash or not."""

import contextlib
import os
import signal
import subprocess
import time

import psutil
import psycopg2
import pytest

from embedded_pg import pgbouncer
from lab.servers import BIN_PATH, PROCFILE, ROOT, RunningMode, free_port, start_mode

# Real Gunicorn modes, Locust runs or PostgreSQL servers: seconds each.
pytestmark = pytest.mark.slow

MODES = tuple(PROCFILE)


def launch_honcho(pgdata, log_path, machine=None):
    """`honcho start` with every mode on a free port; on `machine` (a FreshMachine) if given."""
    ports = {mode: free_port() for mode in MODES}
    if machine is None:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(PATH=BIN_PATH, EMBEDDED_PGDATA=str(pgdata))
        command = ["honcho", "start"]
    else:
        env, command = machine.env(), machine.command(["honcho", "start"])
    env.update({f"{mode.upper()}_PORT": str(port) for mode, port in ports.items()})
    # As from a terminal: SIGINT at its default, even where CI's shell started us with it ignored.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_path.open("w"),
                               stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    servers = [RunningMode(mode, f"http://127.0.0.1:{port}", process, log_path) for mode, port in ports.items()]
    return process, servers


def start_honcho(pgdata, log_path, machine=None):
    """launch_honcho, then wait until every mode answers."""
    process, servers = launch_honcho(pgdata, log_path, machine)
    deadline = time.monotonic() + 60
    try:
        for server in servers:
            while True:
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                try:
                    if server.get("/pool", timeout=2)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.2)
    except BaseException:
        if process.poll() is None:
            stop_honcho(process)
        raise
    return process, servers


def stop_honcho(process):
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) is not None


def ctrl_c(process):
    """What Ctrl-C in honcho's terminal does: SIGINT to its foreground process group (honcho leads it)."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        return process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def postmaster_running(pgdata):
    return (pgdata / "postmaster.pid").exists()


def pooler_running(pgdata):
    return pgbouncer.running_pid(pgbouncer.pooler_directory(pgdata)) is not None


def stopped_within(pgdata, seconds=15):
    """True once PostgreSQL and the bouncer mode's PgBouncer have stopped: at once when the last
    mode stopped them, or soon after through the reapers when honcho had to kill a mode that was
    slow to stop."""
    deadline = time.monotonic() + seconds
    while postmaster_running(pgdata) or pooler_running(pgdata):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="DATABASE_URL replaces the embedded server")
def test_honcho_runs_every_mode_on_one_embedded_database_that_survives_a_restart(pgdata, tmp_path):
    process, servers = start_honcho(pgdata, tmp_path / "honcho-1.log")
    try:
        pools = {server.mode: server.get_json("/pool")[1] for server in servers}
        assert {name: pool["concurrency"] for name, pool in pools.items()} == {
            "sync": "sync", "gevent": "gevent", "green": "green", "fair": "green", "threads": "threads",
            "psycopg3": "green", "nullpool": "green", "bouncer": "green"}
        assert pools["nullpool"]["pool_class"] == "sqlalchemy.pool.impl.NullPool"
        assert pools["bouncer"]["pool_class"] == "sqlalchemy.pool.impl.NullPool" and pools["bouncer"]["pgbouncer"]
        assert {name: pool["mode"] for name, pool in pools.items()} == {mode: mode for mode in MODES}
        assert pools["fair"]["pool_class"] == "server.pool.FairQueuePool"
        assert pools["psycopg3"]["driver"] == "psycopg" and pools["threads"]["worker_concurrency"] == 8
        for server in servers:
            status, body = server.get_json("/sleep/postgres/?seconds=0")
            assert (status, body["todo_count"]) == (200, 50)
        with psycopg2.connect(host=str(pgdata), user="postgres", dbname="postgres") as connection:
            with connection.cursor() as cursor:
                cursor.execute("UPDATE todo SET title = 'survives a restart' WHERE id = 1")
        connection.close()
    finally:
        stop_honcho(process)
    # The last mode to stop took the embedded server down with it.
    assert stopped_within(pgdata)

    process, servers = start_honcho(pgdata, tmp_path / "honcho-2.log")
    try:
        with psycopg2.connect(host=str(pgdata), user="postgres", dbname="postgres") as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT title FROM todo WHERE id = 1")
                assert cursor.fetchone() == ("survives a restart",)
                cursor.execute("SELECT count(*) FROM todo")
                assert cursor.fetchone() == (50,)
        connection.close()
    finally:
        stop_honcho(process)
    assert stopped_within(pgdata)


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="DATABASE_URL replaces the embedded server")
def test_first_honcho_start_on_a_fresh_machine_serves_every_mode_and_ctrl_c_stops_everything(fresh_machine, tmp_path):
    """The README's `honcho start` on a machine where the lab never ran (as root: no `pgserver` user
    yet, when a private /etc is possible): all four modes start at once, and Ctrl-C stops all."""
    log_path = tmp_path / "honcho.log"
    process, servers = start_honcho(fresh_machine.pgdata, log_path, fresh_machine)
    try:
        for server in servers:
            status, pool = server.get_json("/pool")
            assert (status, pool["mode"]) == (200, server.mode)
            status, body = server.get_json("/sleep/postgres/?seconds=0")
            assert (status, body["todo_count"]) == (200, 50)
    finally:
        returncode = ctrl_c(process)
    assert returncode == 130, log_path.read_text()
    # Nothing left: no Gunicorn, no PostgreSQL, no reaper (the spare reapers give up within 2 s).
    assert fresh_machine.left_running() == []
    assert not postmaster_running(fresh_machine.pgdata)
    if fresh_machine.etc is not None:
        assert len(fresh_machine.entries("passwd")) == 1
    assert "Traceback" not in log_path.read_text()


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="DATABASE_URL replaces the embedded server")
def test_ctrl_c_while_the_first_start_starts_postgres_leaves_nothing_running(fresh_machine, tmp_path):
    """The masters die before they hold the server they are starting, and pg_ctl has detached it
    from them: only the reaper, spawned before the server starts, is left to stop it."""
    log_path = tmp_path / "honcho.log"
    process, _ = launch_honcho(fresh_machine.pgdata, log_path, fresh_machine)
    try:
        deadline = time.monotonic() + 60
        # Written by the server as it starts (initdb's own standalone runs write postmaster.pid too).
        while not (fresh_machine.pgdata / "postmaster.opts").exists():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.01)
    finally:
        returncode = ctrl_c(process)
    assert returncode == 130, log_path.read_text()
    assert fresh_machine.left_running() == []
    assert not postmaster_running(fresh_machine.pgdata)


def test_with_database_url_nothing_embedded_starts(database_url, tmp_path):
    pgdata = tmp_path / "unused-pgdata"
    server = start_mode("green", {"DATABASE_URL": database_url, "EMBEDDED_PGDATA": str(pgdata)},
                        tmp_path / "green.log")
    try:
        assert server.get_json("/sleep/postgres/?seconds=0")[0] == 200
    finally:
        server.stop()
    assert not pgdata.exists()


@pytest.mark.parametrize("mode, environment, line", [
    ("green", {"POOL_SIZE": "lots"}, "pool-lab: POOL_SIZE must be a whole number, got 'lots'"),
    ("green", {"DATABASE_URL": "postgresql://u:pw@h:port/db"},
     "pool-lab: DATABASE_URL is not a valid database URL (expected postgresql://user:password@host:port/dbname)"),
    ("green", {"DRIVER": "psycopg"},
     "pool-lab: PSYCOGREEN=true patches psycopg2 only, not DRIVER=psycopg (psycopg 3 waits through gevent by itself)"),
    ("threads", {"THREADS": "0"}, "pool-lab: THREADS must be at least 1, got 0"),
])
def test_bad_configuration_stops_start_up_with_one_line(mode, environment, line):
    env = {**os.environ, "PATH": BIN_PATH, f"{mode.upper()}_PORT": str(free_port()), **environment}
    result = subprocess.run(PROCFILE[mode], shell=True, cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stdout == "" and result.stderr.strip() == line


@pytest.mark.parametrize("environment, option, cause", [
    ({"PSYCOPG_WAIT_FUNC": "wait_c"}, "", "PSYCOPG_WAIT_FUNC=wait_c waits in C, never through gevent"),
    ({}, " --preload", "psycopg was imported in the master, before the worker's monkey patching (preload_app?)"),
])
def test_psycopg3_refuses_what_would_block_its_gevent_worker(database_url, environment, option, cause):
    env = {**os.environ, "PATH": BIN_PATH, "PSYCOPG3_PORT": str(free_port()), "DATABASE_URL": database_url,
           **environment}
    result = subprocess.run(PROCFILE["psycopg3"] + option, shell=True, cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    # Gunicorn has only logged that it starts: no worker ran, nothing was measured.
    assert result.stderr.strip().splitlines()[-1] == (
        f"pool-lab: DRIVER=psycopg would block the whole gevent worker in every query: {cause}")
    assert "Booting worker" not in result.stderr


def kill_everything(process, pgdata):
    """A crash: SIGKILL honcho, every mode it started, and the embedded PostgreSQL."""
    victims = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    postmaster = (pgdata / "postmaster.pid").read_text().splitlines()[0]
    victims.append(psutil.Process(int(postmaster)))
    for victim in victims:
        # Gone already, such as a spare reaper giving up: nothing to kill.
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.kill()
    psutil.wait_procs(victims, timeout=30)
    process.wait(timeout=30)


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="DATABASE_URL replaces the embedded server")
def test_after_a_crash_the_next_start_is_clean(pgdata, tmp_path):
    process, _ = start_honcho(pgdata, tmp_path / "honcho-1.log")
    kill_everything(process, pgdata)
    # What the crash left: a postmaster.pid and pgserver's list of handles, all dead.
    assert postmaster_running(pgdata)

    process, servers = start_honcho(pgdata, tmp_path / "honcho-2.log")
    try:
        for server in servers:
            status, body = server.get_json("/sleep/postgres/?seconds=0")
            assert (status, body["todo_count"]) == (200, 50)
    finally:
        stop_honcho(process)
    # Stopped cleanly: no PostgreSQL nor reaper left behind, so no stale lock for the start after.
    assert stopped_within(pgdata)
    time.sleep(3)  # the extra reapers give up within 2 s
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(pgdata) in " ".join(p.info["cmdline"] or [])]


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="DATABASE_URL replaces the embedded server")
def test_a_mode_killed_before_it_could_stop_the_database_is_covered_by_the_reaper(pgdata, tmp_path):
    process, _ = start_honcho(pgdata, tmp_path / "honcho.log")
    # What honcho does to a mode still stopping 5 s after Ctrl-C: SIGKILL, so no atexit runs.
    masters = []
    for child in psutil.Process(process.pid).children(recursive=True):
        try:
            if "gunicorn" in " ".join(child.cmdline()):
                masters.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            pass  # an extra reaper that gave up: it waits, a zombie, for its master to reap it
    for master in masters:
        master.kill()
    stop_honcho(process)
    assert stopped_within(pgdata)


def test_a_database_that_refuses_is_named_at_start_up_without_its_password():
    env = {**os.environ, "PATH": BIN_PATH, "GREEN_PORT": str(free_port()),
           "DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/x"}
    result = subprocess.run(PROCFILE["green"], shell=True, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == ('pool-lab: could not prepare the todo table: connection to '
                                                      'server at "127.0.0.1", port 1 failed: Connection refused')
    assert "secret" not in result.stdout + result.stderr


def test_each_mode_says_when_its_worker_is_ready(running_mode):
    server = running_mode("sync")
    assert f"pool-lab: sync ready at {server.url}" in server.log()
