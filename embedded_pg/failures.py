"""pgserver's failures told in one line: StartError, and pgserver's get_server that raises it."""

import logging
import subprocess
from pathlib import Path


class StartError(Exception):
    """The embedded server cannot start; the message says why, and what to do, in one line."""


class _PgserverErrors(logging.Handler):
    """Keeps what pgserver logs about a failed command, instead of its many lines on stderr."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.stderr = ""

    def emit(self, record):
        # pgserver's "Failed postgres command" record: (args, kwargs, error, stdout, stderr).
        if isinstance(record.args, tuple) and len(record.args) == 5 and isinstance(record.args[4], str):
            self.stderr = record.args[4]


def _first_error(lines, markers):
    """The first line that reports an error, from its marker on (no log timestamp); what follows
    it is mostly its consequences, such as initdb cleaning up."""
    for line in lines:
        for marker in markers:
            if marker in line:
                return line[line.index(marker):]
    return None


def _why_the_command_failed(stderr):
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return _first_error(lines, ("PANIC:", "FATAL:", "error:")) or (lines[-1] if lines else "")


def _why_the_server_failed(server_log, offset):
    """What this start added to the server's log, in one line: its first error, else all of it
    (PostgreSQL writes errors found before its logging is set up as bare lines)."""
    try:
        with open(server_log, errors="replace") as log:
            log.seek(offset)
            lines = [line.strip() for line in log.read().splitlines() if line.strip()]
    except OSError:
        return ""
    return _first_error(lines, ("PANIC:", "FATAL:")) or " ".join(lines)


def get_server(pgserver, pgdata):
    """pgserver.get_server: a handle on the server of `pgdata`, started if need be; its failures told in one line."""
    logger = logging.getLogger("pgserver")
    errors = _PgserverErrors()
    logger.addHandler(errors)
    propagate, logger.propagate = logger.propagate, False
    server_log = pgdata / "log"
    offset = server_log.stat().st_size if server_log.exists() else 0
    try:
        return pgserver.get_server(pgdata, cleanup_mode="stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        failure = error
        # After a failed pg_ctl pgserver reads the server's log, which fails when pg_ctl never
        # wrote it: pg_ctl's failure is the one to tell.
        if isinstance(error, OSError) and isinstance(error.__context__, subprocess.SubprocessError):
            failure = error.__context__
        prefix = f"the embedded PostgreSQL in {pgdata} did not start"
        if isinstance(failure, subprocess.TimeoutExpired):
            # pgserver gives pg_ctl 10 s to see the server ready.
            message = (f"{prefix}: {Path(failure.cmd[0]).name} saw no ready server within {failure.timeout:.0f} s "
                       f"(the server's log: {server_log})")
        elif isinstance(failure, subprocess.CalledProcessError):
            program = Path(failure.cmd[0]).name
            detail = _why_the_command_failed(errors.stderr) or f"exit status {failure.returncode}"
            if program == "pg_ctl":
                detail = f"{_why_the_server_failed(server_log, offset) or detail} (the server's log: {server_log})"
            message = f"{prefix}: {program} failed: {detail}"
        else:
            message = f"{prefix}: {failure}"
        raise StartError(message) from None
    finally:
        logger.removeHandler(errors)
        logger.propagate = propagate
