"""The sweep, the tables and the regression check, on the CI grid and on known inputs."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import submitit
import torch
from PIL import Image

from bench import rundir, sweep
from bench.cli import main
from bench.config import make_config
from bench.data import default_datasets, mnist
from bench.errors import BenchError
from bench.files import exclusive
from bench.models import default_models
from bench.results import RESULT_COLUMNS, at_preset_seed, gather
from bench.stored import read_stored
from bench.tables import (
    PAPER_COLUMNS,
    TABLES,
    latex_text,
    table_frame,
    to_latex,
    to_markdown,
)
from evaluators.controls import ROWS as CONTROL_ROWS
from tests.conftest import CI_GRID, ROOT

STORED_CI = ROOT / "results" / "stored" / "ci"


def results_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows (dataset, model, f, seed, preset, metric, value), evaluated at the preset's seed 0, or with the
    evaluation seed after the seed."""
    columns = [column for column in RESULT_COLUMNS if column != "eval_seed"]
    frame = pd.DataFrame([dict(zip(RESULT_COLUMNS if len(row) == len(RESULT_COLUMNS) else columns, row, strict=True))
                          for row in rows])
    return frame.assign(eval_seed=frame.get("eval_seed", 0))[RESULT_COLUMNS]


# --- tables on known inputs ------------------------------------------------------------------------------------


def test_table_cells_are_mean_interval_and_n_over_seeds_marked_by_welch_and_the_paper_beside():
    results = results_frame([
        *[("celeba", "ccvae", 0.06, seed, "paper", "classification.accuracy", value)
          for seed, value in enumerate((0.80, 0.90, 0.85))],
        *[("celeba", "m2", 0.06, seed, "paper", "classification.accuracy", value)
          for seed, value in enumerate((0.60, 0.61, 0.62))],
        *[("celeba", model, 0.06, seed, "paper", "majority_accuracy", 0.60) for model in ("m2", "ccvae")
          for seed in range(3)],
    ])
    paper = pd.DataFrame([{"table": "1", "dataset": "celeba", "model": "ccvae", "f": 0.06,
                           "metric": "classification.accuracy", "value": 0.862, "source": "slides"}])
    frame = table_frame(results, "celeba", TABLES["1"], paper).set_index("model")
    assert frame.loc["ccvae", "mean"] == pytest.approx(0.85) and frame.loc["ccvae", "n"] == 3
    assert frame.loc["ccvae", "std"] == pytest.approx(0.05)  # sample std of (0.80, 0.90, 0.85)
    half_width = 4.302653 * 0.05 / math.sqrt(3)  # t_{0.975, 2} s / √n
    assert (frame.loc["ccvae", "low"], frame.loc["ccvae", "high"]) == pytest.approx((0.85 - half_width,
                                                                                     0.85 + half_width))
    assert frame.loc["ccvae", "mark"] == "best" and frame.loc["m2", "mark"] == ""  # Welch: p = 0.01
    assert frame.loc["majority_accuracy", "n"] == 3  # one number per (f, seed), not one per model
    markdown = to_markdown(frame.reset_index(), TABLES["1"])
    assert "**0.850 ± 0.124** (n=3)" in markdown and "0.610 ± 0.025 (n=3)" in markdown
    assert "ccvae (paper)" in markdown and "0.862" in markdown
    latex = to_latex(frame.reset_index(), TABLES["1"], "celeba")
    assert r"\toprule" in latex and r"\textbf{0.850 $\pm$ 0.124}" in latex and r"majority baseline" in latex
    assert r"\label{tab:celeba-1}" in latex and "Welch" in latex and latex.count(r"\caption{") == 1
    assert r"\caption{Classification accuracy, multi-label (paper Table 1), celeba." in latex


