"""Locust's web UI in a real Chromium: a burst with the lab's options, its Waves tab, options that persist."""

import contextlib
import csv
import io
import shutil
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from support import SLEEP
from lab.render import WAVES_TAB
from lab.servers import ROOT, free_port

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium: install Debian's chromium package (apt-get install chromium), "
                             "as .ci/run does; Playwright's own browser download cannot work here")]


@contextlib.contextmanager
def start_form(base, users, host, height=700):
    """Chromium on the web UI's start form at `base`, with the users and the host typed in as a newcomer does."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": height})
            page.goto(base)
            page.fill("input[name=userCount]", str(users))
            page.fill("input[name=host]", host)
            yield page
        finally:
            browser.close()


@pytest.fixture
def web_ui():
    """`locust` as a newcomer starts it: from the project directory, no options but the port."""
    port = free_port()
    before = set((ROOT / "reports").glob("webui*"))
    ui = subprocess.Popen([sys.executable, "-m", "locust", "--web-port", str(port)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline and ui.poll() is None, ui.stdout.read()
            time.sleep(0.2)
    yield ui, f"http://127.0.0.1:{port}", before
    ui.terminate()
    ui.wait(timeout=30)
    for made in set((ROOT / "reports").glob("webui*")) - before:
        made.unlink()


def test_a_burst_in_the_browser_shows_its_waves_and_keeps_its_options(running_mode, web_ui, tmp_path):
    ui, base, before = web_ui
    # locust.conf keeps the web UI on loopback, like every server of the lab.
    assert {c.laddr.ip for c in psutil.Process(ui.pid).net_connections() if c.status == "LISTEN"} == {"127.0.0.1"}
    server = running_mode("green")
    with start_form(base, 10, server.url) as page:
        page.fill("input[name=spawnRate]", "1")  # would delay a burst by 9 s
        page.get_by_text("Custom parameters").click()
        page.select_option("select[name=behaviour]", "burst")
        page.fill("input[name=sleepSeconds]", str(SLEEP))
        page.get_by_role("button", name="Start").click()
        # The burst stops the test by itself once every request is answered.
        page.get_by_text("STOPPED").wait_for(timeout=60_000)
        page.get_by_role("tab", name="Waves").click()
        rows = page.locator("table tbody tr")
        rows.first.wait_for()
        table = [row.locator("td").all_inner_texts() for row in rows.all()]
        page.screenshot(path=tmp_path / "waves-tab.png")
        table = [dict(zip((key for key, _ in WAVES_TAB), cells)) for cells in table]
        assert [(r["endpoint"], r["sent"], r["answered"], r["failed"], r["in_flight"], r["waves"], r["predicted"],
                 r["failures"]) for r in table] == [("python", "5", "5", "0", "0", "5", "5", "none"),
                                                    ("postgres", "5", "5", "0", "0", "5", "5", "none")]
        # The limit inferred from the answers alone, beside the prediction: none below the burst's 5.
        assert all(r["inferred"].startswith("no limit below 5, about") for r in table), table
        # The CPU model beside the ideal: at or a little above it (5 x c), from the mode's calibration.
        assert all(float(r["model_s"]) >= float(r["ideal_s"]) and float(r["model_ratio"]) > 0 for r in table), table

        page.get_by_role("tab", name="Download data").click()
        link = page.get_by_role("link", name="Download the waves CSV of the last burst")
        waves = urllib.request.urlopen(base + "/" + link.get_attribute("href").removeprefix("./")).read().decode()
        assert [(r["endpoint"], r["size"]) for r in csv.DictReader(io.StringIO(waves)) if r["wave"]] == [
            ("python", "5"), ("postgres", "5")]

        page.reload()
        page.get_by_role("button", name="New").click()
        page.get_by_text("Custom parameters").click()
        assert page.input_value("select[name=behaviour]") == "burst"
        assert page.input_value("input[name=sleepSeconds]") == str(SLEEP)
    ui.terminate()
    output = ui.communicate(timeout=30)[0]
    # Everyone spawned at once, whatever the form's ramp-up said.
    assert "Ramping to 10 users at a rate of 10.00 per second" in output
    # Made by this run: a file of an earlier one does not count.
    assert set((ROOT / "reports").glob("webui-green-*_waves.csv")) - before


def test_start_with_only_a_host_runs_a_burst_to_its_waves(running_mode, web_ui):
    """A new user types a host and presses START, leaving the custom parameters folded: a burst."""
    ui, base, before = web_ui
    server = running_mode("green")
    with start_form(base, 4, server.url) as page:
        page.get_by_role("button", name="Start").click()
        page.get_by_text("STOPPED").wait_for(timeout=90_000)
        page.get_by_role("tab", name="Waves").click()
        rows = page.locator("table tbody tr")
        rows.first.wait_for()
        table = [row.locator("td").all_inner_texts() for row in rows.all()]
        assert [(r[0], r[1], r[2]) for r in table] == [("python", "2", "2"), ("postgres", "2", "2")]


def test_the_first_burst_of_a_fresh_mode_shows_its_calibration_then_its_waves(running_mode, web_ui):
    """START answers at once and the page follows the run: the calibration is a step the Waves tab
    shows, then the burst's rows, which run they belong to, the files and the picture; a new run
    clears them. With the other modes running, as after `honcho start`."""
    import json

    ui, base, before = web_ui
    for other in ("sync", "gevent", "green"):
        running_mode(other)
    server = running_mode("fair")
    with start_form(base, 10, server.url, height=900) as page:
        page.get_by_text("Custom parameters").click()
        page.fill("input[name=sleepSeconds]", str(SLEEP))
        page.check("input[name=calibrate]")  # measured now, as for a mode with no calibration cached
        started = time.monotonic()
        page.get_by_role("button", name="Start").click()
        page.get_by_role("tab", name="Waves").click(timeout=3_000)  # the run's page, not the start form
        assert time.monotonic() - started < 3
        seen = []
        while time.monotonic() - started < 90:
            info = json.load(urllib.request.urlopen(f"{base}/waves/info", timeout=10))
            if not seen or seen[-1] != info["status"]:
                seen.append(info["status"])
            if info["status"] == "burst done":
                break
            time.sleep(0.05)
        assert any(status.startswith("calibrating the CPU model: ") for status in seen), seen
        assert seen[-1] == "burst done", seen
        page.get_by_text("STOPPED").wait_for(timeout=10_000)
        run = page.locator("#pool-lab-run")
        run.get_by_text("burst done").wait_for(timeout=5_000)
        text = run.inner_text()
        assert text.startswith(f"pool-lab burst on the fair mode (pool_size 5 + max_overflow 10) at {server.url}, ")
        assert "_waves.csv" in text and "_waves.png" in text and "_result.json" in text
        picture = page.locator("#pool-lab-waves-png")
        picture.wait_for(timeout=5_000)
        page.wait_for_function("document.getElementById('pool-lab-waves-png').naturalWidth > 500")
        assert picture.get_attribute("alt") == "measured and predicted stairs of the last burst, per endpoint"
        rows = [row.locator("td").all_inner_texts() for row in page.locator("table tbody tr").all()]
        assert [(r[0], r[1], r[2]) for r in rows] == [("python", "5", "5"), ("postgres", "5", "5")]

        # A new run: the last burst's rows and picture go, the tab says what this run is.
        page.get_by_role("button", name="New").click()
        page.get_by_text("Custom parameters").click()
        page.select_option("select[name=behaviour]", "steady")
        page.get_by_role("button", name="Start").click()
        page.get_by_role("tab", name="Waves").click()
        page.locator("#pool-lab-run").get_by_text("steady run: waves are measured in burst runs").wait_for(
            timeout=10_000)
        # At the page's next poll of the statistics (every 2 s).
        page.wait_for_function("document.querySelectorAll('table tbody tr').length === 0", timeout=10_000)
        assert page.locator("#pool-lab-waves-png").count() == 0
        page.get_by_role("button", name="Stop").click()


def test_a_probe_in_the_browser_shows_its_steps_verdict_and_picture_in_the_probe_tab(running_mode, web_ui):
    ui, base, before = web_ui
    server = running_mode("threads")
    with start_form(base, 16, server.url, height=900) as page:
        page.get_by_text("Custom parameters").click()
        page.select_option("select[name=behaviour]", "probe")
        page.fill("input[name=sleepSeconds]", str(SLEEP))
        page.fill("input[name=probeSteps]", "1,8,16")
        page.fill("input[name=stepSeconds]", "1")
        page.get_by_role("button", name="Start").click()
        # The probe stops the test by itself after its last step.
        page.get_by_text("STOPPED").wait_for(timeout=90_000)
        page.get_by_role("tab", name="Probe").click()
        run = page.locator("#pool-lab-probe-run")
        run.get_by_text("python: limit 8 at once (hard limit)").wait_for(timeout=10_000)
        text = run.inner_text()
        assert text.startswith(f"pool-lab probe on the threads mode (pool_size 5 + max_overflow 10) at {server.url}, ")
        assert "postgres: limit 8 at once (hard limit)" in text, text
        assert "limit 8: ThreadWorker runs up to 8 requests at once (from /pool; agrees" in text
        assert "_probe.csv" in text and "_probe.png" in text and "_result.json" in text
        page.wait_for_function("document.getElementById('pool-lab-probe-png') && "
                               "document.getElementById('pool-lab-probe-png').naturalWidth > 500", timeout=10_000)
        rows = [row.locator("td").all_inner_texts() for row in page.locator("table tbody tr").all()]
        assert [(r[0], r[1], r[7]) for r in rows] == [(e, n, "none") for e in ("python", "postgres")
                                                      for n in ("1", "8", "16")]
        # The Waves tab has no rows of a probe, and no picture.
        page.get_by_role("tab", name="Waves").click()
        page.wait_for_function("document.querySelectorAll('table tbody tr').length === 0", timeout=5_000)
        # At the page's next tick (every second) the Probe tab's text and picture go.
        page.wait_for_function("!document.getElementById('pool-lab-probe-png') && "
                               "!document.getElementById('pool-lab-probe-run')", timeout=5_000)
        page.get_by_role("tab", name="Download data").click()
        link = page.get_by_role("link", name="Download the probe CSV of the last probe")
        probe_csv = urllib.request.urlopen(base + "/" + link.get_attribute("href").removeprefix("./")).read().decode()
        assert [(r["endpoint"], r["users"]) for r in csv.DictReader(io.StringIO(probe_csv))] == [
            (e, n) for e in ("python", "postgres") for n in ("1", "8", "16")]
