"""One home per concept: a metric, a model, a data set and a preset are each declared in one place, and
everything else reads them from there; a forgotten step is an error, not a silent drop."""

from __future__ import annotations

import ast
import configparser
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import evaluators
from bench import check, tables
from bench import results as bench_results
from bench.cli import main
from bench.data import DATASETS, dataset_options, default_datasets
from bench.errors import BenchError
from bench.evaluate import checked
from bench.metrics import Metric, Tolerance
from bench.models import MODELS, ModelEntry, default_models
from bench.nets import SUPPORTED_SIZES
from bench.perf import evaluation, timing
from bench.presets import PRESETS, preset
from evaluators import swap

NEW_METRIC = Metric("sharpness", "sharpness", True, Tolerance(0.5), "a made-up metric for this test")


@pytest.fixture
def swap_with_a_new_metric(monkeypatch):
    """The swap evaluator's declaration with one more metric and another count unit: the only change made."""
    declared = replace(swap.EVALUATOR, metrics=(*swap.EVALUATOR.metrics, NEW_METRIC), count=("pairs", "swapped pairs"))
    monkeypatch.setitem(evaluators.EVALUATORS, "swap", declared)
    return declared


def test_a_metric_declared_in_its_evaluator_reaches_the_tables_the_check_and_perf(swap_with_a_new_metric, tmp_path):
    assert "swap.sharpness" in evaluators.all_metrics()
    assert "swap.sharpness" in tables.TABLES["2"].metrics  # Table 2 shows every metric of the swap evaluator
    assert check.default_tolerances()["swap.sharpness"] == Tolerance(0.5)
    run_dir = tmp_path / "runs" / "synthfaces" / "ccvae" / "f=0.06" / "seed=0"
    (run_dir / "eval").mkdir(parents=True)
    from bench.config import make_config

    (run_dir / "config.json").write_text(make_config("ccvae", "synthfaces", 0.06, 0, "smoke").to_json())
    (run_dir / "metrics.json").write_text(json.dumps({"test_accuracy": 0.8, "majority_accuracy": 0.6}))
    (run_dir / "eval" / "swap.json").write_text(json.dumps({"score": 0.1, "sharpness": 0.7, "pairs": 10}))
    results = bench_results.gather(tmp_path / "runs")
    assert set(results.metric) == {"test_accuracy", "majority_accuracy", "swap.score", "swap.sharpness"}
    markdown = tables.to_markdown(tables.table_frame(results, "synthfaces", tables.TABLES["2"],
                                                     tables.read_paper(tmp_path / "none.csv")), tables.TABLES["2"])
    assert "sharpness, f=0.06" in markdown and "0.700" in markdown
    settings = timing.PerfSettings(image_size=32, eval_samples=4)
    (row,) = evaluation.evaluator_rates(torch.device("cpu"), settings, ["swap"])
    assert row["unit"] == "swapped pairs" and row["images_per_s"] > 0


def test_an_evaluator_result_with_an_undeclared_key_or_a_silent_nan_is_an_error():
    good = {"score": 0.1, "score_vs_reconstruction": 0.2, "context_kept": 0.7, "pairs": 3}
    assert checked(swap.EVALUATOR, good) == good
    assert checked(swap.EVALUATOR, {"unavailable": "cannot swap"}) == {"unavailable": "cannot swap"}
    with pytest.raises(BenchError, match=r"undeclared key 'sharpness'.*evaluators/swap\.py"):
        checked(swap.EVALUATOR, {**good, "sharpness": 0.7})
    with pytest.raises(BenchError, match=r"'score' is nan"):
        checked(swap.EVALUATOR, {**good, "score": float("nan")})
    with pytest.raises(BenchError, match=r"'context_kept' is inf"):
        checked(swap.EVALUATOR, {**good, "context_kept": float("inf")})
    with pytest.raises(BenchError, match=r"'score' missing without a 'score_unavailable' reason"):
        checked(swap.EVALUATOR, {**good, "score": None})
    assert checked(swap.EVALUATOR, {**good, "score": None, "score_unavailable": "why"})["score"] is None


def test_every_evaluator_declares_distinct_metrics_with_a_reason_for_each_tolerance():
    for name, evaluator in evaluators.EVALUATORS.items():
        assert evaluator.name == name and evaluator.metrics
        keys = [metric.key for metric in evaluator.metrics] + list(evaluator.details)
        assert len(keys) == len(set(keys)), name
        assert evaluator.count[0] in keys
        assert all(metric.why for metric in evaluator.metrics)
    covered = {name for spec in tables.TABLES.values() for name in spec.metrics}
    # every metric is shown but the trainer's own (`run`'s accuracy table shows them)
    assert set(evaluators.all_metrics()) - covered == {"test_accuracy", "majority_accuracy", "optimiser_steps",
                                                            "n_labelled", "labelled_fraction"}


