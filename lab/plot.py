"""The comparison as a picture: completion time against request, where waves are stairs."""

import itertools

import matplotlib

matplotlib.use("Agg")  # no screen needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from contract import ENDPOINTS  # noqa: E402

from . import render  # noqa: E402


def plot_completions(path, results, title):
    """One panel per variant (row) and endpoint (column): measured stairs over the predicted ones."""
    rows = len(results)
    top = max((c.at for r in results for done in r.completions.values() for c in done), default=1.0)
    figure, axes = plt.subplots(rows, len(ENDPOINTS), figsize=(11, 2.8 * rows + 0.6), squeeze=False)
    figure.suptitle(title)
    for row, result in enumerate(results):
        for column, endpoint in enumerate(ENDPOINTS):
            ax = axes[row][column]
            ordered = sorted(result.completions.get(endpoint, []), key=lambda c: c.at)
            summary = result.summary(endpoint)
            if not ordered:
                ax.set_axis_off()
                continue
            count = range(1, len(ordered) + 1)
            if summary.prediction:
                # Where each request would be answered if every wave were the predicted one.
                sleep, sizes = summary.prediction.sleep, summary.prediction.wave_sizes
                predicted = [(wave + 1) * sleep for wave, size in enumerate(sizes) for _ in range(size)]
                ax.step(count, list(itertools.islice(predicted, len(ordered))), where="mid", color="grey",
                        linestyle="--", linewidth=1, label="predicted")
            ax.step(count, [c.at for c in ordered], where="mid", color="tab:blue", marker=".", markersize=3,
                    label="measured")
            failed = [(i, c.at) for i, c in enumerate(ordered, 1) if c.failure]
            if failed:
                ax.scatter(*zip(*failed), color="tab:red", s=12, zorder=3, label="failed")
            waves = render.sizes(w.size for w in summary.waves)
            ax.set_title(f"{result.measurement.name}: {endpoint} (waves {waves})", fontsize=9, loc="left")
            ax.set_xlabel("requests, in the order they were answered")
            ax.set_ylabel("answered after (s)")
            # One scale for every panel, so a serial staircase towers over an overlapped one.
            ax.set_ylim(0, top * 1.05)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if row == 0 and column == 0:
                ax.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
