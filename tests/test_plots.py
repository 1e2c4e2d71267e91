"""Plots: the data handed to matplotlib (clipped, every editor distinguishable) and the files."""

from __future__ import annotations

import pytest

from hf_liveedit.evaluation.metrics import EXACT_MATCH_METRICS
from hf_liveedit.evaluation.report import SCORE_COLUMNS, plot_metrics, plot_series
from trainers.plot import log_scale_series, loss_series, plot_loss_curves


def row(mean: float, std: float | None) -> dict:
    return {"chunks": 2, "t_loc": {"mean": mean, "std": std}}


#: GRACE and LiveEdit both at 100 % T-Loc (the line that used to hide the other); spreads that
#: reach past 0 and 100 %; N listed out of order; an editor without the metric.
SUMMARY = {
    "liveedit": {"name": "LiveEdit", "sizes": {"10": row(1.0, 0.0), "1": row(0.95, 0.10)}},
    "grace": {"name": "GRACE", "sizes": {"1": row(1.0, None), "10": row(1.0, 0.0)}},
    "ft-l": {"name": "FT-L", "sizes": {"1": row(0.03, 0.10), "100": row(0.5, 0.6)}},
    "old": {"name": "OLD", "sizes": {"1": {"chunks": 1}}},
}


def test_error_bars_are_clipped_to_0_100_and_a_missing_std_draws_none():
    liveedit, grace, ft_l = plot_series(SUMMARY, "t_loc")
    assert liveedit.sizes == (1, 10) and liveedit.means == pytest.approx((95.0, 100.0))
    assert liveedit.below == pytest.approx((10.0, 0.0))
    assert liveedit.above == pytest.approx((5.0, 0.0))  # 95 + 10 stops at 100
    assert grace.below == grace.above == (0.0, 0.0)  # std None (one chunk): no bar
    assert ft_l.below == pytest.approx((3.0, 50.0))  # 3 - 10 stops at 0
    assert ft_l.above == pytest.approx((10.0, 50.0))  # 50 + 60 stops at 100
    for series in (liveedit, grace, ft_l):
        tops = [m + a for m, a in zip(series.means, series.above)]
        bottoms = [m - b for m, b in zip(series.means, series.below)]
        assert max(tops) <= 100.0 and min(bottoms) >= 0.0


def test_editors_on_the_same_values_are_drawn_apart():
    liveedit, grace, ft_l = plot_series(SUMMARY, "t_loc")
    assert liveedit.means[1] == grace.means[1] == 100.0
    # shifted apart along N (slightly: within 15 % of N), and unlike in marker, line and colour
    assert liveedit.x[1] != grace.x[1] and all(9 < s.x[-1] < 115 for s in (liveedit, grace))
    assert all(x / n == pytest.approx(liveedit.x[0]) for x, n in zip(liveedit.x, liveedit.sizes))
    for key in ("color", "marker", "linestyle"):
        assert len({s.style[key] for s in (liveedit, grace, ft_l)}) == 3
    # an editor keeps its style and shift in every panel, also where an earlier one is missing
    without_liveedit = {**SUMMARY, "liveedit": {"name": "LiveEdit", "sizes": {"1": {}}}}
    first = plot_series(without_liveedit, "t_loc")[0]
    assert first.name == "GRACE" and (first.style, first.x) == (grace.style, grace.x)


def test_plot_files_are_written(tmp_path):
    plot_metrics(SUMMARY, list(SCORE_COLUMNS), tmp_path / "scores.png")  # most "not measured"
    plot_metrics(SUMMARY, list(EXACT_MATCH_METRICS), tmp_path / "em.png")
    assert all((tmp_path / name).stat().st_size > 10_000 for name in ("scores.png", "em.png"))


HISTORY = [
    {"step": 10, "loss": 2.0, "loss_edit": 1.5, "loss_hr": 0.03, "loss_sr2": 0.0},
    {"step": 20, "loss": 1.0, "loss_edit": 0.8, "loss_hr": 0.0, "loss_sr2": 0.0},
    {"step": 20, "eval_loss": 0.9},  # evaluation entries carry no "loss"
    {"step": 30, "loss": 0.5, "loss_edit": 0.4, "loss_hr": 0.02, "loss_sr2": 0.0},
]


def test_zero_losses_are_raised_to_a_labelled_floor_below_every_positive_value():
    data = log_scale_series(loss_series(HISTORY))
    assert data.floor == pytest.approx(1e-3)  # one decade below 0.02's decade
    assert data.series["loss_hr"] == [(10, 0.03), (20, 1e-3), (30, 0.02)]
    assert data.series["loss"] == [(10, 2.0), (20, 1.0), (30, 0.5)]  # untouched
    assert data.always_zero == ["loss_sr2"] and "loss_sr2" not in data.series
    assert all(v > 0 for points in data.series.values() for _, v in points)
    no_zeros = log_scale_series({"loss": [(1, 0.5), (2, 0.25)]})
    assert no_zeros.floor is None and no_zeros.series == {"loss": [(1, 0.5), (2, 0.25)]}


def test_loss_curve_file_is_written(tmp_path):
    assert plot_loss_curves(HISTORY, tmp_path / "loss.png") == tmp_path / "loss.png"
    assert (tmp_path / "loss.png").stat().st_size > 10_000
    assert plot_loss_curves([{"step": 1, "eval_loss": 1.0}], tmp_path / "none.png") is None
    assert plot_loss_curves([{"step": 1, "loss": 0.0}], tmp_path / "zero.png") is None