def test_a_model_registered_only_in_the_registry_joins_the_default_grid(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(MODELS, "broken", ModelEntry("tests.models:BrokenVAE"))
    assert main(["run", "--all", "--dry-run", "--preset", "smoke", "--runs", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "synthfaces/broken/f=0.06/seed=0" in listed
    assert all(f"synthfaces/{model}/f=1/seed=0" in listed for model in default_models())
    assert bench_results.ordered_models(["broken", "ccvae", "zeta"]) == ["ccvae", "broken", "zeta"]


def test_every_data_set_is_loadable_at_sizes_the_networks_support_and_listed(capsys):
    for name, entry in DATASETS.items():
        assert entry.name == name and set(entry.image_sizes) <= set(SUPPORTED_SIZES), name
        assert entry.image_size(dataset_options(name)) == entry.image_sizes[0]
    with pytest.raises(BenchError, match="image_size 48 is not supported; use one of 64, 32"):
        dataset_options("synthfaces", {"image_size": 48})
    assert default_datasets()[0] == "synthfaces"
    assert main(["data", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in DATASETS) and "needs --data-root" in listed


def test_a_preset_owns_every_budget_and_an_unknown_one_is_one_line_everywhere(capsys):
    for name, chosen in PRESETS.items():
        assert chosen.name == name and chosen.oracle.steps > 0 and preset(name) is chosen
        assert set(chosen.budgets) == {key for key, evaluator in evaluators.EVALUATORS.items()
                                       if evaluator.budget is not None}
    swap_samples = [preset(name).budgets["swap"].samples for name in ("smoke", "ci", "quick", "paper")]
    assert swap_samples == sorted(set(swap_samples))
    steps = [preset(name).oracle.steps for name in ("smoke", "ci", "quick", "paper")]
    assert steps == sorted(set(steps))
    with pytest.raises(BenchError, match="unknown preset 'huge'"):
        preset("huge")
    for command in (["run", "--all"], ["train", "--model", "ccvae"], ["tables"], ["check"], ["oracle", "--dataset",
                    "synthfaces"], ["reproduce", "--table", "2"]):
        assert main([*command, "--preset", "huge"]) == 2
        error = capsys.readouterr().err.strip()
        assert "invalid choice: 'huge'" in error and len(error.splitlines()) == 1, command


def test_tox_has_a_reproduce_environment_for_every_table():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(Path(__file__).resolve().parents[1] / "tox.ini")
    (section,) = [name for name in tox.sections() if name.startswith("testenv:reproduce-table")]
    assert section == f"testenv:reproduce-table{{{','.join(tables.TABLES)}}}"
    assert all(f"table{key}: python -m bench reproduce --table {key}" in tox[section]["commands"]
               for key in tables.TABLES)


ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports (absolute names), at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_dependency_rules_of_architecture_md_hold():
    """Models never import the trainer, the sweep or the evaluators; evaluators never import a model."""
    model_files = {ROOT / (MODELS[name].target.partition(":")[0].replace(".", "/") + ".py") for name in MODELS}
    model_files.add(ROOT / "bench" / "characteristic.py")
    harness = {"bench.train", "bench.sweep", "bench.evaluate", "bench.tables", "bench.check", "bench.cli",
               "bench.perf", "bench.models", "bench.presets"}
    for path in model_files:
        imports = imported_modules(path)
        assert not {name for name in imports if name in harness or name.split(".")[0] == "evaluators"}, path
    models = {MODELS[name].target.partition(":")[0] for name in MODELS} | {"bench.characteristic", "bench.models",
                                                                           "bench.train"}
    for path in (ROOT / "evaluators").glob("*.py"):
        imports = imported_modules(path)
        assert not {name for name in imports if name in models or name.split(".")[0] == "baselines"}, path


def test_ci_runs_the_readmes_set_up_and_test_commands_as_written():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    set_up, test = commands[0], next(command for command in commands if command.endswith("tox -e test"))
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert set_up.replace("pip install tox", "pip install -q tox") in ci and test in ci


def test_the_docs_reference_page_is_the_registries_as_bench_list_prints_them():
    from bench.reference import LISTS, listing

    assert (ROOT / "docs" / "REFERENCE.md").read_text() == listing() + "\n", \
        "docs/REFERENCE.md is stale: python -m bench list > docs/REFERENCE.md"
    for name in LISTS:
        assert listing(name) in listing()


def test_the_readmes_verdict_table_is_the_stored_sets_claims():
    """The README's table of the paper's claims is what `bench claims` decided on the stored sets it names."""
    import pandas as pd

    from bench.claims import summary, tally
    from bench.protocol import CLAIMS

    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- verdicts -->", 2)[1]
    header = [cell.strip() for cell in table.strip().splitlines()[0].strip("|").split("|")]
    stored = [column.split("`")[1] for column in header if column.startswith("`")]  # the sets, e.g. `quick`
    assert stored, header
    verdicts = {name: {line["claim"]: tally(line) for _, line in summary(pd.read_csv(
        ROOT / "results" / "stored" / name / "claims.csv", dtype={"claim": str})).iterrows()} for name in stored}
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table.strip().splitlines()[2:]]
    assert [row[0] for row in rows] == [claim.key for claim in CLAIMS]
    for row in rows:
        shown = dict(zip(header, row, strict=True))
        for name in stored:
            assert shown[f"`{name}`"].strip("*") == verdicts[name][row[0]], (row[0], name)


def imports_of(tree: ast.Module, inside_functions: bool) -> list[ast.Import | ast.ImportFrom]:
    """A module's import statements: the top level's, or every one (inside functions too), but never those under
    `if TYPE_CHECKING:` (annotations only: nothing is imported when the code runs)."""
    if not inside_functions:
        return [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def module_imports(inside_functions: bool = False) -> dict[str, set[str]]:
    """Each suite module's imports of other suite modules, at the top level or (`inside_functions`) every one (a
    submodule's import of its own package is not a link; importing a submodule runs its package's __init__, which
    is)."""
    modules = {}
    for path in [*ROOT.glob("bench/**/*.py"), *ROOT.glob("evaluators/*.py"), *ROOT.glob("baselines/*.py")]:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    links = {}
    for name, path in modules.items():
        found = set()
        for node in imports_of(ast.parse(path.read_text()), inside_functions):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                          for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        found = {module for module in found if module in modules}
        found |= {".".join(module.split(".")[:i]) for module in list(found) for i in range(1, module.count(".") + 1)}
        links[name] = {module for module in found & set(modules)
                       if module != name and not name.startswith(module + ".")}
    return links


def longest_chain(links: dict[str, set[str]]) -> tuple[str, ...]:
    """The longest chain of imports; an import cycle fails the test that asks."""
    memo: dict[str, tuple[str, ...]] = {}

    def longest(name: str, stack: tuple[str, ...] = ()) -> tuple[str, ...]:
        assert name not in stack, "import cycle: " + " -> ".join((*stack, name))
        if name not in memo:
            memo[name] = max([(name, *longest(other, (*stack, name))) for other in links[name]] or [(name,)], key=len)
        return memo[name]

    return max((longest(name) for name in links), key=len)


def test_the_harness_is_shallow_and_has_no_import_cycles():
    """At most 10 floors of imports, counting those inside functions too (an import hidden in a function is an
    import all the same); a cycle fails `longest_chain` itself."""
    chain = longest_chain(module_imports(inside_functions=True))
    assert len(chain) <= 10, " -> ".join(chain)


def test_no_import_cycle_even_counting_the_imports_inside_functions():
    longest_chain(module_imports(inside_functions=True))  # a cycle fails here, whatever the depth


def test_a_presets_budget_for_no_evaluator_or_of_the_wrong_kind_is_an_error_not_a_silent_default(monkeypatch):
    from bench.budgets import Budget
    from bench.evaluate import evaluation_preset

    assert preset("smoke").budget_for(evaluators.EVALUATORS["classification"]) is None  # it draws no sample
    monkeypatch.setitem(PRESETS["smoke"].budgets, "swpa", Budget(10))
    with pytest.raises(BenchError, match="a budget for 'swpa', which is no evaluator"):
        evaluation_preset("smoke")
    monkeypatch.delitem(PRESETS["smoke"].budgets, "swpa")
    monkeypatch.setitem(PRESETS["smoke"].budgets, "ground_truth", Budget(10))  # it needs its reader's training too
    with pytest.raises(BenchError, match="'ground_truth' takes GroundTruthBudget, not Budget"):
        evaluation_preset("smoke")


def test_a_users_class_takes_a_name_and_bad_names_are_one_line():
    from bench.errors import BenchError
    from bench.models import named

    assert named("ccvae") == ("ccvae", None)
    assert named("tests.models:DoNothingVAE") == ("tests.models:DoNothingVAE", None)
    assert named("nothing=tests.models:DoNothingVAE") == ("nothing", "tests.models:DoNothingVAE")
    for bad, message in (("ccvae=tests.models:DoNothingVAE", "is a registered model's"),
                         ("a/b=tests.models:DoNothingVAE", "without '/'"), ("x=notaclass", "NAME=package.module:Class"),
                         ("nope", "unknown model 'nope'")):
        with pytest.raises(BenchError, match=message):
            named(bad)
