"""Run directories -> one pandas DataFrame -> the paper's tables as CSV, LaTeX and Markdown.

`gather(runs_root)` reads every finished run (config.json, metrics.json, eval/*.json) into a
long DataFrame with one row per (data set, model, f, seed, evaluation seed, metric). `write_tables` writes, per
data set, every table of `TABLES` that has numbers: rows are models, columns are f (per
metric), cells are the mean over seeds with its 95 % interval and n, marked best or tied by the
test of `bench.stats` (`MARKS_EXPLAINED`). A run evaluated at several evaluation seeds
(`--eval-seeds`) counts once, with the mean of its evaluations; the spread of those evaluations is
shown beside the interval (`eval_sd`, the pooled standard deviation over evaluation seeds). Where
`results/paper.csv` has the paper's number for a cell, the table shows it in a row "<model> (paper)"
beneath ours. `results/REPORT.md` shows
every table and links the figures of every run.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench import rundir
from bench.data import DATASETS
from bench.errors import BenchError
from bench.files import atomic_write_text
from bench.metrics import Metric
from bench.registry import Registry
from bench.results import ordered_models, unavailable_notes
from bench.stats import BEST, TIED, Interval, interval, marks
from evaluators import EVALUATORS, all_metrics
from evaluators.controls import ROWS as CONTROL_ROWS

FLOOR = CONTROL_ROWS[0]  # "floor: does nothing"

SUMMARY_COLUMNS = ["mean", "std", "low", "high", "n"]  # `bench.stats.Interval`'s fields
EVALUATION_COLUMNS = ["eval_sd", "n_eval"]  # the spread of a run's evaluations over evaluation seeds
MARKS_EXPLAINED = ("Cells: the mean over training seeds ± the half-width of its 95 % Student's t interval, and "
                   "n seeds; for a metric on a log scale (condition numbers, Fréchet distances: positive and "
                   "heavy-tailed) the geometric mean and its 95 % interval in brackets. "
                   "Bold: best, separated from every other model of the column by Welch's t-test at 5 %; "
                   "italic: tied, the best mean and the models that test cannot separate from it; no marks in a "
                   "column with a model of fewer than 2 seeds. Where runs were evaluated at several evaluation "
                   "seeds, each run counts with the mean of its evaluations, and \"eval sd\" is the pooled standard "
                   "deviation over evaluation seeds (the evaluators' sampling alone).")
PAPER_COLUMNS = ["table", "dataset", "model", "f", "metric", "value", "source"]


@dataclass(frozen=True)
class TableSpec:
    """One table. Its metrics are every metric its evaluators declare (read from the registry when the
    table is written), unless `only` names some; a table of the trainer's numbers has no evaluators."""

    key: str
    title: str
    evaluators: tuple[str, ...]
    task: str | None = None  # only data sets of this task
    default_datasets: tuple[str, ...] = ("synthfaces",)
    reference_row: str | None = None  # a metric shown as an extra row (the majority baseline)
    caption: str = ""
    only: tuple[str, ...] = ()

    @property
    def metrics(self) -> tuple[str, ...]:
        if self.only:
            return self.only
        return tuple(name for evaluator in self.evaluators for name in EVALUATORS[evaluator].qualified())


