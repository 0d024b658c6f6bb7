"""The load side of pool-lab: waves, predictions and reports, importable and unit-tested."""

from pathlib import Path

# The checkout: its Procfile, profiles and reports; and where the embedded PostgreSQL keeps its data
# unless EMBEDDED_PGDATA says otherwise (for honcho start's modes and the lab's own runs alike).
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PGDATA = ROOT / "var" / "pgdata"
