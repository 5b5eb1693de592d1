"""`results/report.html`: every table and figure of a runs directory in one self-contained page.

Written by `bench tables` beside REPORT.md. Every image is embedded (base64 PNG), so the file can be
mailed or attached as it is. It opens with the paper's claims and their verdicts on these results
(`bench.claims`). Per data set: each table preceded by a plot of its measures against f (one line per model
with its 95 % interval, the floor and ceilings as shaded bands), the tables (intervals, marks and control
rows, as in the Markdown), the training curves of every model (from each run's `train_log.csv`), and a gallery that
puts the models side by side, one figure kind per row, all drawn on the same test images (the
evaluators' seed): swaps, conditional generations, traversals, interventions, the variance of
stochastic interventions and the intervention heat-maps.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator, NullLocator
from tabulate import tabulate

from bench import protocol, rundir
from bench.claims import PROTOCOL, VERDICTS, Claim, evaluate_claims, summary, tally
from bench.results import ordered_models, unavailable_notes
from bench.tables import (
    MARKS_EXPLAINED,
    Markup,
    TableSpec,
    dataset_tables,
    display_rows,
    table_spec,
)
from evaluators.controls import ROWS as CONTROL_ROWS

HTML = Markup("<b>{}</b>", "<i>{}</i>", "±", " <small>({})</small>")
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:110em;color:#222;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em;display:block;overflow-x:auto;max-width:100%}
img{max-width:100%}th,td{border:1px solid #ccc;padding:.2em .5em;
text-align:right}th:first-child,td:first-child{text-align:left}tr:nth-child(even){background:#f6f6f6}
figure{display:inline-block;margin:.3em;text-align:center;vertical-align:top}figcaption{font-size:.8em}
img{image-rendering:pixelated;border:1px solid #ddd}img.plot{image-rendering:auto;border:0;max-width:100%;height:auto}
td.holds{background:#d9f2d9}td.fails{background:#f8d7d7}td.undecided{background:#fff3cd}
td.not{background:#eee}td.interim{background:#fff3cd}table.claims td,table.claims th{text-align:left}
.note{color:#555;font-size:.85em}h2{border-top:2px solid #444;
padding-top:.5em}"""


def embedded(png: bytes, width: int | None = None, alt: str = "") -> str:
    size = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def figure_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


CONTROL_COLOURS = {"floor": ("#999999", "#666666"), "ceiling": ("#2e8b57", "#1f77b4", "#8c564b", "#9467bd")}
"""A control row's colour, by its row's first word: one per row in the order they are drawn (none share one)."""


PLOTS_EXPLAINED = ("Plots: a line per model with its 95 % interval shaded, cut where it leaves the view (which "
                   "holds every mean); floor and ceilings dotted, their intervals as bands; the majority baseline "
                   "dashed.")


def control_colours(rows: list[str]) -> dict[str, str]:
    """A colour per control row: the floors greys, the ceilings greens and blues, in turn."""
    seen: dict[str, int] = {}
    chosen = {}
    for row in rows:
        kind = row.split(":")[0]
        palette = CONTROL_COLOURS.get(kind, CONTROL_COLOURS["ceiling"])
        chosen[row] = palette[seen.get(kind, 0) % len(palette)]
        seen[kind] = seen.get(kind, 0) + 1
    return chosen


def value_view(means: pd.Series) -> tuple[float, float]:
    """A panel's vertical range: every mean (models, controls, reference) with a quarter of their spread on each
    side. An interval much wider than the means' spread (two seeds: Student's t with one degree of freedom spans
    12.7 standard errors on each side) runs off the view instead of flattening every line into its middle."""
    low, high = float(means.min()), float(means.max())
    padding = 0.25 * (high - low) or 0.1 * abs(high) or 0.1
    return low - padding, high + padding


