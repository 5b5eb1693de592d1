"""`results/report.html`: every table and figure of a runs directory in one self-contained page.

Written by `bench tables` beside REPORT.md. Every image is embedded (base64 PNG), so the file can be
mailed or attached as it is. Per data set: the tables (intervals, marks and control rows, as in the
Markdown), the training curves of every model (from each run's `train_log.csv`), and a gallery that
puts the models side by side, one figure kind per row, all drawn on the same test images (the
evaluators' seed): swaps, conditional generations, traversals, interventions, the variance of
stochastic interventions and the intervention heat-maps.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from tabulate import tabulate

from bench.config import RunConfig
from bench.tables import (
    MARKS_EXPLAINED,
    TABLES,
    Markup,
    dataset_tables,
    display_rows,
    ordered_models,
    run_directories,
    unavailable_notes,
)

HTML = Markup("<b>{}</b>", "<i>{}</i>", "±", " <small>({})</small>")
GALLERY = {  # figure file -> what it shows (the rows and columns of the grid)
    "swaps": "each row: characteristics of a, context of b, the swap",
    "conditional": "each row: 8 generations for the labels of one test image",
    "traversals": "one row per label ({labels}), the first test image",
    "interventions_grid": "each row: a test image, then each label flipped in turn ({labels})",
    "intervention_variance": "top: 8 test images; bottom: per-pixel variance of 16 stochastic interventions on "
                             "{first}",
    "interventions": "the oracle's |Δ log p| of each label when each label is intervened on",
}
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:110em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em}th,td{border:1px solid #ccc;padding:.2em .5em;
text-align:right}th:first-child,td:first-child{text-align:left}tr:nth-child(even){background:#f6f6f6}
figure{display:inline-block;margin:.3em;text-align:center;vertical-align:top}figcaption{font-size:.8em}
img{image-rendering:pixelated;border:1px solid #ddd}.note{color:#555;font-size:.85em}h2{border-top:2px solid #444;
padding-top:.5em}"""


def embedded(png: bytes, width: int | None = None, alt: str = "") -> str:
    size = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def figure_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def table_html(frame: pd.DataFrame, key: str) -> str:
    headers, rows = display_rows(frame, TABLES[key], HTML)
    escaped = [[html.escape(cell) if index == 0 else cell for index, cell in enumerate(row)] for row in rows]
    return tabulate(escaped, headers=[html.escape(header) for header in headers], tablefmt="unsafehtml",
                    disable_numparse=True)


def chosen_runs(runs_root: Path, dataset: str) -> dict[str, tuple[RunConfig, Path]]:
    """Per model, the run the gallery and the curves show: the largest f, then the smallest seed."""
    runs: dict[str, tuple[RunConfig, Path]] = {}
    for run_dir in run_directories(runs_root):
        config = RunConfig.from_json((run_dir / "config.json").read_text())
        if config.dataset != dataset or not (run_dir / "metrics.json").is_file():
            continue
        best = runs.get(config.model)
        if best is None or (config.f, -config.seed) > (best[0].f, -best[0].seed):
            runs[config.model] = (config, run_dir)
    return {model: runs[model] for model in ordered_models(runs)}


def training_curves(runs: dict[str, tuple[RunConfig, Path]]) -> bytes | None:
    """Validation accuracy and the labelled and unlabelled losses over epochs, one line per model."""
    logs = {model: pd.read_csv(run_dir / "train_log.csv") for model, (_, run_dir) in runs.items()
            if (run_dir / "train_log.csv").is_file()}
    if not logs:
        return None
    figure, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for model, log in logs.items():
        for axis, column in zip(axes, ("valid_accuracy", "sup_loss", "unsup_loss"), strict=True):
            values = pd.to_numeric(log[column], errors="coerce")
            if values.notna().any():
                axis.plot(log["epoch"], values, marker="o", label=model)
    for axis, title in zip(axes, ("validation accuracy", "loss, labelled batches (−objective)",
                                  "loss, unlabelled batches (−objective)"), strict=True):
        axis.set_title(title)
        axis.set_xlabel("epoch")
    axes[1].set_yscale("symlog")
    axes[2].set_yscale("symlog")
    axes[0].legend(fontsize=8)
    return figure_png(figure)


def gallery(runs: dict[str, tuple[RunConfig, Path]], label_names: tuple[str, ...]) -> list[str]:
    parts = []
    labels = ", ".join(label_names)
    for name, layout in GALLERY.items():
        cells = []
        for model, (config, run_dir) in runs.items():
            path = run_dir / "eval" / "figures" / f"{name}.png"
            if path.is_file():
                caption = f"{model}, f={config.f:g}, seed {config.seed}"
                image = embedded(path.read_bytes(), 300 if name == "interventions" else 200, caption)
                cells.append(f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>")
        if cells:
            description = layout.format(labels=labels or "in the data set's order",
                                        first=label_names[0] if label_names else "the first label")
            parts += [f"<h4>{name.replace('_', ' ')}</h4><p class=note>{html.escape(description)}</p>", *cells]
    return parts


def html_report(results: pd.DataFrame, runs_root: Path, paper: pd.DataFrame, keys: list[str] | None = None) -> str:
    body = [f"<h1>Results</h1><p class=note>Runs: {html.escape(str(runs_root))} (preset "
            f"{html.escape(', '.join(sorted(set(results.preset))))}). {html.escape(MARKS_EXPLAINED)}</p>"]
    for dataset in sorted(set(results.dataset)):
        body.append(f"<h2>{html.escape(dataset)}</h2>")
        for key, frame in dataset_tables(results, dataset, paper, keys).items():
            spec = TABLES[key]
            body.append(f"<h3>Table {key}: {html.escape(spec.title)}</h3>")
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
        pictures = gallery(runs, label_names(runs))
        if pictures:
            body += ["<h3>Gallery</h3><p class=note>Every model on the same test images (the evaluators' seed).</p>",
                     *pictures]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>CCVAE benchmark results</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def label_names(runs: dict[str, tuple[RunConfig, Path]]) -> tuple[str, ...]:
    """The data set's label names, as the interventions evaluator recorded them (empty where none did)."""
    for _, run_dir in runs.values():
        path = run_dir / "eval" / "interventions.json"
        if path.is_file():
            return tuple(json.loads(path.read_text()).get("labels", ()))
    return ()
