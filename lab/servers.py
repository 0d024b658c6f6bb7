"""Starting and stopping the lab's modes from their Procfile lines, on free loopback ports."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from honcho.environ import parse_procfile

from . import ROOT

PROCFILE = parse_procfile((ROOT / "Procfile").read_text()).processes
# The Procfile calls `python3` by name: find the one installed beside this Python (it runs Gunicorn).
BIN_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningMode:
    """One running Procfile mode of the lab, at `url`; `process` is None for a mode someone else runs."""
    mode: str
    url: str
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    def get(self, path, timeout=30):
        connection = http.client.HTTPConnection(self.url.removeprefix("http://"), timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def get_json(self, path):
        status, _, body = self.get(path)
        return status, json.loads(body)

    def log(self):
        return self.log_path.read_text() if self.log_path else ""

    def stop(self):
        """SIGTERM the mode's process group, as honcho would, and wait for its graceful exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.ask_to_stop()
        self.wait_stopped()

    def ask_to_stop(self):
        """SIGTERM the process group and return: several modes stop together (see stop_all)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def wait_stopped(self):
        if self.process is None:
            return
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def stop_all(modes):
    """Stop every mode at once: each one's graceful exit takes about a second, which they can spend together."""
    for mode in modes:
        mode.ask_to_stop()
    for mode in modes:
        mode.wait_stopped()


def start_mode(mode, environment, log_path, timeout=60):
    """Run one Procfile process on a free port and wait until every worker of it is ready.

    The port answers as soon as the first worker is up; until the others are, it takes every
    connection, and a burst would measure one worker where the prediction counts them all.
    """
    port = free_port()
    env = {**os.environ, "PATH": BIN_PATH, **environment, f"{mode.upper()}_PORT": str(port)}
    with open(log_path, "w") as log:
        process = subprocess.Popen(PROCFILE[mode], shell=True, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    running = RunningMode(mode, f"http://127.0.0.1:{port}", process, Path(log_path))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{mode} exited with {process.returncode}:\n{running.log()}")
            try:
                status, pool = running.get_json("/pool")
                if status == 200 and running.log().count(f"pool-lab: {mode} ready at") >= pool["workers"]:
                    return running
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{mode} did not answer within {timeout}s:\n{running.log()}")
    except BaseException:
        running.stop()  # Ctrl-C or a failure while it starts: nothing left running
        raise
