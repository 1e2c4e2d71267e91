"""Aggregate chunk results into ``summary.json``, a Markdown table and plots.

Everything is generated from ``chunks.jsonl`` (and ``run.json`` for the run's date and exact
command), so the published table can be rebuilt with one command at any time, also from a
partial run.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_liveedit.evaluation.metrics import (
    EXACT_MATCH_METRICS,
    METRIC_NAMES,
    METRICS,
    PAPER_METRICS,
    mean,
    std,
)
from hf_liveedit.evaluation.protocol import read_chunks

SUMMARY_NAME = "summary.json"
TABLE_NAME = "results.md"
PLOT_NAME = "metrics_vs_edits.png"
EXACT_MATCH_PLOT_NAME = "exact_match_vs_edits.png"
#: Teacher-forced columns of tables and plots: the papers' five, their ``avg``, then N-Loc.
SCORE_COLUMNS: tuple[str, ...] = (
    *PAPER_METRICS,
    "avg",
    *(metric for metric in METRICS if metric not in PAPER_METRICS),
)


def aggregate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over chunks, per editor, N and metric.

    ``avg`` is the mean of the papers' five teacher-forced metrics' means (the papers' average;
    N-Loc is not part of it, so that it stays comparable with published tables and older runs).

    Args:
        chunks: chunk results (see :func:`hf_liveedit.evaluation.protocol.run_editor`).

    Returns:
        ``{editor_key: {"name": ..., "sizes": {N: {"chunks", "edits", "scored", metric:
        {"mean", "std"}}}}}``, N as strings (JSON keys), editors in order of appearance.
    """
    grouped: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    names: dict[str, str] = {}
    for chunk in chunks:
        grouped[chunk["editor"]][chunk["num_edits"]].append(chunk)
        names[chunk["editor"]] = chunk.get("name", chunk["editor"])
    summary: dict[str, Any] = {}
    for key, sizes in grouped.items():
        entry: dict[str, Any] = {}
        for size in sorted(sizes):
            runs = sizes[size]
            row: dict[str, Any] = {
                "chunks": len(runs),
                "edits": sum(len(run["edited"]) for run in runs),
                "scored": sum(len(run["scored"]) for run in runs),
                "seconds": round(sum(run["edit_seconds"] + run["score_seconds"] for run in runs)),
                "edit_seconds": sum(run["edit_seconds"] for run in runs),
                "score_seconds": sum(run["score_seconds"] for run in runs),
            }
            for metric in METRICS + EXACT_MATCH_METRICS:
                values = [run["metrics"][metric] for run in runs if metric in run["metrics"]]
                if values:
                    row[metric] = {"mean": mean(values), "std": std(values)}
            present = [row[metric]["mean"] for metric in PAPER_METRICS if metric in row]
            if len(present) == len(PAPER_METRICS):
                row["avg"] = {"mean": mean(present), "std": None}
            entry[str(size)] = row
        summary[key] = {"name": names[key], "sizes": entry}
    return summary


#: Routing diagnostics shown in the report (LiveEdit with ``--diagnostics``), with headers.
DIAGNOSTIC_COLUMNS: dict[str, str] = {
    "rel_recall": "Rel own kept",
    "t_gen_recall": "T-Gen own kept",
    "m_gen_recall": "M-Gen own kept",
    "rel_precision": "Rel precision",
    "m_gen_precision": "M-Gen precision",
    "rel_own_weight": "Rel own w",
    "rel_other_weight": "Rel other w",
    "m_gen_own_weight": "M-Gen own w",
    "m_gen_other_weight": "M-Gen other w",
    "m_loc_any_kept": "M-Loc any kept",
    "m_loc_weight": "M-Loc w",
    "t_loc_any_kept": "T-Loc any kept",
    "n_loc_any_kept": "N-Loc any kept",
    "n_loc_weight": "N-Loc w",
    "edit_took": "edits took",
}