def test_a_column_without_a_separated_best_marks_the_tied_models_and_one_seed_marks_nothing():
    def frame_of(values: dict[str, tuple[float, ...]]) -> pd.DataFrame:
        rows = [("synthfaces", model, 1.0, seed, "quick", "swap.score", value)
                for model, seeds in values.items() for seed, value in enumerate(seeds)]
        return table_frame(results_frame(rows), "synthfaces", TABLES["2"], pd.DataFrame(columns=PAPER_COLUMNS))

    tied = frame_of({"ccvae": (1.5, 1.6, 1.7), "m2": (1.55, 1.65, 1.75), "mvae": (3.0, 3.1, 3.2)})
    assert tied.set_index("model")["mark"].to_dict() == {"ccvae": "tied", "m2": "tied", "mvae": ""}  # lower wins
    markdown = to_markdown(tied, TABLES["2"])
    assert "*1.600 ± 0.248* (n=3)" in markdown and r"\|Δ log p\| vs a" in markdown  # a "|" kept in its cell
    assert all(line.count("|") - line.count(r"\|") == 5 for line in markdown.splitlines())  # 4 columns, 5 bars
    single = frame_of({"ccvae": (1.5,), "m2": (2.5,)})
    assert set(single["mark"]) == {""} and "1.500 (n=1)" in to_markdown(single, TABLES["2"])


def test_a_run_evaluated_at_several_evaluation_seeds_counts_once_with_its_evaluation_spread_beside():
    rows = [("synthfaces", "ccvae", 1.0, seed, eval_seed, "quick", "swap.score", 1.5 + 0.1 * seed + 0.02 * eval_seed)
            for seed in range(3) for eval_seed in range(2)]
    frame = table_frame(results_frame(rows), "synthfaces", TABLES["2"], pd.DataFrame(columns=PAPER_COLUMNS))
    cell = frame.set_index("model").loc["ccvae"]
    assert cell["n"] == 3 and cell["n_eval"] == 2  # three runs, not six numbers
    assert cell["mean"] == pytest.approx(1.61) and cell["std"] == pytest.approx(0.1)  # over the runs' means
    assert cell["eval_sd"] == pytest.approx(0.02 / math.sqrt(2))  # the sd of (x, x + 0.02), pooled over runs
    assert "1.610 ± 0.248 (n=3; eval sd 0.014)" in to_markdown(frame, TABLES["2"])
    assert set(at_preset_seed(results_frame(rows)).eval_seed) == {0}  # what bench check compares


def test_latex_text_spells_every_symbol_of_the_tables_for_pdflatex():
    assert latex_text("|Δ log p| vs â, 95 % ± x²") == r"$\vert$$\Delta$ log p$\vert$ vs \^{a}, 95 \% $\pm$ x$^2$"
    assert latex_text("Fréchet_b̂") == r"Fr\'{e}chet\_\^{b}"
    for spec in TABLES.values():
        latex_text(spec.title + spec.caption)  # raises where a character has no LaTeX spelling
    with pytest.raises(BenchError, match="LATEX_SYMBOLS"):
        latex_text("ψ")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (texlive-latex-recommended)")
def test_every_written_latex_table_compiles_with_pdflatex(ci_runs, tmp_path):
    assert main(["tables", "--runs", str(ci_runs), "--out", str(tmp_path)]) == 0
    tables = sorted(tmp_path.glob("tables/*/table*.tex"))
    assert len(tables) >= 6
    document = tmp_path / "tables.tex"
    document.write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs,graphicx}\n"
                        "\\begin{document}\n" + "".join(f"\\input{{{path}}}\n" for path in tables)
                        + "\\end{document}\n")
    compiled = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 0


# --- the CI grid: what CI checks ----------------------------------------------------------------------------------


def test_the_ci_grid_reproduces_the_stored_ci_results(ci_runs, capsys):
    assert main(["check", "--runs", str(ci_runs), "--stored", str(STORED_CI)]) == 0
    assert "numbers compared" in capsys.readouterr().out