TABLES = {spec.key: spec for spec in (
    TableSpec("1", "Classification accuracy, multi-label (paper Table 1)", ("classification",), "multilabel",
              reference_row="majority_accuracy",
              caption="Mean over labels of per-label test accuracy at threshold 0.5."),
    TableSpec("2", "Characteristic swaps: what a's characteristics carried, and what of b's context was kept "
                   "(paper Table 2)", ("swap",),
              caption="|Δ log p| vs a: the paper's mean |log p_oracle(y_a | swap(a, b)) − log p_oracle(y_a | a)| over "
                      "fixed random test pairs (lower is better; 0 for a swap that returns a). |Δ log p| vs â: the "
                      "same against the model's reconstruction â = swap(a, a), without the decoder's blur. Context "
                      "kept: d(s, â) / (d(s, â) + d(s, b̂)) in mean absolute pixel difference (1: s is b's "
                      "reconstruction, nothing carried; 0: s is a's, no context kept). Context kept is not ranked: the "
                      "true swap keeps part of b (the renderer's row), so neither end is best."),
    TableSpec("4", "Generation fidelity (paper Table 4; lower is better)", ("fid",),
              caption="FID: pytorch-fid's Inception (2048 features), generated vs test images; KID: the "
                      "kernel inception distance from the same features (± its std over subsets). The oracle "
                      "Fréchet distance is the same formula in the oracle's feature space, a different number."),
    TableSpec("5", "Conditional generation: oracle accuracy on the requested labels (paper Table 5)",
              ("conditional",)),
    TableSpec("6", "Classification accuracy, multi-class (paper Table 6)", ("classification",), "multiclass",
              ("fashion-mnist",), reference_row="majority_accuracy", caption="Top-1 test accuracy."),
    TableSpec("7", "Mutual information I(y; ω | x) of conditional generations (paper Table 7; lower is better)",
              ("mutual_info",), "multiclass", ("fashion-mnist",),
              caption="The oracle's last layer replaced by a sparse variational GP (200 inducing points); the row "
                      "\"ceiling: real images\" is real test images of the requested classes."),
    TableSpec("C", "Interventions: does setting label i change label i, and only label i? (appendix figures "
                   "10–16)", ("interventions",),
              caption="Flip rate (higher is better): share of intervened images whose oracle decision of label i "
                      "becomes the target. Leakage (lower is better): share of the other labels whose oracle "
                      "decision changes against the model's reconstruction; doing nothing leaks nothing, so read it "
                      "beside the flip rate. Condition number: of the paper's L×L matrix of |Δ log p_oracle(y_j)| "
                      "(lower is better; it cannot tell a do-nothing intervention from a perfect one, and is "
                      "undefined for a singular matrix)."),
    TableSpec("G", "Ground truth on synthfaces: characteristics captured, and each operation against the rendered "
                   "truth (not in the paper)", ("ground_truth",),
              caption="Capture: within-class Spearman correlation of each label's characteristic coordinate with the "
                      "true continuous characteristic (higher is better). Leakage: ridge R² of the context factors "
                      "from the characteristic latents (lower is better). Swap and intervention error: how far "
                      "the factors of the model's result are from those of the rendered true result, as an inverse "
                      "renderer reads them, per factor over the distance between two random test images; the mean "
                      "of what should change and what should not (0: the truth; a swap that returns one of its "
                      "inputs: about 0.5). Reconstruction error: the same for swap(a, a) against a, what the "
                      "model's rendering loses of every factor."),
)}


TRAINER_ACCURACY = TableSpec("A", "Test accuracy beside the majority-class baseline", (),
                             reference_row="majority_accuracy", only=("test_accuracy",))
"""What `run` prints when it finishes: the trainer's own test accuracy (not a paper table)."""


def all_tables() -> dict[str, TableSpec]:
    """The declared tables, then a table of its own, keyed by its name, for each registered evaluator no declared
    table shows (a plug-in's): no evaluator's numbers are left out of the tables and the report. Read at call time,
    so the registries are the only lists there are."""
    shown = {name for spec in TABLES.values() for name in spec.evaluators}
    return Registry("table", TABLES | {name: TableSpec(name, f"Evaluator {name} (in no paper table)", (name,),
                                                       evaluator.tasks[0] if len(evaluator.tasks) == 1 else None)
                                       for name, evaluator in EVALUATORS.items() if name not in shown})


def table_spec(key: str) -> TableSpec:
    return all_tables()[key]


def read_paper(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=PAPER_COLUMNS)
    paper = pd.read_csv(path)
    if list(paper.columns) != PAPER_COLUMNS:
        raise BenchError(f"{path} must have the columns {', '.join(PAPER_COLUMNS)}")
    return paper


