"""The load side of pool-lab: waves, predictions and reports, importable and unit-tested."""