def diagnostics_table(chunks: list[dict[str, Any]]) -> str | None:
    """Mean routing diagnostics per editor and N (percent), or None when no chunk has any."""
    grouped: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
    names: dict[str, str] = {}
    for chunk in chunks:
        if chunk.get("diagnostics"):
            grouped[(chunk["editor"], chunk["num_edits"])].append(chunk["diagnostics"])
            names[chunk["editor"]] = chunk.get("name", chunk["editor"])
    if not grouped:
        return None
    header = ["editor", "N", "chunks", *DIAGNOSTIC_COLUMNS.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (key, size), runs in sorted(grouped.items(), key=lambda item: item[0]):
        cells = [names[key], str(size), str(len(runs))]
        for column in DIAGNOSTIC_COLUMNS:
            values = [run[column] for run in runs if column in run]
            cells.append(f"{100 * mean(values):.1f}" if values else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def by_source_table(chunks: list[dict[str, Any]]) -> str | None:
    """M-Gen per picture source and editor / N: the metric over the scored records of that
    source and, with diagnostics, the routing (count-weighted over chunks); None without sources.
    """
    scores: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    routing: dict[tuple[str, int, str], list[tuple[int, float, float]]] = defaultdict(list)
    names: dict[str, str] = {}
    for chunk in chunks:
        names[chunk["editor"]] = chunk.get("name", chunk["editor"])
        for record in chunk.get("records", []):
            if record.get("m_gen_source") and record.get("m_gen") is not None:
                key = (chunk["editor"], chunk["num_edits"], record["m_gen_source"])
                scores[key].append(record["m_gen"])
        by_source = (chunk.get("diagnostics") or {}).get("m_gen_by_source", {})
        for source, stat in by_source.items():
            key = (chunk["editor"], chunk["num_edits"], source)
            routing[key].append((stat["count"], stat["recall"], stat["own_weight"]))
    if not scores:
        return None
    header = ["editor", "N", "M-Gen picture source", "records", "M-Gen", "own kept", "own w"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in sorted(scores):
        editor, size, source = key
        cells = [names[editor], str(size), source, str(len(scores[key]))]
        cells.append(f"{100 * mean(scores[key]):.1f}")
        counted = routing.get(key)
        if counted:
            total = sum(count for count, _, _ in counted)
            for column in (1, 2):
                cells.append(f"{100 * sum(c[0] * c[column] for c in counted) / total:.1f}")
        else:
            cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: dict[str, Any] | None) -> str:
    if value is None:
        return "-"
    text = f"{100 * value['mean']:.2f}"
    return text if not value.get("std") else f"{text} ± {100 * value['std']:.2f}"


def markdown_table(summary: dict[str, Any], exact_match: bool = True) -> str:
    """The summary as a Markdown table: one row per editor and N, metrics in percent (mean ± std).

    A metric an editor and N lack (e.g. N-Loc in older results, or on data without neighbours)
    shows as ``-``.
    """
    columns = list(SCORE_COLUMNS) + (list(EXACT_MATCH_METRICS) if exact_match else [])
    header = ["editor", "N", "chunks"] + [METRIC_NAMES.get(c, c) for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in summary.values():
        for size, row in entry["sizes"].items():
            cells = [entry["name"], size, str(row["chunks"])]
            cells += [_cell(row.get(column)) for column in columns]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cost_table(summary: dict[str, Any]) -> str:
    """Wall time per edit and per scored record (reference passes included), per editor and N."""
    header = ["editor", "N", "edits", "s per edit", "scored", "s per scored record"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in summary.values():
        for size, row in entry["sizes"].items():
            if "edit_seconds" not in row:  # summaries written before timings were kept
                continue
            per_edit = row["edit_seconds"] / max(row["edits"], 1)
            per_record = row["score_seconds"] / max(row["scored"], 1)
            cells = [entry["name"], size, str(row["edits"]), f"{per_edit:.2f}"]
            cells += [str(row["scored"]), f"{per_record:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: What each panel's y axis measures, in percent (the panel title gives the metric's name).
Y_LABELS: dict[str, str] = {
    **dict.fromkeys(("rel", "t_gen", "m_gen"), "target-token accuracy"),
    **dict.fromkeys(("t_loc", "m_loc", "n_loc"), "tokens as unedited"),
    "avg": "mean of Rel ... M-Loc",
    **dict.fromkeys(("rel_em", "t_gen_em", "m_gen_em"), "exact match"),
    "n_loc_same": "answer as unedited",
}
#: Per editor (in order of appearance): marker and line style, besides the colour, so that
#: lines on top of each other (e.g. two editors at 100 % locality) both stay visible.
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")
#: Horizontal shift between neighbouring editors, in decades of N (a factor of about 1.07).
DODGE_DECADES = 0.03
BAR_LABEL = "±1 std over chunks (clipped to 0-100 %)"
PLOT_CAPTION = (
    "Mean over chunks; bars: ±1 std over chunks, clipped to 0-100 % (none where N has one chunk)."
)
DODGE_CAPTION = (
    " Editors are shifted slightly left/right of their N so that equal scores stay visible."
)


@dataclass(frozen=True)
class PlotSeries:
    """One editor's line in one panel, ready for ``Axes.errorbar`` (values in percent).

    Attributes:
        name: The editor's display name.
        sizes: The numbers of stored edits N.
        x: ``sizes`` shifted by the editor's dodge (for drawing only).
        means: Mean over chunks.
        below: Error-bar length below the mean (``mean - max(0, mean - std)``).
        above: Error-bar length above the mean (``min(100, mean + std) - mean``).
        style: ``color``, ``marker`` and ``linestyle`` of the editor.
    """

    name: str
    sizes: tuple[int, ...]
    x: tuple[float, ...]
    means: tuple[float, ...]
    below: tuple[float, ...]
    above: tuple[float, ...]
    style: dict[str, str]


def plot_series(summary: dict[str, Any], metric: str) -> list[PlotSeries]:
    """The data a metric's panel draws: per editor, means and error bars clipped to 0-100 %.

    Editors keep their colour, marker, line style and shift in every panel (they are numbered
    in order of appearance in ``summary``), also where another editor lacks the metric.

    Args:
        summary: The output of :func:`aggregate`.
        metric: A key of the summary rows (e.g. ``"t_loc"``).

    Returns:
        One :class:`PlotSeries` per editor that has the metric at some N.
    """
    middle = (len(summary) - 1) / 2
    series = []
    for number, entry in enumerate(summary.values()):
        points = sorted(
            (int(size), 100 * row[metric]["mean"], 100 * (row[metric]["std"] or 0.0))
            for size, row in entry["sizes"].items()
            if metric in row
        )
        if not points:
            continue
        sizes, means, spreads = zip(*points)
        shift = 10 ** ((number - middle) * DODGE_DECADES)
        series.append(
            PlotSeries(
                name=entry["name"],
                sizes=sizes,
                x=tuple(size * shift for size in sizes),
                means=means,
                below=tuple(m - max(0.0, m - s) for m, s in zip(means, spreads)),
                above=tuple(min(100.0, m + s) - m for m, s in zip(means, spreads)),
                style={
                    "color": f"C{number % 10}",
                    "marker": MARKERS[number % len(MARKERS)],
                    "linestyle": LINESTYLES[number % len(LINESTYLES)],
                },
            )
        )
    return series


def plot_metrics(summary: dict[str, Any], metrics: list[str], path: Path) -> None:
    """One panel per metric: mean and ±1 std bars against the number of stored edits N.

    Bars are drawn per point (a band between N = 1 and 10 would suggest values in between);
    see :func:`plot_series` for the data. A metric no editor has (e.g. N-Loc in older results)
    gets an empty panel saying so. One legend, outside the panels, names every editor and the
    bars; the caption under the figure says how to read them.

    Args:
        summary: The output of :func:`aggregate`.
        metrics: The metrics to draw, one panel each.
        path: The PNG to write.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    columns = min(3, len(metrics))
    rows = -(-len(metrics) // columns)
    figure = Figure(figsize=(4.4 * columns + 2.2, 3.5 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    all_sizes = sorted({int(size) for e in summary.values() for size in e["sizes"]})
    handles: dict[str, Any] = {}
    for axis, metric in zip(axes.flat, metrics):
        panel = plot_series(summary, metric)
        if not panel:
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
        for series in panel:
            drawn = axis.errorbar(
                series.x,
                series.means,
                yerr=[series.below, series.above],
                capsize=2.5,
                elinewidth=0.9,
                markersize=7,
                markeredgecolor="white",  # overlapping markers stay apart
                markeredgewidth=0.5,
                label=series.name,
                **series.style,
            )
            handles.setdefault(series.name, drawn)
        axis.set_xscale("log")
        axis.set_xticks(all_sizes, [f"{size:,}" for size in all_sizes])
        axis.xaxis.set_minor_locator(NullLocator())
        if all_sizes:
            axis.set_xlim(all_sizes[0] / 10**0.3, all_sizes[-1] * 10**0.3)
        axis.set_ylim(-3, 103)
        axis.set_title(METRIC_NAMES.get(metric, metric))
        axis.set_xlabel("stored edits N (log scale)")
        axis.set_ylabel(f"{METRIC_NAMES.get(metric, metric)}: {Y_LABELS.get(metric, 'score')} (%)")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.axis("off")
    if handles:
        bar = Line2D([], [], color="0.4", marker="|", markersize=12, linestyle="none")
        figure.legend(
            [*handles.values(), bar],
            [*handles, BAR_LABEL],
            loc="outside right upper",
            fontsize=8,
        )
    figure.supxlabel(PLOT_CAPTION + (DODGE_CAPTION if len(summary) > 1 else ""), fontsize=8)
    figure.savefig(path, dpi=110)


def write_report(
    results_dir: str | os.PathLike[str], report_command: str | None = None
) -> dict[str, Path]:
    """Write ``summary.json``, ``results.md`` and the plots of a results folder.

    Args:
        results_dir: folder holding ``chunks.jsonl`` (and ``run.json`` from the run).
        report_command: the command that made this report, recorded in ``results.md``.

    Returns:
        Name -> path of each file written.
    """
    directory = Path(results_dir)
    chunks = read_chunks(directory / "chunks.jsonl")
    if not chunks:
        raise FileNotFoundError(f"no chunk results in {directory / 'chunks.jsonl'}")
    run_path = directory / "run.json"
    run = json.loads(run_path.read_text()) if run_path.is_file() else {}
    summary = aggregate(chunks)
    paths = {"summary": directory / SUMMARY_NAME, "table": directory / TABLE_NAME}
    paths["summary"].write_text(json.dumps({"run": run, "results": summary}, indent=1) + "\n")
    with_em = any(
        metric in row
        for e in summary.values()
        for row in e["sizes"].values()
        for metric in EXACT_MATCH_METRICS
    )
    paths["plot"] = directory / PLOT_NAME
    plot_metrics(summary, list(SCORE_COLUMNS), paths["plot"])
    if with_em:
        paths["exact_match_plot"] = directory / EXACT_MATCH_PLOT_NAME
        plot_metrics(summary, list(EXACT_MATCH_METRICS), paths["exact_match_plot"])
    page = _markdown_page(run, summary, with_em, report_command)
    page += (
        "\n## Cost\n\nWall time in this run (one machine, editors one after another): per edit "
        "(applying it, sequentially), and per scored record (the unedited model's reference "
        "passes and the edited model's scoring, exact match included when on).\n\n"
        + cost_table(summary)
    )
    diagnostics = diagnostics_table(chunks)
    if diagnostics:
        page += (
            "\n## Routing diagnostics\n\nPercent, mean over chunks. *own kept*: the record's own "
            "expert passes the hard filter (recall); *precision*: own expert / experts kept; "
            "*own w* / *other w*: soft weight on the own expert / on all others; *any kept*: a "
            "locality sample keeps at least one expert; *M-Loc w* / *N-Loc w*: the total weight "
            "the chunk's experts get (N-Loc: the record's question on a neighbour's image, an "
            "entity of the same relation not edited in the chunk); *edits took* (verified edits "
            "only): the greedy answer on the edit input was the target once the edit was "
            "added.\n\n" + diagnostics
        )
    by_source = by_source_table(chunks)
    if by_source:
        page += (
            "\n## M-Gen by picture source\n\nThe M-Gen metric (percent) over the scored records "
            "whose other picture comes from each source, and (with diagnostics) how often their "
            "own expert is kept and its mean weight. Another rendering of a flag (CIA factbook, "
            "flagpy, emoji) and a region map are different tasks for the router.\n\n" + by_source
        )
    paths["table"].write_text(page)
    return paths


def _markdown_page(
    run: dict[str, Any], summary: dict[str, Any], with_em: bool, report_command: str | None
) -> str:
    lines = ["# Lifelong editing results", ""]
    runs = [*run.get("previous_runs", []), run] if run else []
    for number, part in enumerate(runs, 1):
        lines += [
            f"- run {number}: started {part.get('started_at', '?')}, finished "
            f"{part.get('finished_at', '- (in progress or interrupted)')}",
            f"  - command: `{part.get('command', '?')}`",
            f"  - backbone: {part.get('backbone', '?')}; data: {part.get('data', '?')} "
            f"({part.get('num_records', '?')} records, order: {part.get('order', '?')}); "
            f"LiveEdit adapter: {part.get('adapter') or '-'}",
        ]
        for key, plan in part.get("plans", {}).items():
            chunks = plan.get("max_chunks") or "all"
            lines.append(
                f"  - plan `{key}`: N in {plan['sizes']}, max chunks per N {chunks}, "
                f"most scored records per chunk {plan.get('score_limit') or 'all'}"
            )
    if report_command:
        lines.append(f"- report: `{report_command}`")
    timings = ", ".join(
        f"{entry['name']} {sum(row['seconds'] for row in entry['sizes'].values()) / 60:.1f} min"
        for entry in summary.values()
    )
    lines.append(f"- time in edits + scoring (from the chunk timings): {timings}")
    lines += [
        "",
        "Scores in percent, mean ± standard deviation over chunks (no ± with one chunk). "
        "Rel / T-Gen / M-Gen: teacher-forced token accuracy on the target; T-Loc / M-Loc: "
        "agreement with the unedited model's argmax tokens; avg: mean of those five; N-Loc: "
        "the same agreement when the record's question is asked on a neighbour's image (an "
        "entity of the same relation not edited in the chunk; not in avg; - where not measured)"
        + (
            "; EM: greedy-generation exact match; N-Loc same: the neighbour's greedy answer is "
            "the unedited model's."
            if with_em
            else "."
        ),
        "",
        markdown_table(summary, with_em),
        f"![metrics vs number of edits]({PLOT_NAME})",
    ]
    if with_em:
        lines.append(f"![exact match vs number of edits]({EXACT_MATCH_PLOT_NAME})")
    return "\n".join(lines) + "\n"