def test_check_exits_1_and_names_the_regression(ci_runs, tmp_path, capsys):
    stored = read_stored(STORED_CI)
    chosen = (stored.model == "ccvae") & (stored.metric == "classification.accuracy")
    stored.loc[chosen, "value"] = 0.99 + 0.002 * stored.loc[chosen, "seed"]  # the stored model was far better
    (tmp_path / "stored").mkdir()
    stored.to_csv(tmp_path / "stored" / "results.csv", index=False)
    assert main(["check", "--runs", str(ci_runs), "--stored", str(tmp_path / "stored")]) == 1
    captured = capsys.readouterr()
    assert "WORSE" in captured.out and "synthfaces/ccvae/f=0.06 classification.accuracy" in captured.err
    assert "sd)" in captured.err  # judged by the stored seeds' spread, in their standard deviations
    one_seed = stored[(stored.seed == 0) & chosen]  # one number of one seed: no spread, the declared tolerance
    one_seed.to_csv(tmp_path / "stored" / "results.csv", index=False)
    assert main(["check", "--runs", str(ci_runs), "--stored", str(tmp_path / "stored")]) == 1
    assert main(["check", "--runs", str(ci_runs), "--stored", str(tmp_path / "stored"),
                 "--tolerance", "classification.accuracy=0.25"]) == 0  # the declared tolerance, widened


def test_update_stores_results_configs_and_tables_that_then_check_identical(ci_runs, tmp_path, capsys):
    assert main(["check", "--update", "--runs", str(ci_runs), "--stored", str(tmp_path)]) == 0
    assert len(json.loads((tmp_path / "configs.json").read_text())) == 6
    assert (tmp_path / "tables" / "synthfaces" / "table1.tex").is_file() and (tmp_path / "provenance.json").is_file()
    assert main(["check", "--runs", str(ci_runs), "--stored", str(tmp_path)]) == 0
    assert "0 ok, 0 better, 0 WORSE, 0 missing" in capsys.readouterr().out
    environments = json.loads((tmp_path / "provenance.json").read_text())["environment"]
    assert environments and {"torch", "cpu", "cpu_flags", "threads", "device", "MKL_CBWR"} <= set(environments[0])
    # the stored set re-renders from its own files, without the runs: the same report, notes included
    written = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert "- — for " in (tmp_path / "REPORT.md").read_text()
    assert main(["tables", "--stored", str(tmp_path)]) == 0
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == written
    # one seed's figures per cell travel with the set, small, and its reports show them without the runs
    drawn = sorted((tmp_path / "gallery").glob("synthfaces/*/f=0.06/seed=0/eval/figures/*.png"))
    assert {path.parts[-6] for path in drawn} == {"ccvae", "mccvae", "m2", "mvae", "csvae", "diva"}
    assert all(Image.open(path).mode == "P" for path in drawn)  # a 64-colour palette
    assert sum(path.stat().st_size for path in drawn) < 0.35 * sum(
        path.stat().st_size for path in ci_runs.glob("synthfaces/*/f=0.06/seed=0/eval/figures/*.png"))
    assert "gallery/synthfaces/ccvae/f=0.06/seed=0/eval/figures/swaps.png" in (tmp_path / "REPORT.md").read_text()
    shutil.rmtree(ci_runs.parent / "elsewhere", ignore_errors=True)
    assert main(["tables", "--stored", str(tmp_path), "--out", str(ci_runs.parent / "elsewhere")]) == 0
    page = (ci_runs.parent / "elsewhere" / "report.html").read_text()
    assert page.count("<img") >= 6 * 5 and "Gallery" in page and "Training curves" in page


def test_update_of_one_data_set_keeps_the_stored_others_and_records_where_each_part_came_from(ci_runs, tmp_path):
    assert main(["check", "--update", "--runs", str(ci_runs), "--stored", str(tmp_path)]) == 0
    stored = read_stored(tmp_path)
    other = stored[stored.model == "ccvae"].assign(dataset="fashion-mnist", value=0.5)  # another data set's part
    pd.concat([stored.assign(value=stored.value + 1), other]).to_csv(tmp_path / "results.csv", index=False)
    configs = json.loads((tmp_path / "configs.json").read_text())
    (tmp_path / "configs.json").write_text(json.dumps([*configs, {**configs[0], "dataset": "fashion-mnist"}]))
    assert main(["check", "--update", "--update-datasets", "synthfaces", "--runs", str(ci_runs),
                 "--stored", str(tmp_path)]) == 0
    updated = read_stored(tmp_path)
    pd.testing.assert_frame_equal(updated[updated.dataset == "synthfaces"].reset_index(drop=True),
                                  stored.reset_index(drop=True))  # replaced by the fresh numbers
    assert (updated[updated.dataset == "fashion-mnist"].value == 0.5).all() and len(updated) == len(stored) + len(other)
    assert len(json.loads((tmp_path / "configs.json").read_text())) == 7
    parts = json.loads((tmp_path / "provenance.json").read_text())["parts"]
    assert [part["datasets"] for part in parts] == [["fashion-mnist"], ["synthfaces"]]
    assert main(["check", "--update", "--update-datasets", "mnist", "--runs", str(ci_runs),
                 "--stored", str(tmp_path)]) == 2  # no fresh runs of it: one line, nothing written
    pd.testing.assert_frame_equal(read_stored(tmp_path), updated)


