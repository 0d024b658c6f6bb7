"""`python -m embedded_pg reap PROGRAM DIRECTORY`: the detached reaper (embedded_pg.reaper).

The package's entry point rather than `python -m embedded_pg.reaper`: runpy would import the
package, and through it the reaper module, before running a second copy of that module as __main__.
"""

import sys
from pathlib import Path

from .reaper import REAPERS

if sys.argv[1:2] == ["reap"] and len(sys.argv) == 4:
    REAPERS[sys.argv[2]](Path(sys.argv[3]))
else:
    sys.exit("usage: python -m embedded_pg reap PROGRAM DIRECTORY")
