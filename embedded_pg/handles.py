"""pgserver's list of the processes that hold a handle on a data directory, rid of the dead."""

import json

import psutil

# pgserver's own file in the data directory listing the pids holding a handle.
HANDLE_PIDS_FILE = ".handle_pids.json"


def forget_dead(pgdata, log=None):
    """Drop pids of processes that died without releasing their handle; return the live ones.

    pgserver only stops the server when the exiting process is the last one in
    its list; a handle left by a killed process would keep it running forever.
    A list cut short by a process killed while writing it gives None, or, with
    `log` (a start, which then adds itself), is started afresh.
    """
    handles = pgdata / HANDLE_PIDS_FILE
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