def test_tables_cli_writes_csv_latex_markdown_and_a_report_with_working_figure_links(ci_runs, tmp_path):
    assert main(["tables", "--runs", str(ci_runs), "--out", str(tmp_path)]) == 0
    for key in ("1", "2", "4", "5", "C", "G"):  # 6 and 7 are multi-class tables
        for suffix in ("csv", "tex", "md"):
            assert (tmp_path / "tables" / "synthfaces" / f"table{key}.{suffix}").is_file(), (key, suffix)
    assert not list((tmp_path / "tables" / "synthfaces").glob("table[67].*"))  # multi-label data
    table = pd.read_csv(tmp_path / "tables" / "synthfaces" / "table1.csv")
    grid = default_models()
    models = table[table.model.isin(grid)]
    assert set(models.model) == set(grid)
    assert set(table.model) - set(grid) == {"majority_accuracy", "ceiling: oracle"}  # reference rows below
    assert table.loc[~table.model.isin(grid), "mark"].isna().all()  # reference rows are never marked (blank)
    assert set(table.n) == {1} and table["mark"].isna().all()  # one seed: nothing can be tested
    assert table.loc[table.model == "ceiling: oracle", "mean"].item() > models["mean"].max()
    report = (tmp_path / "REPORT.md").read_text()
    assert "### Table 1" in report and "### Table G" in report and "Figures (synthfaces)" in report
    links = [part.split(")")[0] for part in report.split("](")[1:]]
    assert links and all((tmp_path / link).is_file() for link in links)


