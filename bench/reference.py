"""`python -m bench list [models|datasets|presets|evaluators|tables|claims]`: the registries as Markdown tables.

Read from the registries themselves (`bench.models.MODELS`, `bench.data.DATASETS`, `bench.presets.PRESETS`,
`evaluators.EVALUATORS`, `bench.tables.TABLES`, `bench.claims.CLAIMS`), so they cannot drift from the code;
docs/REFERENCE.md holds all of them, and a test keeps it equal to this module's output.
"""

from __future__ import annotations

from tabulate import tabulate

from bench.registry import Registry


def _table(headers: list[str], rows: list[list]) -> str:
    escaped = [[str(cell).replace("|", r"\|") for cell in row] for row in rows]
    return tabulate(escaped, headers=headers, tablefmt="github", disable_numparse=True)


def models() -> str:
    from bench.models import MODELS

    return _table(["name", "class", "options", "what it is"],
                  [[f"`{name}`", f"`{entry.target}`", ", ".join(f"{k}={v}" for k, v in entry.options.items()) or "—",
                    entry.summary] for name, entry in MODELS.items()])


def datasets() -> str:
    from bench.data import DATASETS

    def grid(chosen) -> str:
        return ("yes" if chosen.found is None else "where found") if chosen.in_default_grid else "no"

    return _table(["name", "task", "labels", "sizes", "options (defaults)", "needs --data-root", "in run --all",
                   "how to get it"],
                  [[f"`{chosen.name}`", chosen.task, chosen.labels, "/".join(map(str, chosen.image_sizes)),
                    ", ".join(f"{key}={value}" for key, value in chosen.options.items()) or "—",
                    "yes" if chosen.needs_root else "no", grid(chosen), chosen.obtain]
                   for chosen in DATASETS.values()])


def presets() -> str:
    from bench.presets import PRESETS
    from evaluators import EVALUATORS

    rows = []
    for chosen in PRESETS.values():
        per_model = "".join(f", {model} {count}" for model, count in chosen.model_epochs.items())
        epochs = (f"{chosen.optimiser_steps:,} steps" if chosen.optimiser_steps is not None else
                  f"{chosen.epochs} epochs{per_model}")
        budgets = {name: chosen.budget_for(evaluator) for name, evaluator in EVALUATORS.items()}
        samples = ", ".join(f"{name} {budget.samples}" for name, budget in budgets.items() if budget is not None)
        rows.append([f"`{chosen.name}`", chosen.train_limit or "all", epochs, chosen.batch_size, f"{chosen.lr:g}",
                     chosen.labelled_share if chosen.labelled_share is not None else "—", samples,
                     chosen.oracle.steps, chosen.description])
    return _table(["preset", "training images", "length", "batch", "lr", "labelled share",
                   "evaluators' samples (their budgets)", "oracle steps", "what it is for"], rows)


def evaluators() -> str:
    from evaluators import EVALUATORS

    rows = []
    for evaluator in EVALUATORS.values():
        for metric in evaluator.metrics:
            direction = {True: "higher", False: "lower", None: "reference"}[metric.higher_is_better]
            default = f"{evaluator.budget.samples} {evaluator.count[1]}" if evaluator.budget is not None else "—"
            rows.append([f"`{evaluator.name}`", f"`{evaluator.name}.{metric.key}`", metric.label, direction,
                         metric.scale, default, metric.why])
    return _table(["evaluator", "metric (results.csv)", "label", "better", "scale", "default budget",
                   "regression tolerance: why"], rows)


def tables() -> str:
    from bench.tables import all_tables

    return _table(["table", "title", "metrics", "data sets"],
                  [[spec.key, spec.title, ", ".join(f"`{metric}`" for metric in spec.metrics),
                    spec.task or "any"] for spec in all_tables().values()])


def claims() -> str:
    from bench.protocol import CLAIMS

    return _table(["claim", "statement", "source", "tests"],
                  [[claim.key, claim.statement, claim.source, "; ".join(part.describe for part in claim.parts)]
                   for claim in CLAIMS])


LISTS = Registry("list", {"models": models, "datasets": datasets, "presets": presets, "evaluators": evaluators,
                          "tables": tables, "claims": claims})


def listing(name: str | None = None) -> str:
    """One registry as a Markdown table, or all of them (docs/REFERENCE.md) when `name` is None."""
    if name is not None:
        return LISTS[name]()
    parts = ["# Reference", "", "The registries of the suite, as `python -m bench list` prints them (this page is its "
             "output, kept current by `tests/test_registries.py`).", ""]
    for key, function in LISTS.items():
        parts += [f"## {key.capitalize()}", "", function(), ""]
    return "\n".join(parts)
