"""Loss curves of a LiveEdit training run, drawn from the Trainer's log history."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

LOSS_CURVE_NAME = "loss_curve.png"


def loss_series(log_history: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Collect ``(step, value)`` pairs of the total loss and each ``loss_*`` term.

    Args:
        log_history: ``Trainer.state.log_history``.

    Returns:
        ``{name: [(step, value), ...]}`` for ``loss`` and every logged ``loss_<term>``.
    """
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        if "loss" not in entry:  # evaluation and end-of-training entries
            continue
        for name, value in entry.items():
            if name == "loss" or name.startswith("loss_"):
                series.setdefault(name, []).append((int(entry["step"]), float(value)))
    return series


def plot_loss_curves(log_history: Iterable[Mapping[str, Any]], path: str | Path) -> Path | None:
    """Write a PNG with one line per loss term (log scale); terms that stay 0 are left out.

    Args:
        log_history: ``Trainer.state.log_history``.
        path: the PNG to write.

    Returns:
        The path written, or None when nothing has been logged yet.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    series = {
        name: points
        for name, points in loss_series(log_history).items()
        if any(value > 0 for _, value in points)
    }
    if not series:
        return None
    figure = Figure(figsize=(9, 5.5), layout="constrained")
    axes = figure.subplots()
    for name, points in series.items():
        steps, values = zip(*points)
        total = name == "loss"
        axes.plot(
            steps,
            values,
            label="total" if total else name.removeprefix("loss_"),
            linewidth=2.5 if total else 1.2,
            color="black" if total else None,
        )
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (mean since previous log)")
    axes.set_title("LiveEdit training")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path
