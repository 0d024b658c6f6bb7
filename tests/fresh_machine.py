"""A fresh machine for the lab's first start, without touching the host's users.

As root, pgserver runs PostgreSQL as a `pgserver` system user that the first start creates
with useradd. A test cannot delete the host's user (a PostgreSQL of other tests may be
running as it), so as root it runs its commands in a private mount namespace whose /etc is
a copy without that user: whatever useradd writes stays in the copy. As an ordinary user no
system user is involved, and a fresh machine is a fresh data directory and runtime directory.
"""

import functools
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from embedded_pg import SYSTEM_USER
from lab.servers import BIN_PATH

# Where useradd and groupadd keep a user; every line of the system user goes from the copy.
USER_FILES = ("passwd", "shadow", "group", "gshadow", "subuid", "subgid")
# sh -c SCRIPT ETC_COPY COMMAND...: $0 is the copy, "$@" the command.
IN_PRIVATE_ETC = 'mount --bind "$0" /etc && exec "$@"'


@functools.cache
def namespace_problem():
    """Why commands cannot run with a private /etc here, or None when they can."""
    if os.geteuid() != 0:
        return "not root"
    if Path("/var/run/nscd/socket").exists():
        return "nscd runs: user lookups would bypass the private /etc"
    with tempfile.TemporaryDirectory() as empty:
        try:
            probe = subprocess.run(["unshare", "-m", "sh", "-c", IN_PRIVATE_ETC, empty, "true"],
                                   capture_output=True, text=True, timeout=30)
        except OSError as error:
            return f"unshare: {error}"
    if probe.returncode != 0:
        return f"unshare -m and mount --bind are not permitted here: {probe.stderr.strip()}"
    return None


class FreshMachine:
    """Commands run as on a machine where the lab never ran: no data directory, an empty runtime
    directory (pgserver's lock files live there) and, as root, no `pgserver` user."""

    def __init__(self, root):
        self.root = Path(root)
        self.pgdata = self.root / "pgdata"
        self.runtime = self.root / "runtime"
        # Inherited by every process started here, PostgreSQL included: finds what is left running.
        self.mark = uuid.uuid4().hex
        # Empty, and made as a login makes XDG_RUNTIME_DIR: platformdirs (so pgserver) refuses one
        # that is not 0700 and falls back to a shared one in /tmp.
        self.runtime.mkdir(mode=0o700)
        self.etc = None
        self.problem = namespace_problem()
        if os.geteuid() == 0 and self.problem is None:
            self.etc = self.root / "etc"
            self.etc.mkdir()
            subprocess.run(["cp", "-a", "/etc/.", str(self.etc)], check=True)
            for name in USER_FILES:
                path = self.etc / name
                if path.exists():
                    lines = path.read_text().splitlines(keepends=True)
                    path.write_text("".join(line for line in lines if not line.startswith(f"{SYSTEM_USER}:")))

    def require_private_etc(self):
        """Skip unless the system user can be hidden: as root, in a private mount namespace."""
        if os.geteuid() != 0:
            pytest.skip("runs as an ordinary user: pgserver creates a system user only as root")
        if self.etc is None:
            pytest.skip(f"cannot hide the {SYSTEM_USER} user from the lab: {self.problem}")

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(PATH=BIN_PATH, EMBEDDED_PGDATA=str(self.pgdata), XDG_RUNTIME_DIR=str(self.runtime),
                   POOL_LAB_TEST_MARK=self.mark, **extra)
        return env

    def command(self, argv):
        if self.etc is None:
            return list(argv)
        return ["unshare", "-m", "sh", "-c", IN_PRIVATE_ETC, str(self.etc), *argv]

    def run(self, argv, **kwargs):
        return subprocess.run(self.command(argv), env=self.env(), capture_output=True, text=True,
                              timeout=120, **kwargs)

    def entries(self, name, user=SYSTEM_USER):
        """The lines of the private /etc/`name` for `user`."""
        return [line.split(":") for line in (self.etc / name).read_text().splitlines()
                if line.startswith(f"{user}:")]

    def left_running(self, seconds=30):
        """What still runs once everything started here has had `seconds` to stop."""
        deadline = time.monotonic() + seconds
        while (leftovers := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return leftovers

    def leftovers(self):
        """Processes still running that were started on this machine."""
        found = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            try:
                if process.environ().get("POOL_LAB_TEST_MARK") == self.mark:
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return found
