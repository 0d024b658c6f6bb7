"""Bursts as pictures: completion time against request, where waves are stairs, measured over
predicted; for the comparison (a panel per variant and endpoint) and the web UI's Waves tab (one burst)."""

import itertools

import matplotlib

matplotlib.use("Agg")  # no screen needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from contract import ENDPOINTS  # noqa: E402

from . import render  # noqa: E402

# Measured is a wide pale band, predicted a narrow orange dashed line on top: where they agree
# (often exactly) both stay visible, the prediction drawn inside the measured stairs.
MEASURED = {"color": "tab:blue", "linewidth": 5, "alpha": 0.45, "zorder": 2}
PREDICTED = {"color": "tab:orange", "linestyle": (0, (4, 2)), "linewidth": 1.5, "zorder": 3}


def draw_endpoint(ax, title, completions, summary, top):
    """One endpoint's stairs in `ax`: measured, predicted (if any), failed requests; False if nothing was answered."""
    ordered = sorted(completions, key=lambda c: c.at)
    if not ordered:
        ax.set_axis_off()
        return False
    count = range(1, len(ordered) + 1)
    ax.step(count, [c.at for c in ordered], where="mid", label="measured", **MEASURED)
    if summary.prediction:
        # Where each request would be answered if every wave were the predicted one.
        sleep, sizes = summary.prediction.sleep, summary.prediction.wave_sizes
        predicted = [(wave + 1) * sleep for wave, size in enumerate(sizes) for _ in range(size)]
        ax.step(count, list(itertools.islice(predicted, len(ordered))), where="mid", label="predicted", **PREDICTED)
    failed = [(i, c.at) for i, c in enumerate(ordered, 1) if c.failure]
    if failed:
        ax.scatter(*zip(*failed), color="tab:red", s=12, zorder=4, label="failed")
    ax.set_title(f"{title} ({render.waves_phrase(w.size for w in summary.waves)})", fontsize=9, loc="left")
    ax.set_xlabel("requests, in the order they were answered")
    ax.set_ylabel("answered after (s)")
    ax.set_ylim(0, top * 1.05)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return True


def plot_completions(path, results, title):
    """One panel per variant (row) and endpoint (column): measured stairs over the predicted ones."""
    rows = len(results)
    # One scale for every panel, so a serial staircase towers over an overlapped one.
    top = max((c.at for r in results for done in r.completions.values() for c in done), default=1.0)
    figure, axes = plt.subplots(rows, len(ENDPOINTS), figsize=(11, 2.8 * rows + 0.6), squeeze=False)
    figure.suptitle(title)
    for row, result in enumerate(results):
        for column, endpoint in enumerate(ENDPOINTS):
            drawn = draw_endpoint(axes[row][column], f"{result.measurement.name}: {endpoint}",
                                  result.completions.get(endpoint, []), result.summary(endpoint), top)
            if drawn and row == 0 and column == 0:
                axes[row][column].legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_burst(path, title, summaries, completions):
    """One burst, a panel per endpoint (the web UI's Waves tab): measured stairs over the predicted ones."""
    shown = [s for s in summaries if completions.get(s.endpoint)]
    top = max((c.at for s in shown for c in completions[s.endpoint]), default=1.0)
    figure, axes = plt.subplots(1, max(len(shown), 1), figsize=(5.5 * max(len(shown), 1), 3.4), squeeze=False)
    figure.suptitle(title, fontsize=10)
    for column, summary in enumerate(shown):
        draw_endpoint(axes[0][column], summary.endpoint, completions[summary.endpoint], summary, top)
        axes[0][column].legend(fontsize=8, loc="lower right")  # the stairs start at the top left when all overlap
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_probe(path, title, steps, inferences):
    """A probe, a panel per endpoint: throughput (left axis) and median latency (right) against users,
    the inferred limit marked where the throughput flattens."""
    shown = [e for e, done in steps.items() if done]
    figure, axes = plt.subplots(1, max(len(shown), 1), figsize=(5.5 * max(len(shown), 1), 3.6), squeeze=False)
    figure.suptitle(title, fontsize=10)
    for column, endpoint in enumerate(shown):
        ax, done, inference = axes[0][column], steps[endpoint], inferences[endpoint]
        users = [s.users for s in done]
        ax.plot(users, [s.rate for s in done], "o-", color="tab:blue", label="users / mean latency")
        ax.plot(users, [s.throughput_rps for s in done], "x", color="tab:blue", label="answers counted")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("users (closed loop)")
        ax.set_ylabel("answers/s", color="tab:blue")
        latency = ax.twinx()
        latency.plot(users, [s.median_ms if s.median_ms is not None else float("nan") for s in done], "s--",
                     color="tab:orange", label="median latency")
        latency.set_ylabel("median latency (ms)", color="tab:orange")
        if inference.limit is not None:
            ax.axvline(inference.limit, color="tab:red", linestyle=":", linewidth=1.5)
            ax.annotate(f"L = {inference.limit:.1f}", (inference.limit, ax.get_ylim()[1] * 0.95), color="tab:red",
                        fontsize=8, ha="left")
        limit = "" if inference.limit is None else f", limit {inference.limit:.1f}"
        ax.set_title(f"{endpoint}: {inference.shape}{limit}", fontsize=9, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
