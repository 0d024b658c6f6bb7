"""Lists of the processes that hold a handle on an embedded server, rid of the dead.

pgserver keeps one in each data directory and writes it itself; the lab keeps one of its own,
in the same form, for the pooler (embedded_pg.pgbouncer), which has none.
"""

import json
import os

import psutil

# pgserver's own file in the data directory listing the pids holding a handle; the pooler's list has the same name.
HANDLE_PIDS_FILE = ".handle_pids.json"


def forget_dead(directory, log=None):
    """Drop pids of processes that died without releasing their handle; return the live ones.

    pgserver only stops the server when the exiting process is the last one in
    its list; a handle left by a killed process would keep it running forever.
    A list cut short by a process killed while writing it gives None, or, with
    `log` (a start, which then adds itself), is started afresh.
    """
    handles = directory / HANDLE_PIDS_FILE
    if not handles.exists():
        return []
    text = handles.read_text()
    try:
        pids = json.loads(text or "[]")
    except ValueError:
        if log is None:
            return None
        log(f"{handles} was cut short ({text!r}) by a process killed while writing it: starting it afresh")
        handles.write_text("[]")
        return []
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
    return alive


def hold(directory, log):
    """Add this process to the list in `directory` (a list the lab keeps; the caller holds its lock)."""
    alive = forget_dead(directory, log)
    if os.getpid() not in alive:
        (directory / HANDLE_PIDS_FILE).write_text(json.dumps([*alive, os.getpid()]))


def release(directory):
    """Take this process off the list in `directory`; return the holders left, or None for a list
    cut short, which may still name live ones (the caller holds its lock)."""
    alive = forget_dead(directory)
    if alive is None:
        return None
    alive = [pid for pid in alive if pid != os.getpid()]
    (directory / HANDLE_PIDS_FILE).write_text(json.dumps(alive))
    return alive
