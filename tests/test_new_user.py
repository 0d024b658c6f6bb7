"""What a new user trips over (issue 23), repeated on a real Locust run or a real server: each
mistake ends in one `pool-lab:` line that names the fix, and the last good reports stay as they were."""

import subprocess
import sys
import time

import pytest

from lab.servers import ROOT, free_port
from support import SLEEP, run_locust

pytestmark = pytest.mark.slow


def locust(*args, timeout=60):
    """A headless run of the 5-users profile as a user types it, without the suite's extras."""
    return subprocess.run([sys.executable, "-m", "locust", "--config", "profiles/5-users.conf", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def last_good_reports(prefix):
    """Files of an earlier run under `prefix`, which a refused run must leave as they are."""
    made = {}
    for suffix in ("_stats.csv", "_waves.csv", "_requests.csv", ".html"):
        path = prefix.parent / f"{prefix.name}{suffix}"
        path.write_text(f"the last good {suffix}\n")
        made[path] = path.read_text()
    return made


def assert_refused(result, line, reports):
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(line), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "pool-lab burst" not in result.stdout  # nothing was sent
    assert {path: path.read_text() for path in reports} == reports


def test_no_host_says_how_to_give_one(tmp_path):
    prefix = tmp_path / "five"
    reports = last_good_reports(prefix)
    result = locust("--csv", str(prefix), "--html", f"{prefix}.html")
    assert_refused(result, "pool-lab: no host: give the mode's address with -H, such as -H http://127.0.0.1:8003",
                   reports)


def test_a_host_without_its_scheme_says_how_to_write_it(tmp_path):
    prefix = tmp_path / "five"
    reports = last_good_reports(prefix)
    result = locust("-H", "127.0.0.1:8003", "--csv", str(prefix), "--html", f"{prefix}.html")
    assert_refused(result, "pool-lab: -H 127.0.0.1:8003 is not a URL with a scheme: write -H http://127.0.0.1:8003",
                   reports)


def test_a_host_with_no_server_says_how_to_start_one(tmp_path):
    prefix = tmp_path / "five"
    reports = last_good_reports(prefix)
    host = f"http://127.0.0.1:{free_port()}"
    result = locust("-H", host, "--csv", str(prefix), "--html", f"{prefix}.html")
    assert_refused(result, f"pool-lab: no lab server answers at {host} (/pool: [Errno 111] Connection refused); "
                           f"`honcho start` runs every mode", reports)


@pytest.mark.parametrize("option, value, line", [
    ("--sleep-seconds", "abc", "pool-lab: --sleep-seconds must be a number, got 'abc'"),
    ("--idle-wait", "-1", "pool-lab: --idle-wait must be at least 0, got '-1'"),
])
def test_a_bad_value_for_a_lab_option_is_one_line(tmp_path, option, value, line):
    prefix = tmp_path / "five"
    reports = last_good_reports(prefix)
    result = locust("-H", f"http://127.0.0.1:{free_port()}", option, value, "--csv", str(prefix))
    assert_refused(result, line, reports)
    assert result.stderr.strip() == line  # alone: no usage line


def test_a_sleep_above_the_servers_maximum_is_refused_before_sending(running_mode, tmp_path):
    prefix = tmp_path / "five"
    reports = last_good_reports(prefix)
    result = locust("-H", running_mode("green").url, "--sleep-seconds", "100", "--csv", str(prefix))
    assert_refused(result, "pool-lab: --sleep-seconds 100 is above the server's maximum of 60 s (MAX_SLEEP_SECONDS): "
                           "give at most 60, or start the mode with MAX_SLEEP_SECONDS=100", reports)


def test_a_second_run_on_the_same_prefix_names_the_first(running_mode, tmp_path):
    prefix = tmp_path / "five"
    server = running_mode("green")
    first = subprocess.Popen([sys.executable, "-m", "locust", "--config", "profiles/5-users.conf", "-H", server.url,
                              "--sleep-seconds", str(4 * SLEEP), "--csv", str(prefix)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "five_requests.csv").exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        second, _ = run_locust(server.url, prefix)
        assert second.returncode != 0
        assert second.stderr.strip().splitlines()[-1] == (
            f"pool-lab: {prefix} is being written by another run (pid {first.pid}, started at "
            f"{second.stderr.split('started at ')[1][:19]}): wait for it to end, or give this run another prefix "
            f"with --csv"), second.stderr
        output, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output
    assert "Traceback" not in output and "failures: none" in output
    # Once the first run ended, the prefix is free again.
    again, _ = run_locust(server.url, prefix)
    assert again.returncode == 0, again.stderr


def test_a_taken_port_is_one_line_naming_the_variable_that_moves_the_mode(running_mode, database_url):
    import os

    from lab.servers import BIN_PATH, PROCFILE

    server = running_mode("green")
    port = server.url.rsplit(":", 1)[1]
    started = time.monotonic()
    second = subprocess.run(PROCFILE["green"], shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PATH": BIN_PATH, "DATABASE_URL": database_url, "GREEN_PORT": port})
    assert second.returncode != 0
    assert (second.stdout + second.stderr).strip().splitlines() == [
        f"pool-lab: green: 127.0.0.1:{port} is taken (by another honcho start, or another program); stop it, "
        f"or move this mode with GREEN_PORT=..."]
    assert time.monotonic() - started < 5  # before Gunicorn's 5 s of retries
    assert server.get_json("/pool")[0] == 200  # the mode that holds the port serves on


def compare(*args, **env):
    import os

    return subprocess.run([sys.executable, "-m", "lab.compare", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_compare_use_running_with_nothing_running_says_what_to_start(tmp_path):
    ports = {f"{mode.upper()}_PORT": str(free_port()) for mode in ("sync", "gevent", "green")}
    result = compare("--use-running", "--out", str(tmp_path / "compare"), **ports)
    assert result.returncode == 1
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"pool-lab: compare: --use-running, but nothing answers for sync (http://127.0.0.1:{ports['SYNC_PORT']}), "
        f"gevent (http://127.0.0.1:{ports['GEVENT_PORT']}), green (http://127.0.0.1:{ports['GREEN_PORT']}): start "
        f"them with `honcho start`, or leave out --use-running and compare starts its own"]


def test_a_rerun_of_compare_shows_its_own_progress_from_zero(running_mode, tmp_path):
    out = tmp_path / "compare"
    out.mkdir()
    # What the last comparison left: its Locust stats say every request was answered.
    (out / "sync_stats.csv").write_text("Type,Name,Request Count\nGET,/sleep/python/,5\nGET,/sleep/postgres/,5\n")
    port = running_mode("sync").url.rsplit(":", 1)[1]
    result = compare("--use-running", "--modes", "sync", "--sleep-seconds", "0.2", "--out", str(out), SYNC_PORT=port)
    assert result.returncode == 0, result.stderr
    progress = [line.strip() for line in result.stdout.splitlines() if line.startswith("  sync:")]
    assert progress[0] == "sync: python 0/5, postgres 0/5", result.stdout
    assert progress[-1] == "sync: python 5/5, postgres 5/5"
    table = result.stdout[result.stdout.index("variant  python"):result.stdout.index("written:")]
    assert max(len(line) for line in table.splitlines()) <= 120
    legend = table.split("\n\n", 1)[1]
    for column in ("python, postgres, sum:", "ideal:", "/ideal, /model:", "waves:", "failed:"):
        assert legend.count(column) == 1, column  # each column explained once, under the table
    # The plot: the predicted stairs (orange dashes) drawn over the measured ones (a pale blue band), both seen,
    # though on the sync mode they are the same stairs.
    from matplotlib import colors, image

    picture = image.imread(out.parent / "compare.png")[:, :, :3]

    def pixels(colour, tolerance=0.12):
        return int((abs(picture - colors.to_rgb(colour)).max(axis=2) < tolerance).sum())
    assert pixels("tab:orange") > 200
    blended = tuple(0.45 * c + 0.55 for c in colors.to_rgb("tab:blue"))  # the band at alpha 0.45 on white
    assert pixels(blended, 0.06) > 200


def test_zero_second_sleeps_are_a_burst_with_a_verdict(running_mode, tmp_path):
    result, _ = run_locust(running_mode("sync").url, tmp_path / "zero", "5-users", "--sleep-seconds", "0")
    assert result.returncode == 0, result.stderr
    summary = result.stdout
    assert "stopped early" not in summary and "UNEVEN" not in summary
    assert "python: 5 requests" in summary and ", 1 wave of 5" in summary
    assert summary.count("measured/ideal none (0 s sleeps: an ideal of 0 s; the model's ratio is the verdict)") == 2
    import re

    assert len(re.findall(r"; measured/model \d+\.\d\d", summary)) == 2, summary


def test_one_request_and_waves_of_one_size_are_worded_as_counted(running_mode, tmp_path):
    server = running_mode("sync")
    one, _ = run_locust(server.url, tmp_path / "one", "5-users", "PostgresSleepUser", "-u", "1")
    assert one.returncode == 0, one.stderr
    import re

    assert re.search(r"^postgres: 1 request, total [\d.]+ s, 1 wave of 1$", one.stdout, re.MULTILINE), one.stdout
    assert "1 requests" not in one.stdout
    five, _ = run_locust(server.url, tmp_path / "five", "5-users", "PythonSleepUser", "-u", "5")
    assert ", 5 waves of 1" in five.stdout, five.stdout


def test_ctrl_c_stops_early_exits_130_without_a_bare_traceback(running_mode, tmp_path):
    import signal

    prefix = tmp_path / "stopped"
    run = subprocess.Popen([sys.executable, "-m", "locust", "--config", "profiles/5-users.conf", "-H",
                            running_mode("sync").url, "--sleep-seconds", "1", "--csv", str(prefix)],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not (tmp_path / "stopped_requests.csv").exists() or len(
            (tmp_path / "stopped_requests.csv").read_text().splitlines()) < 2:
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert "KeyboardInterrupt" not in err and "Traceback" not in err, err
    assert "pool-lab: interrupted (Ctrl-C): stopping the run" in err
    assert "STOPPED EARLY: 5 sent" in out
    # The lab's summary is the last thing printed, after Locust's own tables.
    assert out.strip().splitlines()[-1] == f"waves: {prefix}_waves.csv"


def test_a_server_still_busy_with_an_interrupted_run_is_named(running_mode, tmp_path):
    import socket

    server = running_mode("gevent")
    host, port = server.url.removeprefix("http://").split(":")
    # What an interrupted run left: a query that blocks the gevent worker (no psycogreen) for 8 s.
    left = socket.create_connection((host, int(port)))
    left.sendall(b"GET /sleep/postgres/?seconds=8 HTTP/1.1\r\nHost: lab\r\n\r\n")
    try:
        time.sleep(0.5)
        result, _ = run_locust(server.url, tmp_path / "busy")
    finally:
        left.close()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"pool-lab: the server at {server.url} took the connection but did not answer /pool within 5 s: it is "
        f"still busy, most likely with the requests of an interrupted run, which it serves to the end; wait for "
        f"them and run again")
    time.sleep(3)  # the blocked query's end, before another test uses the mode


def test_the_summary_is_the_last_thing_a_headless_run_prints(running_mode, tmp_path):
    import subprocess as sp

    # As on a terminal: stdout and stderr in one stream, Locust's tables included.
    both = sp.run([sys.executable, "-m", "locust", "--config", "profiles/5-users.conf", "-H", running_mode("green").url,
                   "--sleep-seconds", str(SLEEP), "--csv", str(tmp_path / "last2")], cwd=ROOT, text=True,
                  stdout=sp.PIPE, stderr=sp.STDOUT, timeout=120).stdout.strip().splitlines()
    assert both[-1] == f"waves: {tmp_path / 'last2'}_waves.csv", both[-20:]
    assert any(line.startswith("Response time percentiles") for line in both)
    assert not any(": pool-lab: " in line for line in both)  # one prefix: Locust's logger name says it


def test_another_client_during_the_burst_is_named_not_the_pool(running_mode, tmp_path):
    server = running_mode("green")
    victim = subprocess.Popen([sys.executable, "-m", "locust", "--config", "profiles/5-users.conf", "-H", server.url,
                               "PostgresSleepUser", "-u", "5", "--sleep-seconds", "6", "--csv", str(tmp_path / "a")],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "a_requests.csv").exists():
            assert time.monotonic() < deadline and victim.poll() is None
            time.sleep(0.05)
        # Another run on another prefix, which does not wait for the pool to be idle.
        other, _ = run_locust(server.url, tmp_path / "b", "5-users", "PostgresSleepUser", "-u", "5",
                              "--sleep-seconds", "4", "--idle-wait", "0")
        output, _ = victim.communicate(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == 0, output
    assert "WARNING: another client held 5 more of the pool's connections during the postgres burst (10 checked out, " \
           "5 of them this burst's)" in output, output


def test_backends_are_counted_for_the_mode_under_test_only(running_mode, tmp_path):
    other = running_mode("sync")
    assert other.get("/sleep/postgres/?seconds=0")[0] == 200  # another mode holds a pooled connection
    result, _ = run_locust(running_mode("green").url, tmp_path / "own", "5-users", "PostgresSleepUser", "-u", "5")
    assert result.returncode == 0, result.stderr
    import re

    line = re.search(r"^PostgreSQL's client backends of the mode at the peak: (\d+), .*; the mode under test's only: "
                     r"(\d+) backends? of other clients left out$", result.stdout, re.MULTILINE)
    assert line, result.stdout
    assert int(line.group(1)) == 5 and int(line.group(2)) >= 1


def test_a_second_honcho_start_says_which_port_is_taken_once(running_mode, database_url):
    import os

    from lab.servers import BIN_PATH

    port = running_mode("green").url.rsplit(":", 1)[1]
    second = subprocess.run([sys.executable, "-m", "honcho", "start", "green", "sync"], cwd=ROOT, capture_output=True,
                            text=True, timeout=90, env={**os.environ, "PATH": BIN_PATH, "DATABASE_URL": database_url,
                                                        "GREEN_PORT": port, "SYNC_PORT": str(free_port())})
    output = second.stdout + second.stderr
    assert second.returncode != 0
    line = (f"pool-lab: green: 127.0.0.1:{port} is taken (by another honcho start, or another program); stop it, "
            f"or move this mode with GREEN_PORT=...")
    assert output.count(line) == 1, output
    assert "Connection in use" not in output and "Traceback" not in output


def test_the_web_ui_checks_its_host_at_start_and_runs_once_it_is_fixed(running_mode, tmp_path):
    import json
    import urllib.parse
    import urllib.request

    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "locust", "--web-port", str(port), "--csv", str(tmp_path / "ui")],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"

    def get(path):
        return json.load(urllib.request.urlopen(f"{base}{path}", timeout=10))

    def start(host):
        form = urllib.parse.urlencode({"user_count": 2, "spawn_rate": 2, "host": host, "behaviour": "burst",
                                       "sleep_seconds": SLEEP}).encode()
        return json.load(urllib.request.urlopen(f"{base}/swarm", data=form, timeout=30))

    def settle(done, timeout=60):
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline
            time.sleep(0.2)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base, timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and ui.poll() is None
                time.sleep(0.2)
        server = running_mode("green")
        for host, line in [
                ("127.0.0.1:8003", "pool-lab: Host 127.0.0.1:8003 is not a URL with a scheme: write Host http://127.0.0.1:8003"),
                (f"http://127.0.0.1:{free_port()}", "pool-lab: no lab server answers at http://127.0.0.1:")]:
            start(host)
            # Until this START's own line: the last START left the state "stopped" already.
            settle(lambda: get("/stats/requests")["state"] == "stopped"
                   and any(line in entry for entry in get("/logs")["master"]))
            assert get("/stats/requests")["stats"][-1]["num_requests"] == 0  # nothing was sent
        start(server.url)
        settle(lambda: (tmp_path / "ui_waves.csv").exists())  # this START's burst was reported
        # Locust's web UI answers /stats/requests from a cache of 2 s or more (locust.web's
        # DEFAULT_CACHE_TIME): right after the burst it may still show the refused START's stopped, empty state.
        seen = []
        settle(lambda: seen.append(get("/stats/requests")) or seen[-1]["state"] == "stopped"
               and seen[-1]["stats"][-1]["num_requests"] != 0, timeout=15)
        assert seen[-1]["stats"][-1]["num_requests"] == 2
    finally:
        ui.terminate()
        ui.wait(timeout=30)