def test_dry_run_lists_every_cell_and_which_are_done(ci_runs, capsys):
    assert main(["run", "--datasets", "synthfaces", "--fs", "0.06,0.2", "--preset", "ci", "--runs", str(ci_runs),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "12 cells: 6 done, 6 todo" in out and "todo  synthfaces/ccvae/f=0.2/seed=0" in out


def test_reproduce_reuses_finished_runs_writes_its_table_and_checks_it(ci_runs, tmp_path, capsys):
    before = (ci_runs / "synthfaces" / "ccvae" / "f=0.06" / "seed=0" / "metrics.json").stat().st_mtime_ns
    assert main(["reproduce", "--table", "2", *CI_GRID, "--runs", str(ci_runs), "--out", str(tmp_path),
                 "--stored", str(STORED_CI)]) == 0
    assert (ci_runs / "synthfaces" / "ccvae" / "f=0.06" / "seed=0" / "metrics.json").stat().st_mtime_ns == before
    assert (tmp_path / "tables" / "synthfaces" / "table2.md").is_file()
    assert not (tmp_path / "tables" / "synthfaces" / "table1.md").exists()
    err = capsys.readouterr().err
    assert "swap.score" not in err
    assert "6 of 6 cells finished earlier; 0 to run" in err  # a resumed sweep's bar counts what it had done
    assert "6/6" in err and "0/6" not in err


# --- launchers, locks, bad input ---------------------------------------------------------------------------------


def test_a_cell_held_by_another_sweep_is_skipped_not_trained_twice(tmp_path):
    config = make_config("ccvae", "synthfaces", 0.06, 0, "smoke", epochs=1)
    run_dir = config.run_dir(tmp_path)
    with exclusive(run_dir.parent / f".{run_dir.name}.lock") as held:
        assert held
        outcome = sweep.run_cell(config, tmp_path, sweep.CellSettings(evaluators=()))
    assert outcome.state == "busy" and not (run_dir / "checkpoint.pt").exists()


@pytest.mark.slow
def test_local_launcher_runs_cells_in_parallel_and_a_failed_cell_does_not_stop_the_others(tmp_path, ci_cache,
                                                                                           capsys):
    code = main(["run", "--models", "ccvae,tests.models:BrokenVAE", "--datasets", "synthfaces", "--fs", "0.06",
                 "--preset", "smoke", "--epochs", "1", "--no-eval", "--launcher", "local", "--jobs", "2",
                 "--runs", str(tmp_path), "--cache-dir", str(ci_cache), "--out", str(tmp_path / "results")])
    assert code == 1
    err = capsys.readouterr().err
    assert "FAILED synthfaces/tests.models:BrokenVAE/f=0.06/seed=0: RuntimeError: deliberately broken model" in err
    assert (tmp_path / "synthfaces" / "ccvae" / "f=0.06" / "seed=0" / "metrics.json").is_file()
    assert "Traceback" in (tmp_path / "synthfaces" / "tests.models:BrokenVAE" / "f=0.06" / "seed=0" /
                           "error.txt").read_text()


@pytest.mark.slow
def test_a_local_sweeps_worker_judges_the_controls_beside_the_training(tmp_path, ci_cache):
    """So that a sweep stopped part-way (hours into a long one) already has its floor and ceiling rows."""
    cells = [make_config("ccvae", "synthfaces", 1.0, 0, "smoke", epochs=1)]
    settings = sweep.CellSettings(cache_dir=str(ci_cache), evaluators=("classification", "conditional"),
                                  show_progress=False)
    rundir.mark_runs_root(tmp_path)
    sweep.load_each_dataset(cells, settings)
    sweep.launch_local(cells, tmp_path, settings, jobs=2)  # `launch` judges what is left afterwards; this does not
    controls = tmp_path / "synthfaces" / "controls"
    assert json.loads((controls / "floor-does_nothing" / "eval" / "conditional.json").read_text())["n"] == 100
    assert (controls / "ceiling-oracle" / "eval" / "classification.json").is_file()
    assert not (controls / "floor-does_nothing" / "eval" / "swap.json").exists()  # only the evaluators chosen


def test_a_control_that_cannot_be_judged_beside_the_training_does_not_stop_the_sweep(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("no oracle output")

    monkeypatch.setattr(sweep, "prepare_shared", lambda config, settings: None)
    monkeypatch.setattr(sweep, "judge_controls", broken)
    config = make_config("ccvae", "synthfaces", 1.0, 0, "smoke")
    note = sweep.prepare_and_judge_controls(config, tmp_path, sweep.CellSettings())
    assert note == "synthfaces controls: RuntimeError: no oracle output (judged again when the cells are done)"
    monkeypatch.setattr(sweep, "prepare_shared", broken)  # what the runs share: its error stops the sweep
    with pytest.raises(RuntimeError):
        sweep.prepare_and_judge_controls(config, tmp_path, sweep.CellSettings())


@pytest.mark.slow
def test_slurm_launcher_submits_an_array_and_links_each_log_into_its_run_directory(tmp_path, ci_cache):
    """The Slurm code path with submitit's local executor standing in for sbatch."""
    cells = [make_config("ccvae", "synthfaces", 0.06, 0, "smoke", epochs=1)]
    executor = submitit.AutoExecutor(folder=tmp_path / "slurm" / "%j", cluster="local")
    executor.update_parameters(timeout_min=10)
    settings = sweep.CellSettings(cache_dir=str(ci_cache), device="cpu", evaluators=())
    outcomes = sweep.launch_slurm(cells, tmp_path, settings, executor, poll_seconds=0.5)
    assert [outcome.state for outcome in outcomes] == ["done"], outcomes
    run_dir = cells[0].run_dir(tmp_path)
    assert (run_dir / "metrics.json").is_file() and (run_dir / "slurm.out").resolve().is_file()

    class Refusing:  # the same sweep again: a finished cell asks for no node
        def map_array(self, *args):
            raise AssertionError("a finished cell was submitted")

    assert [outcome.state for outcome in sweep.launch_slurm(cells, tmp_path, settings, Refusing())] == ["done"]


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (Linux's /proc), children first."""
    children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return children + [grandchild for child in children for grandchild in descendants(child)]


@pytest.mark.slow
def test_a_slurm_task_interrupted_as_by_a_timeout_is_requeued_and_resumes_to_the_same_numbers(tmp_path, ci_cache):
    config = make_config("ccvae", "synthfaces", 0.06, 0, "smoke", epochs=2)
    settings = sweep.CellSettings(cache_dir=str(ci_cache), device="cpu", evaluators=(), show_progress=False)
    executor = submitit.AutoExecutor(folder=tmp_path / "slurm" / "%j", cluster="local")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(sweep.SlurmCell(), config, tmp_path / "interrupted", settings)
    checkpoint = config.run_dir(tmp_path / "interrupted") / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.is_file() and time.monotonic() < deadline:  # the first epoch's checkpoint
        time.sleep(0.2)
    for task in descendants(job._process.pid):  # the signal Slurm sends a task before its time limit or a preemption
        os.kill(task, submitit.JobEnvironment._usr_sig())
    assert job.result().state == "done"
    assert "Requeued" in (job.stderr() or "") + (job.stdout() or "")  # submitit's requeue, not a fresh start
    uninterrupted = sweep.run_cell(config, tmp_path / "uninterrupted", settings)
    assert job.result().metrics["test_accuracy"] == uninterrupted.metrics["test_accuracy"]
    curves = [pd.read_csv(config.run_dir(tmp_path / name) / "train_log.csv")["valid_accuracy"].tolist()
              for name in ("interrupted", "uninterrupted")]
    assert curves[0] == curves[1] and len(curves[0]) == 2  # every epoch as if never interrupted


def test_slurm_without_slurm_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["run", "--models", "ccvae", "--fs", "0.06", "--preset", "smoke", "--datasets", "synthfaces",
                 "--launcher", "slurm", "--runs", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "sbatch is not on PATH" in error and len(error.splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--models", "vqvae"], "unknown model 'vqvae'"),
    (["run", "--datasets", "cifar"], "unknown data set 'cifar'"),
    (["run", "--all", "--preset", "huge"], "invalid choice: 'huge'"),
    (["run", "--fs", "0"], "outside (0, 1]"),
    (["run", "--all", "--launcher", "cloud", "--datasets", "synthfaces"], "invalid choice: 'cloud'"),
    (["reproduce", "--table", "3"], "invalid choice: '3'"),
    (["check", "--tolerance", "x"], "must be a number or METRIC=NUMBER"),
    (["check", "--sds", "0"], "--sds must be positive"),
    (["tables"], "does not exist"),
])
def test_bad_sweep_input_is_one_line_and_exit_code_2(args, message, capsys, tmp_path):
    runs = tmp_path / "runs" if args[0] != "tables" else tmp_path / "nowhere"
    assert main([*args, "--runs", str(runs)]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1 and "Traceback" not in error


def test_a_runs_directory_of_another_suite_version_is_refused(tmp_path, capsys):
    (tmp_path / "suite.json").write_text(json.dumps({"runs_format": 0, "suite_version": "0.0.1"}))
    assert main(["run", "--models", "ccvae", "--fs", "0.06", "--preset", "smoke", "--datasets", "synthfaces",
                 "--runs", str(tmp_path)]) == 2
    assert "another version of the suite" in capsys.readouterr().err


def test_default_datasets_add_fashion_mnist_only_where_its_files_are_found(tmp_path, monkeypatch):
    monkeypatch.setitem(mnist.SOURCES["fashion-mnist"], "debian", tmp_path / "no-debian-package")
    assert default_datasets(str(tmp_path)) == ("synthfaces",)
    for stem in mnist.FILES.values():
        (tmp_path / "FashionMNIST" / "raw").mkdir(parents=True, exist_ok=True)
        (tmp_path / "FashionMNIST" / "raw" / stem).write_bytes(b"")
    assert default_datasets(str(tmp_path)) == ("synthfaces", "fashion-mnist")


def test_worker_devices_share_one_device_without_several_gpus():
    assert sweep.worker_devices("cpu", 3) == ["cpu", "cpu", "cpu"]
    if torch.cuda.device_count() > 1:
        assert sweep.worker_devices("cuda", 2) == ["cuda:0", "cuda:1"]


def test_gather_reads_only_finished_runs(ci_runs):
    results = gather(ci_runs)
    assert set(results[results.f.notna()].model) == set(default_models())
    assert set(results[results.f.isna()].model) == set(CONTROL_ROWS)  # the controls: one row each, for every f
    assert {"classification.accuracy", "swap.score", "test_accuracy"} <= set(results.metric)


def test_run_takes_dataset_options_for_its_grid_and_refuses_an_unknown_one(tmp_path, capsys):
    grid = ["run", "--preset", "smoke", "--datasets", "synthfaces", "--models", "ccvae", "--fs", "1", "--dry-run",
            "--runs", str(tmp_path)]
    assert main([*grid, "--dataset-option", "n_train=300"]) == 0
    assert "1 cells: 1 todo" in capsys.readouterr().out
    cells = sweep.Grid(datasets=("synthfaces",), models=("ccvae",), fs=(1.0,), preset="smoke",
                       dataset_options={"n_train": 300}).cells()
    assert cells[0].dataset_options["n_train"] == 300 and cells[0].dataset_options["image_size"] == 32
    assert main([*grid, "--dataset-option", "colour=blue"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "colour" in error, error


def test_a_stored_set_restores_its_runs_so_that_a_sweep_goes_on_without_retraining(ci_runs, tmp_path, capsys):
    stored, restored = tmp_path / "stored", tmp_path / "restored"
    assert main(["check", "--update", "--runs", str(ci_runs), "--stored", str(stored)]) == 0
    assert main(["check", "--restore", "--stored", str(stored), "--runs", str(restored)]) == 0
    assert "restored 6 runs" in capsys.readouterr().out
    runs = lambda frame: frame[frame.f.notna()].sort_values(list(frame.columns)).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(runs(gather(restored)), runs(gather(ci_runs)))  # every number, as stored
    assert main(["run", *CI_GRID, "--runs", str(restored), "--dry-run"]) == 0
    assert "6 cells: 6 done" in capsys.readouterr().out  # a sweep of the same grid trains nothing
    assert main(["check", "--runs", str(restored), "--stored", str(stored)]) == 0


def test_restoring_a_stored_set_keeps_every_number_controls_included_and_every_verdict(tmp_path):
    from bench.claims import evaluate_claims
    from bench.results import gather
    from bench.stored import restore

    stored = ROOT / "results" / "stored" / "standard"
    message = restore(stored, tmp_path / "runs")
    assert "control rows" in message
    keys = ["dataset", "model", "f", "seed", "eval_seed", "metric"]
    before = pd.read_csv(stored / "results.csv")
    after = gather(tmp_path / "runs")
    merged = before.merge(after, on=keys, how="outer", suffixes=("_stored", "_restored"), indicator=True)
    lost = merged[merged._merge != "both"]
    assert lost.empty, lost[[*keys, "_merge"]].head(10)
    assert np.allclose(merged.value_stored, merged.value_restored, rtol=0, atol=1e-12)
    assert (before.f.isna().sum(), after.f.isna().sum()) == (before.f.isna().sum(), before.f.isna().sum()) > (0, 0)
    verdicts = ["claim", "part", "dataset", "f", "models", "verdict"]
    pd.testing.assert_frame_equal(evaluate_claims(before)[verdicts], evaluate_claims(after)[verdicts])


def test_check_refuses_another_preset_or_other_settings_before_blaming_the_machine(tmp_path, capsys):
    stored = pd.read_csv(STORED_CI / "results.csv")
    stored.assign(preset="smoke").to_csv(tmp_path / "smoke.csv", index=False)
    assert main(["check", "--results", str(tmp_path / "smoke.csv"), "--stored", str(STORED_CI)]) == 2
    error = capsys.readouterr().err
    assert "preset smoke" in error and "different experiments" in error and "cpu" not in error
    assert main(["check", "--restore", "--stored", str(STORED_CI), "--runs", str(tmp_path / "runs")]) == 0
    config = next((tmp_path / "runs").glob("synthfaces/ccvae/f=*/seed=0/config.json"))
    config.write_text(config.read_text().replace('"lr": 0.001', '"lr": 0.002'))
    assert main(["check", "--runs", str(tmp_path / "runs"), "--stored", str(STORED_CI)]) == 2
    assert "lr differ" in capsys.readouterr().err
