"""The comparison as a picture: completion time against request, where waves are stairs."""

import matplotlib

matplotlib.use("Agg")  # no screen needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .waves import ENDPOINTS  # noqa: E402
# Past this many ideal waves (a serial run of 100), guide lines would only grey the panel.
MAX_GUIDE_LINES = 30


def plot_completions(path, results, sleep):
    """One panel per variant (row) and endpoint (column); a dashed line per ideal wave."""
    rows = len(results)
    top = max((c.at for r in results for done in r.completions.values() for c in done), default=1.0)
    figure, axes = plt.subplots(rows, len(ENDPOINTS), figsize=(11, 2.8 * rows), squeeze=False)
    for row, result in enumerate(results):
        for column, endpoint in enumerate(ENDPOINTS):
            ax = axes[row][column]
            ordered = sorted(result.completions.get(endpoint, []), key=lambda c: c.at)
            done = [c.at for c in ordered]
            summary = result.summary(endpoint)
            if not done:
                ax.set_axis_off()
                continue
            ax.step(range(1, len(done) + 1), done, where="mid", color="tab:blue", marker=".", markersize=3)
            failed = [(i, c.at) for i, c in enumerate(ordered, 1) if c.failure]
            if failed:
                ax.scatter(*zip(*failed), color="tab:red", s=12, zorder=3)
            waves_predicted = len(summary.prediction.wave_sizes) if summary.prediction else 0
            if sleep and waves_predicted <= MAX_GUIDE_LINES:
                # Where each ideal wave would land: measured stairs should sit on these lines.
                for level in range(1, waves_predicted + 1):
                    ax.axhline(level * sleep, color="grey", linestyle=":", linewidth=0.8)
            waves = " ".join(str(w.size) for w in summary.waves)
            ax.set_title(f"{result.measurement.name}: {endpoint} (waves {waves})", fontsize=9, loc="left")
            ax.set_xlabel("request, by completion")
            ax.set_ylabel("completed after (s)")
            # One scale for every panel, so a serial staircase towers over an overlapped one.
            ax.set_ylim(0, top * 1.05)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