def _summaries(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per group of `keys`: its seeds' values (a list: each run's mean over its evaluation seeds), their
    interval (`SUMMARY_COLUMNS`), and the pooled standard deviation over evaluation seeds with their number
    (`EVALUATION_COLUMNS`; NaN and 1 where each run was evaluated once)."""
    runs = frame.groupby([*keys, "seed"])["value"].agg(["mean", "var", "count"]).reset_index()
    grouped = runs.groupby(keys).agg(values=("mean", list), eval_var=("var", "mean"), n_eval=("count", "min"))
    grouped = grouped.reset_index()
    grouped["eval_sd"] = grouped.pop("eval_var").pow(0.5).where(grouped.n_eval > 1)
    metrics = all_metrics()
    logs = [metric in metrics and metrics[metric].log_scale for metric in grouped["metric"]] \
        if "metric" in keys else [False] * len(grouped)
    intervals = pd.DataFrame([asdict(interval(values, log)) for values, log in zip(grouped["values"], logs,
                                                                                   strict=True)],
                             columns=SUMMARY_COLUMNS)
    return pd.concat([grouped[[*keys, "values"]], intervals, grouped[EVALUATION_COLUMNS]], axis=1)


def summarise_cells(results: pd.DataFrame, dataset: str, spec: TableSpec) -> pd.DataFrame:
    """The seeds' values, mean, std, 95 % interval and n of each (model, metric, f) of a table; the controls'
    rows (f = NaN) are summarised once and repeated in every f column."""
    chosen = results[(results.dataset == dataset) & results.metric.isin(spec.metrics)]
    runs, controls = chosen[chosen.f.notna()], chosen[chosen.f.isna()]
    if runs.empty:
        return pd.DataFrame(columns=["model", "metric", "f", "values", *SUMMARY_COLUMNS, *EVALUATION_COLUMNS])
    summary = _summaries(runs, ["model", "metric", "f"])
    if len(controls):
        repeated = _summaries(controls, ["model", "metric"]).merge(pd.DataFrame({"f": sorted(set(summary.f))}),
                                                                 how="cross")
        summary = pd.concat([summary, repeated], ignore_index=True)
    return summary


def eligible_for_marks(results: pd.DataFrame, dataset: str, metric: str) -> set[tuple[str, float]] | None:
    """The (model, f) that may be marked in `metric`'s columns (its `Metric.marked_only_if`); None: every one."""
    condition = all_metrics()[metric].marked_only_if
    if condition is None:
        return None
    gate, threshold = condition
    chosen = results[(results.dataset == dataset) & (results.metric == gate) & results.f.notna()]
    means = chosen.groupby(["model", "f"]).value.mean()
    return {key for key, value in means.items() if value > threshold}


def column_marks(summary: pd.DataFrame, eligible: dict[str, set | None] | None = None) -> pd.Series:
    """"best" / "tied" / "" per row of a summary (`bench.stats.marks` per metric and f). Never marked: the controls,
    an unranked metric, a model `eligible` leaves out of a metric's columns, and a model whose mean is no better than
    the floor's ("does nothing") where the floor has the metric."""
    mark = pd.Series("", index=summary.index, dtype=object)
    metrics = all_metrics()
    floors = summary[summary.model == FLOOR].set_index(["metric", "f"])["mean"]
    for (metric, f), column in summary[~summary.model.isin(CONTROL_ROWS)].groupby(["metric", "f"]):
        direction = metrics[metric].higher_is_better
        if direction is None or not metrics[metric].ranked:
            continue
        allowed = (eligible or {}).get(metric)
        if allowed is not None:
            column = column[[(model, f) in allowed for model in column.model]]
        if (metric, f) in floors.index:  # better than doing nothing, or not marked at all
            floor = floors[(metric, f)]
            column = column[column["mean"] > floor] if direction else column[column["mean"] < floor]
        chosen = dict(zip(column.model, column["values"], strict=True))
        for model, marked in marks(chosen, direction, metrics[metric].log_scale).items():
            mark[column.index[column.model == model]] = marked
    return mark


