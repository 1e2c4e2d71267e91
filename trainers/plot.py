"""Loss curves of a LiveEdit training run, drawn from the Trainer's log history."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class LogScaleSeries:
    """Loss series ready for a log-scale plot.

    Attributes:
        series: ``{name: [(step, value), ...]}`` with every value below ``floor`` (zeros: a
            hinge term that is satisfied) raised to ``floor``.
        floor: One decade below the decade of the smallest positive value; ``None`` when no
            value had to be raised.
        always_zero: Terms that are 0 at every logged step (left out of the plot).
    """

    series: dict[str, list[tuple[int, float]]]
    floor: float | None
    always_zero: list[str]


def log_scale_series(series: Mapping[str, list[tuple[int, float]]]) -> LogScaleSeries:
    """Raise zeros to a floor: a log axis would draw them as vertical drops to the bottom.

    Args:
        series: The output of :func:`loss_series`.

    Returns:
        A :class:`LogScaleSeries`.
    """
    kept = {n: p for n, p in series.items() if any(value > 0 for _, value in p)}
    always_zero = sorted(set(series) - set(kept))
    positive = [value for points in kept.values() for _, value in points if value > 0]
    floor = 10.0 ** (math.floor(math.log10(min(positive))) - 1) if positive else None
    if floor is None or all(value >= floor for p in kept.values() for _, value in p):
        return LogScaleSeries(dict(kept), None, always_zero)
    raised = {n: [(step, max(value, floor)) for step, value in p] for n, p in kept.items()}
    return LogScaleSeries(raised, floor, always_zero)


def plot_loss_curves(log_history: Iterable[Mapping[str, Any]], path: str | Path) -> Path | None:
    """Write a PNG with one line per loss term on a log scale.

    Zeros are drawn on a dotted floor line one decade below the smallest positive value, and
    the legend says so; terms that stay 0 are left out and named in the legend.

    Args:
        log_history: ``Trainer.state.log_history``.
        path: the PNG to write.

    Returns:
        The path written, or None when nothing has been logged yet.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    from matplotlib.lines import Line2D

    data = log_scale_series(loss_series(log_history))
    if not data.series:
        return None
    figure = Figure(figsize=(9, 5.5), layout="constrained")
    axes = figure.subplots()
    for name, points in data.series.items():
        steps, values = zip(*points)
        total = name == "loss"
        axes.plot(
            steps,
            values,
            label="total" if total else name.removeprefix("loss_"),
            linewidth=2.5 if total else 1.2,
            color="black" if total else None,
        )
    if data.floor is not None:
        axes.axhline(
            data.floor,
            color="0.5",
            linestyle=":",
            linewidth=1,
            label=f"0 (or < {data.floor:.0e}) drawn at {data.floor:.0e}",
        )
    if data.always_zero:  # a legend line without a mark: these terms are not drawn
        names = ", ".join(name.removeprefix("loss_") for name in data.always_zero)
        axes.add_line(Line2D([], [], linestyle="none", label=f"always 0 (not drawn): {names}"))
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (mean since previous log, log scale)")
    axes.set_title("LiveEdit training")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path