def measures_plot(frame: pd.DataFrame, spec: TableSpec) -> bytes | None:
    """One panel per metric of a table: its mean against f for every model, with the 95 % interval shaded (none for
    one seed; cut at the view, `value_view`), the controls (floor, ceilings) and the majority baseline as
    horizontal bands or dashed lines. None when no model has a number to draw."""
    from evaluators import all_metrics

    metrics = [m for m in dict.fromkeys(frame.metric) if frame[(frame.metric == m) & frame["mean"].notna()
                                                              & ~frame.model.isin(CONTROL_ROWS)
                                                              & (frame.model != spec.reference_row)].shape[0]]
    if not metrics:
        return None
    declared = all_metrics()
    models = [m for m in ordered_models(frame.model) if m not in CONTROL_ROWS and m != spec.reference_row]
    colours = {model: plt.get_cmap("tab10")(index % 10) for index, model in enumerate(models)}
    colours |= control_colours([row for row in CONTROL_ROWS if row in set(frame.model)])
    columns = min(3, len(metrics))
    rows_of_panels = -(-len(metrics) // columns)
    figure, axes = plt.subplots(rows_of_panels, columns, figsize=(4.6 * columns, 3.3 * rows_of_panels), squeeze=False)
    for axis in axes.flat[len(metrics):]:
        axis.set_visible(False)
    handles = {}
    for axis, metric in zip(axes.flat, metrics, strict=False):
        rows = frame[frame.metric == metric]
        for model in ordered_models(rows.model):
            line = rows[rows.model == model].sort_values("f")
            if line["mean"].isna().all():
                continue
            if model in CONTROL_ROWS:  # named in the legend: labels beside the lines overprint where rows agree
                handles[model] = axis.axhline(line["mean"].iloc[0], color=colours[model], linestyle=":", linewidth=1.2)
                low, high = line["low"].iloc[0], line["high"].iloc[0]
                if pd.notna(low):
                    axis.axhspan(low, high, color=colours[model], alpha=0.15, linewidth=0)
            elif model == spec.reference_row:
                label = declared[model].label if model in declared else model
                handles[label] = axis.plot(line.f, line["mean"], color="black", linestyle="--", linewidth=1)[0]
            else:
                handles[model] = axis.plot(line.f, line["mean"], marker="o", markersize=3, color=colours[model])[0]
                if line["low"].notna().any():
                    axis.fill_between(line.f, line["low"], line["high"], color=colours[model], alpha=0.15,
                                      linewidth=0)
        metric_declared = declared.get(metric)
        if metric_declared is not None and metric_declared.log_scale:  # as the tables' geometric means
            axis.set_yscale("log")
            axis.set_ylim(*[10**end for end in value_view(rows["mean"].dropna().pipe(lambda v: v[v > 0]).map(
                math.log10))])
        else:
            axis.set_ylim(*value_view(rows["mean"].dropna()))
        axis.set_xscale("log")
        axis.set_xticks(sorted(set(rows.f.dropna())), [f"{f:g}" for f in sorted(set(rows.f.dropna()))])
        axis.xaxis.set_minor_locator(NullLocator())  # the rates are the ticks
        direction = "" if metric_declared is None or metric_declared.higher_is_better is None else \
            (" (higher is better)" if metric_declared.higher_is_better else " (lower is better)")
        axis.set_title((metric_declared.label if metric_declared else metric) + direction, fontsize=9)
        axis.set_xlabel("supervision rate f")
    figure.tight_layout()
    figure.legend(list(handles.values()), list(handles), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                  ncol=min(6, len(handles)), fontsize=8, frameon=False)
    return figure_png(figure)


VERDICT_COLOURS = {"holds": "#2e7d32", "fails": "#c62828", "undecided": "#b8860b", "not at this budget": "#777"}


def forest_png(claim: Claim, rows: pd.DataFrame) -> bytes | None:
    """One claim's measured comparisons as a forest plot: per row its effect (positive: better for the subject) and
    90 % interval, whose ends are the one-sided 95 % bounds the tests use; dotted, the edges the tests read (0 and the
    minimal difference of `better`, −δ of `not_worse`, ±δ of `equivalent`); the colour is the row's verdict."""
    shown = rows[rows.effect.notna()]
    if shown.empty:
        return None
    height = 0.6 + 0.22 * len(shown)
    figure, axis = plt.subplots(figsize=(6.5, height))
    labels = []
    for position, row in enumerate(shown.itertuples()):
        colour = VERDICT_COLOURS.get(row.verdict, "#333")
        y = len(shown) - 1 - position
        if pd.notna(row.low):
            axis.plot([row.low, row.high], [y, y], color=colour, linewidth=1.5)
        axis.plot(row.effect, y, "o", color=colour, markersize=4)
        dataset = "" if len(set(shown.dataset)) == 1 else f"{row.dataset} "
        labels.append(f"{dataset}f={row.f:g}  {row.models}")
    edges = {0.0}
    for part in claim.parts:
        edges |= {"better": {0.0, part.margin}, "not_worse": {-part.margin},
                  "equivalent": {-part.margin, part.margin}}[part.test]
    for edge in edges:
        axis.axvline(edge, color="#444" if edge == 0 else "#999", linestyle=":" if edge else "-", linewidth=0.8)
    axis.set_yticks(range(len(shown)), labels[::-1], fontsize=7)
    axis.set_xlabel("effect (positive: better for the subject; log ratio for a log-scale metric)", fontsize=7)
    axis.tick_params(axis="x", labelsize=7)
    handles = [plt.Line2D([], [], color=colour, marker="o", linestyle="-", label=verdict)
               for verdict, colour in VERDICT_COLOURS.items() if verdict in set(shown.verdict)]
    axis.legend(handles=handles, fontsize=6, loc="best", frameon=False)
    axis.set_title(f"claim {claim.key}: {claim.statement}", fontsize=8)
    return figure_png(figure)


def verdicts_html(results: pd.DataFrame) -> str:
    """The paper's claims and their verdicts on `results` (`bench.claims`), as the report's opening table, then per
    claim a forest plot of its comparisons."""
    rows_all = evaluate_claims(results)
    table = summary(rows_all)
    rows = []
    for claim, (_, line) in zip(protocol.CLAIMS, table.iterrows(), strict=True):
        counts = ", ".join(f"{line[verdict]} {verdict}" for verdict in VERDICTS if line[verdict])
        rows.append(f"<tr><td>{html.escape(claim.key)}</td><td>{html.escape(claim.statement)}</td>"
                    f"<td>{html.escape(claim.source)}</td><td class=\"{line.verdict.split()[0]}\"><b>"
                    f"{html.escape(tally(line))}</b></td><td>{html.escape(counts)}</td></tr>")
    plots = []
    for claim in protocol.CLAIMS:
        png = forest_png(claim, rows_all[rows_all.claim == claim.key])
        if png is not None:
            image = embedded(png, alt=f"claim {claim.key}: its comparisons").replace("<img ", "<img class=plot ", 1)
            plots.append(f"<figure>{image}</figure>")
    return (f"<h2>The paper's claims</h2><p class=note>Each claim tested on these results under protocol "
            f"{PROTOCOL.version} (bench/protocol.py; CLAIMS.md beside this page has every comparison: effect, its "
            "90 % interval whose ends are the one-sided 95 % bounds, p, n and the seeds an undecided one would "
            "need).</p><table class=claims><tr><th>claim</th><th>statement</th><th>source</th><th>verdict</th>"
            "<th>comparisons</th></tr>" + "".join(rows) + "</table>" + "".join(plots))


def table_html(frame: pd.DataFrame, key: str) -> str:
    headers, rows = display_rows(frame, table_spec(key), HTML)
    escaped = [[html.escape(cell) if index == 0 else cell for index, cell in enumerate(row)] for row in rows]
    return tabulate(escaped, headers=[html.escape(header) for header in headers], tablefmt="unsafehtml",
                    disable_numparse=True)


def chosen_runs(runs_root: Path, dataset: str) -> dict[str, tuple[rundir.RunIdentity, Path]]:
    """Per model, the run the gallery and the curves show: the largest f, then the smallest seed."""
    runs: dict[str, tuple[rundir.RunIdentity, Path]] = {}
    for run_dir in rundir.run_directories(runs_root):
        config = rundir.read_identity(run_dir)
        if config.dataset != dataset or not rundir.finished(run_dir):
            continue
        best = runs.get(config.model)
        if best is None or (config.f, -config.seed) > (best[0].f, -best[0].seed):
            runs[config.model] = (config, run_dir)
    return {model: runs[model] for model in ordered_models(runs)}


def gallery_runs(runs_root: Path, dataset: str) -> dict[str, list[tuple[rundir.RunIdentity, Path]]]:
    """Per model, the runs the gallery shows: one per f (the smallest finished seed), in increasing f."""
    found: dict[str, dict[float, tuple[rundir.RunIdentity, Path]]] = {}
    for run_dir in rundir.run_directories(runs_root):
        config = rundir.read_identity(run_dir)
        if config.dataset != dataset or not rundir.finished(run_dir):
            continue
        best = found.setdefault(config.model, {}).get(config.f)
        if best is None or config.seed < best[0].seed:
            found[config.model][config.f] = (config, run_dir)
    return {model: [found[model][f] for f in sorted(found[model])] for model in ordered_models(found)}


def training_curves(runs: dict[str, tuple[rundir.RunIdentity, Path]]) -> bytes | None:
    """Validation accuracy and the labelled and unlabelled losses over optimiser steps, one line per model."""
    logs = {model: pd.read_csv(run_dir / rundir.TRAIN_LOG) for model, (_, run_dir) in runs.items()
            if (run_dir / rundir.TRAIN_LOG).is_file()}
    if not logs:
        return None
    panels = {"valid_accuracy": "validation accuracy", "sup_loss": "loss, labelled batches (−objective)",
              "unsup_loss": "loss, unlabelled batches (−objective)"}
    panels = {column: title for column, title in panels.items()  # none at f = 1: no unlabelled batches
              if any(pd.to_numeric(log[column], errors="coerce").notna().any() for log in logs.values())}
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    by_steps = all("steps" in log.columns for log in logs.values())  # cumulative optimiser steps (older logs: epochs)
    for axis, (column, title) in zip(axes[0], panels.items(), strict=True):
        for model, log in logs.items():
            values = pd.to_numeric(log[column], errors="coerce")
            if values.notna().any():
                axis.plot(log["steps" if by_steps else "epoch"], values, marker="o", markersize=3, label=model)
        axis.set_title(title)
        axis.set_xlabel("optimiser steps" if by_steps else "epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.yaxis.set_major_locator(MaxNLocator(5))  # a loss axis of several ticks, not symlog's one
    axes[0][0].legend(fontsize=8)
    return figure_png(figure)


def gallery_figures() -> dict[str, tuple[str, int]]:
    """Every figure a run may hold: file stem -> (what it shows, width in pixels): the model's image grids
    (`evaluators.figures.FIGURES`), then the figures each evaluator declares it draws, wider."""
    from evaluators import EVALUATORS
    from evaluators.figures import FIGURES

    return {stem: (layout, 200) for stem, layout in FIGURES.items()} | {
        stem: (layout, 300) for evaluator in EVALUATORS.values() for stem, layout in evaluator.figures}


def gallery(runs: dict[str, list[tuple[rundir.RunIdentity, Path]]], label_names: tuple[str, ...]) -> list[str]:
    """Per figure kind, a row per model with its figure at every f (`gallery_runs`)."""
    parts = []
    labels = ", ".join(label_names)
    for name, (layout, width) in gallery_figures().items():
        cells = []
        for model, chosen in runs.items():
            row = []
            for config, run_dir in chosen:
                path = run_dir / rundir.EVAL / rundir.FIGURES / f"{name}.png"
                if path.is_file():
                    caption = f"{model}, f={config.f:g}, seed {config.seed}"
                    image = embedded(path.read_bytes(), width, caption)
                    row.append(f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>")
            cells += [f"<div>{''.join(row)}</div>"] if row else []
        if cells:
            description = layout.format(labels=labels or "in the data set's order",
                                        first=label_names[0] if label_names else "the first label")
            parts += [f"<h4>{name.replace('_', ' ')}</h4><p class=note>{html.escape(description)}</p>", *cells]
    return parts


def html_report(results: pd.DataFrame, runs_root: Path, paper: pd.DataFrame, keys: list[str] | None = None) -> str:
    body = [f"<h1>Results</h1><p class=note>Runs: {html.escape(str(runs_root))} (preset "
            f"{html.escape(', '.join(sorted(set(results.preset))))}).</p>", verdicts_html(results),
            f"<p class=note>{html.escape(f'{MARKS_EXPLAINED} {PLOTS_EXPLAINED}')}</p>"]
    for dataset in sorted(set(results.dataset)):
        body.append(f"<h2>{html.escape(dataset)}</h2>")
        for key, frame in dataset_tables(results, dataset, paper, keys).items():
            spec = table_spec(key)
            body.append(f"<h3>Table {key}: {html.escape(spec.title)}</h3>")
            plot = measures_plot(frame, spec)
            body += [embedded(plot, alt=f"{dataset} table {key} against f").replace("<img ", "<img class=plot ", 1)
                     ] if plot else []
            body += [f"<p class=note>{html.escape(spec.caption)}</p>"] if spec.caption else []
            body.append(table_html(frame, key))
            notes = [note for evaluator in spec.evaluators for note in unavailable_notes(runs_root, dataset, evaluator)]
            body += [f"<p class=note>— for {html.escape(note)}</p>" for note in notes]
        runs = chosen_runs(runs_root, dataset)
        curves = training_curves(runs)
        if curves:
            shown = ", ".join(f"{model} f={config.f:g}" for model, (config, _) in runs.items())
            body += [f"<h3>Training curves</h3><p class=note>{html.escape(shown)}</p>",
                     embedded(curves, alt=f"{dataset} training curves")]
        pictures = gallery(gallery_runs(runs_root, dataset), label_names(runs))
        if pictures:
            body += ["<h3>Gallery</h3><p class=note>Every model at every f (its smallest seed) on the same test images "
                     "(the evaluators' seed).</p>",
                     *pictures]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>CCVAE benchmark results</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def label_names(runs: dict[str, tuple[rundir.RunIdentity, Path]]) -> tuple[str, ...]:
    """The data set's label names, as the interventions evaluator recorded them (empty where none did)."""
    for _, run_dir in runs.values():
        path = run_dir / rundir.EVAL / "interventions.json"
        if path.is_file():
            return tuple(json.loads(path.read_text()).get("labels", ()))
    return ()