def table_frame(results: pd.DataFrame, dataset: str, spec: TableSpec, paper: pd.DataFrame) -> pd.DataFrame:
    """The long CSV form of one table: model, metric, f, mean, std, low, high, n, eval_sd, n_eval, mark, paper,
    paper_source."""
    summary = summarise_cells(results, dataset, spec)
    if summary.empty:
        return summary.drop(columns="values")
    summary["mark"] = column_marks(summary, {metric: eligible_for_marks(results, dataset, metric)
                                             for metric in spec.metrics if metric in all_metrics()})
    summary = summary.drop(columns="values")
    quoted = paper[(paper.dataset == dataset) & (paper.table.astype(str) == spec.key)]
    other_data = ""
    if quoted.empty:  # the paper's numbers on its own data set, shown beside ours as other data
        quoted = paper[paper.table.astype(str) == spec.key]
        quoted = quoted[quoted.dataset.isin([name for name, known in DATASETS.items() if known.task == spec.task])]
        other_data = ", ".join(sorted(set(quoted.dataset)))
    quoted = quoted[["model", "metric", "f", "value", "source"]].rename(
        columns={"value": "paper", "source": "paper_source"})
    summary = summary.merge(quoted, on=["model", "metric", "f"], how="left")
    summary["paper_dataset"] = other_data
    if spec.reference_row:
        reference = results[(results.dataset == dataset) & (results.metric == spec.reference_row)]
        reference = reference.drop_duplicates(["f", "seed"])  # the same number for every model
        reference = _summaries(reference, ["f"]).drop(columns="values")
        for metric in spec.metrics[:1]:
            rows = reference.assign(model=spec.reference_row, metric=metric, mark="")
            summary = pd.concat([summary, rows], ignore_index=True)
    summary = summary.merge(labelled_shares(results, dataset), on="f", how="left")
    order = {model: index for index, model in enumerate(ordered_models(summary.model))}
    summary = summary.sort_values(["model", "metric", "f"], key=lambda column: column.map(order)
                                  if column.name == "model" else column, kind="stable")
    return summary.reset_index(drop=True)


LABELLED_COLUMNS = ["n_labelled", "labelled_fraction"]


def labelled_shares(results: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per f, how many training images were labelled and which fraction that is (the median over the runs; NaN
    where the results do not record it), so that a column can say when a minimum labelled count raised f."""
    chosen = results[(results.dataset == dataset) & results.metric.isin(LABELLED_COLUMNS) & results.f.notna()]
    shares = chosen.pivot_table(index="f", columns="metric", values="value", aggfunc="median")
    return shares.reindex(columns=LABELLED_COLUMNS).reset_index()


def f_header(f: float, shares: pd.DataFrame) -> str:
    """"f=0.2", or "f=0.004 (100 labelled, 0.5 %)" where the split labelled more than f of the images."""
    row = shares[shares.f == f]
    if row.empty or row.labelled_fraction.isna().all():
        return f"f={f:g}"
    fraction, count = float(row.labelled_fraction.iloc[0]), float(row.n_labelled.iloc[0])
    if abs(fraction - f) <= 0.01 * f:
        return f"f={f:g}"
    return f"f={f:g} ({count:,.0f} labelled, {100 * fraction:.3g} %)"


def _number(value: float, digits: str) -> str:
    return format(value, digits)


@dataclass(frozen=True)
class Markup:
    best: str  # a format string with {} for the text
    tied: str
    plus_minus: str
    count: str  # a format string with {} for "n=3" (and the evaluation spread, where there is one)


MARKDOWN = Markup("**{}**", "*{}*", "±", " ({})")
LATEX = Markup(r"\textbf{{{}}}", r"\textit{{{}}}", r"$\pm$", r"\,{{\scriptsize ({})}}")


def _cell(row: pd.Series, metric: Metric, markup: Markup) -> str:
    """The mean ± the half-width of its 95 % interval (n ≥ 2; a log-scale metric: the geometric mean and its
    interval in brackets), marked, n, and the evaluation seeds' pooled standard deviation where each run was
    evaluated at several."""
    digits = metric.digits
    text = _number(row["mean"], digits)
    if row["n"] > 1 and metric.log_scale:
        text += f" [{_number(row['low'], digits)}, {_number(row['high'], digits)}]"
    elif row["n"] > 1:
        text += f" {markup.plus_minus} {_number(Interval(**row[SUMMARY_COLUMNS]).half_width, digits)}"
    marked = {BEST: markup.best, TIED: markup.tied}.get(row["mark"], "{}")
    count = f"n={int(row['n'])}"
    if row["n_eval"] > 1:
        count += f"; eval sd {_number(row['eval_sd'], digits)}"
    return marked.format(text) + markup.count.format(count)


def display_rows(frame: pd.DataFrame, spec: TableSpec, markup: Markup) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the wide form: one row per model (+ paper rows), one column per metric × f."""
    metrics = all_metrics()
    columns = [(metric, f) for metric in spec.metrics for f in sorted(set(frame.f))]
    shares = (frame[["f", *LABELLED_COLUMNS]].drop_duplicates("f") if set(LABELLED_COLUMNS) <= set(frame.columns)
              else pd.DataFrame(columns=["f", *LABELLED_COLUMNS]))
    headers = ["model"] + [f"{metrics[metric].label}, {f_header(f, shares)}" if len(spec.metrics) > 1
                           else f_header(f, shares) for metric, f in columns]
    rows = []
    for model in ordered_models(frame.model):
        name = metrics[model].label if model in metrics else model  # the reference row
        ours = frame[frame.model == model].set_index(["metric", "f"])
        rows.append([name] + [_cell(ours.loc[key], metrics[key[0]], markup) if key in ours.index else "—"
                               for key in columns])
        if "paper" in ours and ours["paper"].notna().any():
            other = ours["paper_dataset"].iloc[0] if "paper_dataset" in ours and len(ours) else ""
            label = f"{model} (paper, {other}: other data)" if other else f"{model} (paper)"
            rows.append([label] + [_number(ours.loc[key, "paper"], metrics[key[0]].digits)
                                                if key in ours.index and not pd.isna(ours.loc[key, "paper"])
                                                else "—" for key in columns])
    return headers, rows


def to_markdown(frame: pd.DataFrame, spec: TableSpec) -> str:
    """A GitHub Markdown table (a "|" inside a label, as in |Δ log p|, is escaped so it stays in its cell)."""
    headers, rows = display_rows(frame, spec, MARKDOWN)
    return tabulate([[_markdown_escape(cell) for cell in row] for row in rows],
                    headers=[_markdown_escape(header) for header in headers], tablefmt="github", disable_numparse=True)


def _markdown_escape(text: str) -> str:
    return text.replace("|", r"\|")


LATEX_SYMBOLS = {"\\": r"\textbackslash{}", "|": r"$\vert$", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
                 "{": r"\{", "}": r"\}", "^": r"\^{}", "~": r"\~{}", "±": r"$\pm$", "²": r"$^2$",
                 "×": r"$\times$", "Δ": r"$\Delta$", "ω": r"$\omega$", "σ": r"$\sigma$", "–": "--", "−": "$-$",
                 "≥": r"$\geq$", "≤": r"$\leq$", "→": r"$\to$", "·": r"$\cdot$", "≈": r"$\approx$"}
LATEX_ACCENTS = {"\u0301": "'", "\u0302": "^"}  # combining acute and circumflex (é, â, b̂)


def latex_text(text: str) -> str:
    """`text` as pdflatex reads it: special characters escaped, accents and symbols as LaTeX commands."""
    escaped = "".join(LATEX_SYMBOLS.get(char, char) for char in unicodedata.normalize("NFD", text))
    escaped = re.sub("(.)([\u0301\u0302])", lambda match: rf"\{LATEX_ACCENTS[match[2]]}{{{match[1]}}}", escaped)
    if any(ord(char) > 127 for char in escaped):
        raise BenchError(f"no LaTeX spelling for {sorted({c for c in escaped if ord(c) > 127})} in {text!r}; "
                         "add it to bench.tables.LATEX_SYMBOLS")
    return escaped


LATEX_PACKAGES = ("booktabs", "rotating")  # what the .tex tables need in the preamble (rotating: sidewaystable)
PORTRAIT_CHARACTERS = 80  # a row longer than this (in printed characters) is set sideways, on a page of its own


def to_latex(frame: pd.DataFrame, spec: TableSpec, dataset: str) -> str:
    """A booktabs table a paper can \\input (its first line says which packages it needs): one caption (the title,
    the data set, the table's caption, and n where every cell has the same), label tab:<data set>-<key>, one tabular
    per metric where the table has several (four f columns each, at \\footnotesize, never shrunk), set sideways
    (rotating's sidewaystable) where a row is too long for a portrait page, and the marks explained beneath."""
    runs = frame[~frame.model.isin(CONTROL_ROWS) & (frame.model != spec.reference_row)]
    uniform = runs.n.nunique() == 1 and (runs.n_eval.fillna(1) <= 1).all()  # then n is said once, in the caption
    headers, rows = display_rows(frame, spec, replace(LATEX, count="") if uniform else LATEX)
    caption = f"{spec.title}, {dataset}." + (f" {spec.caption}" if spec.caption else "")
    if uniform:
        caption += f" Every cell: n = {int(runs.n.iloc[0])} training seeds (the control rows: one value)."
    def printed(cell: str) -> int:  # characters on the page, roughly: commands and braces take no room
        return len(re.sub(r"\\[a-z]+|[{}$]|\\,", "", cell)) + 2

    widest = [max(printed(row[column]) for row in [headers, *rows]) for column in range(len(headers))]
    per_table = widest[0] + sum(widest[1:]) // max(1, len(spec.metrics))  # one tabular per metric
    sideways = per_table > PORTRAIT_CHARACTERS
    packages = LATEX_PACKAGES if sideways else LATEX_PACKAGES[:1]
    environment = "sidewaystable" if sideways else "table"
    lines = [f"% needs \\usepackage{{{','.join(packages)}}}", rf"\begin{{{environment}}}" + ("" if sideways else "[t]"),
             r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{3pt}",
             rf"\caption{{{latex_text(caption)}}}", rf"\label{{tab:{dataset}-{spec.key}}}"]
    per_metric = (len(headers) - 1) // max(1, len(spec.metrics)) if len(spec.metrics) > 1 else len(headers) - 1
    metrics = all_metrics()
    for start in range(1, len(headers), per_metric):
        columns = range(start, min(start + per_metric, len(headers)))
        if len(spec.metrics) > 1:
            label = metrics[spec.metrics[(start - 1) // per_metric]].label
            heads = [headers[index].split(", ", 1)[1] if ", " in headers[index] else headers[index]
                     for index in columns]
            lines += [r"\par\smallskip", rf"\textit{{{latex_text(label)}}}\\[2pt]"]
        else:
            heads = [headers[index] for index in columns]
        lines += [rf"\begin{{tabular}}{{l{'r' * len(heads)}}}", r"\toprule",
                  " & ".join(latex_text(header) for header in ["model", *heads]) + r" \\", r"\midrule"]
        lines += [" & ".join([latex_text(row[0]), *(row[index] for index in columns)]) + r" \\" for row in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [r"\par\smallskip", rf"{{\footnotesize {latex_text(MARKS_EXPLAINED)}}}", rf"\end{{{environment}}}"]
    return "\n".join(lines) + "\n"


def dataset_tables(results: pd.DataFrame, dataset: str, paper: pd.DataFrame,
                   keys: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Every table (of `keys`, default all) that has numbers for `dataset`."""
    tables, specs = {}, all_tables()
    for key in keys or list(specs):
        if specs[key].task not in (None, DATASETS[dataset].task):
            continue
        frame = table_frame(results, dataset, specs[key], paper)
        if not frame.empty and frame[frame.model != specs[key].reference_row].shape[0]:
            tables[key] = frame
    return tables


def write_tables(results: pd.DataFrame, runs_root: Path, out: Path, paper_path: Path,
                 keys: list[str] | None = None, figures_from: Path | None = None,
                 notes: dict[str, dict[str, list[str]]] | None = None) -> list[Path]:
    """Write tables/<data set>/table<key>.{csv,tex,md}, results.csv, REPORT.md (linking the figures of the runs
    under `figures_from`: the runs themselves, a stored set's gallery, or None for none) and the paper's claims
    decided on these results (claims.csv, CLAIMS.md) under `out`. The notes under each table come from the runs
    under `runs_root`, or from `notes` (a stored set's, without runs)."""
    from bench.claims import read_levels, write_claims

    paper = read_paper(paper_path)
    written = []
    report = ["# Results", "", f"Runs: `{runs_root}` (preset {', '.join(sorted(set(results.preset)))}); "
              f"{MARKS_EXPLAINED}", ""]
    for dataset in sorted(set(results.dataset)):
        report += [f"## {dataset}", ""]
        for key, frame in dataset_tables(results, dataset, paper, keys).items():
            spec = table_spec(key)
            stem = out / "tables" / dataset / f"table{key}"
            for suffix, text in ((".csv", frame.to_csv(index=False)), (".tex", to_latex(frame, spec, dataset)),
                                 (".md", to_markdown(frame, spec) + "\n")):
                atomic_write_text(stem.with_suffix(suffix), text)
                written.append(stem.with_suffix(suffix))
            report += [f"### Table {key}: {spec.title}", "", *([spec.caption, ""] if spec.caption else []),
                       to_markdown(frame, spec), ""]
            for evaluator in spec.evaluators:
                notes_here = (notes.get(dataset, {}).get(evaluator, []) if notes is not None
                              else unavailable_notes(runs_root, dataset, evaluator))
                report += [f"- — for {note}" for note in notes_here] + ([""] if notes_here else [])
        report += figure_links(figures_from, dataset, out) if figures_from is not None else []
    atomic_write_text(out / "results.csv", results.to_csv(index=False))
    atomic_write_text(out / "REPORT.md", "\n".join(report) + "\n")
    presets = ", ".join(sorted(set(results.preset)))
    write_claims(results, out, f"The paper's claims on the {presets} results of {runs_root}", levels=read_levels())
    return [*written, out / "results.csv", out / "REPORT.md", out / "claims.csv", out / "CLAIMS.md"]


def accuracy_report(results: pd.DataFrame, paper: pd.DataFrame) -> str:
    """Per data set, the trainer's test accuracy beside the majority baseline, as Markdown."""
    blocks = []
    for dataset in sorted(set(results.dataset)):
        frame = table_frame(results, dataset, TRAINER_ACCURACY, paper)
        blocks.append(f"{dataset}: test accuracy beside the majority-class baseline\n"
                      f"{to_markdown(frame, TRAINER_ACCURACY)}")
    return "\n\n".join(blocks)


FIGURES = {"swaps": "S", "traversals": "T", "conditional": "C", "intervention_variance": "V", "interventions": "I"}


def figure_links(runs_root: Path, dataset: str, out: Path) -> list[str]:
    """A model × f grid of links to each run's figures."""
    links: dict[tuple[str, float], str] = {}
    for run_dir in rundir.run_directories(runs_root):
        config = rundir.read_identity(run_dir)
        figures = {path.stem: path for path in (run_dir / rundir.EVAL / rundir.FIGURES).glob("*.png")}
        if config.dataset == dataset and figures:
            cell = " ".join(f"[{short}]({os.path.relpath(figures[name], out)})"
                            for name, short in FIGURES.items() if name in figures)
            links[(config.model, config.f)] = links.get((config.model, config.f), "") + cell + (
                f" (seed {config.seed})" if config.seed else "")
    if not links:
        return []
    fs = sorted({f for _, f in links})
    rows = [[model] + [links.get((model, f), "—") for f in fs] for model in ordered_models({m for m, _ in links})]
    legend = ", ".join(f"{short} {name.replace('_', ' ')}" for name, short in FIGURES.items())
    return [f"### Figures ({dataset})", "", f"{legend}.", "",
            tabulate(rows, headers=["model"] + [f"f={f:g}" for f in fs], tablefmt="github", disable_numparse=True), ""]
