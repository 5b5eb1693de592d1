"""The HTML report: one self-contained file with every table and figure, as a reader's browser shows it."""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.report import gallery_figures, value_view
from bench.tables import TABLES


@pytest.fixture(scope="module")
def report(ci_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["tables", "--runs", str(ci_runs), "--out", str(out)]) == 0
    return out / "report.html"


@pytest.mark.slow  # it reads the trained CI grid
def test_the_report_holds_every_table_every_figure_kind_and_the_curves_embedded(report, ci_runs):
    text = report.read_text()
    for key in ("1", "2", "4", "5", "C", "G"):  # the multi-label tables
        assert f"<h3>Table {key}: {html.escape(TABLES[key].title)}" in text
    assert "ceiling: renderer" in text and "floor: does nothing" in text  # the control rows
    sources = re.findall(r'<img[^>]* src="([^"]*)"', text)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)  # nothing outside
    drawn = {path.stem for path in ci_runs.glob("synthfaces/*/f=*/seed=0/eval/figures/*.png")}
    assert drawn <= set(gallery_figures())  # every figure the evaluators draw has a place in the gallery ...
    for name in drawn:
        assert f"<h4>{name.replace('_', ' ')}</h4>" in text  # ... and is shown
    assert "Training curves" in text and "ccvae, f=0.06, seed 0" in text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (Debian package chromium)")
def test_the_report_renders_in_headless_chromium(report, tmp_path):
    screenshot = tmp_path / "report.png"
    rendered = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--screenshot={screenshot}", "--window-size=1200,3000", report.as_uri()],
                              capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0 and screenshot.is_file(), rendered.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=float)
    assert pixels.shape == (3000, 1200)
    rows_with_ink = (pixels < 200).any(1).mean()  # text, tables and images, not a blank page
    assert rows_with_ink > 0.3


def test_a_plots_view_holds_every_mean_not_every_interval():
    assert value_view(pd.Series([0.2, 0.6, 1.0])) == pytest.approx((0.0, 1.2))  # a quarter of the spread each side
    assert value_view(pd.Series([3.581, 3.581])) == pytest.approx((3.2229, 3.9391))  # no spread: a tenth of the value
    assert value_view(pd.Series([0.0])) == pytest.approx((-0.1, 0.1))


def test_the_report_opens_with_the_verdicts_and_a_forest_plot_per_measured_claim():
    from pathlib import Path

    from bench.claims import evaluate_claims
    from bench.protocol import CLAIMS
    from bench.report import forest_png, verdicts_html

    stored = pd.read_csv(Path(__file__).resolve().parents[1] / "results" / "stored" / "standard" / "results.csv")
    text = verdicts_html(stored)
    rows = evaluate_claims(stored)
    measured = [claim for claim in CLAIMS if rows[(rows.claim == claim.key)].effect.notna().any()]
    assert text.count("class=plot") == len(measured) >= 6
    assert "interim (3 of 5 seeds): holds (all 12)" in text and "protocol 1" in text
    png = forest_png(CLAIMS[0], rows[rows.claim == "T1"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert forest_png(CLAIMS[-1], rows[rows.claim == "T7"]) is None  # nothing measured: no plot


def test_the_papers_table_1_is_shown_beside_ours_labelled_as_other_data():
    from pathlib import Path

    from bench.tables import dataset_tables, read_paper, table_spec, to_markdown

    root = Path(__file__).resolve().parents[1]
    stored = pd.read_csv(root / "results" / "stored" / "standard" / "results.csv")
    table = dataset_tables(stored, "synthfaces", read_paper(root / "results" / "paper.csv"), ["1"])["1"]
    text = to_markdown(table, table_spec("1"))
    line = next(row for row in text.splitlines() if "ccvae (paper, celeba: other data)" in row)
    assert "0.832" in line and "0.900" in line  # the slides' Table 1 for CCVAE at f = 0.004 and 1
    assert table[table.model == "ccvae"].paper.notna().all()  # the paper's number beside each of ours


def test_tables_of_a_stored_set_go_where_out_says_and_the_stored_set_is_not_touched(tmp_path):
    from pathlib import Path

    stored = Path(__file__).resolve().parents[1] / "results" / "stored" / "ci"
    before = {path: path.stat().st_mtime_ns for path in stored.rglob("*") if path.is_file()}
    assert main(["tables", "--stored", str(stored), "--out", str(tmp_path / "out")]) == 0
    for name in ("report.html", "REPORT.md", "CLAIMS.md", "claims.csv", "results.csv",
                 "tables/synthfaces/table1.md"):
        assert (tmp_path / "out" / name).is_file(), name
    assert "The paper's claims" in (tmp_path / "out" / "report.html").read_text()
    assert {path: path.stat().st_mtime_ns for path in stored.rglob("*") if path.is_file()} == before


def test_every_stored_latex_table_compiles_as_it_is_and_has_no_bare_bar_in_text(tmp_path):
    """Each .tex names the packages it needs in its first line and compiles in a minimal document with them."""
    import re
    from pathlib import Path

    from bench.tables import LATEX_PACKAGES

    tables = sorted((Path(__file__).resolve().parents[1] / "results" / "stored").glob("*/tables/*/*.tex"))
    assert tables
    for path in tables:
        text = path.read_text()
        assert text.startswith("% needs \\usepackage{booktabs") and ("sidewaystable" not in text or "rotating" in
                                                                       text.splitlines()[0]), path
        outside_math = re.sub(r"\$[^$]*\$", "", text)
        assert "|" not in outside_math, path  # pdflatex's OT1 text font prints a bare | as an em dash
        assert text.count(r"\caption{") == 1 and r"\resizebox" not in text, path
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (Debian package texlive-latex-recommended)")
    inputs = "\n".join(rf"\input{{{path}}}\clearpage" for path in tables)
    document = tmp_path / "tables.tex"
    document.write_text(rf"\documentclass{{article}}\usepackage{{{','.join(LATEX_PACKAGES)}}}"
                        rf"\begin{{document}}{inputs}\end{{document}}" + "\n")
    compiled = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert compiled.returncode == 0, compiled.stdout[-3000:]
    assert (tmp_path / "tables.pdf").is_file()
    assert "Overfull \\hbox" not in compiled.stdout, compiled.stdout[-3000:]  # nothing runs off its page


def captured_figure(monkeypatch, draw):
    """The matplotlib figure a report function draws (instead of its PNG)."""
    from bench import report as report_module

    figures = []
    monkeypatch.setattr(report_module, "figure_png", lambda figure: figures.append(figure) or b"png")
    draw()
    return figures[-1]


def test_a_measures_plot_draws_log_scale_metrics_on_a_log_axis_and_names_every_reference_in_its_legend(monkeypatch):
    from bench.report import measures_plot
    from bench.tables import table_spec

    rows = []
    for metric, values in (("fid.oracle_frechet", (200.0, 50.0)), ("classification.accuracy", (0.6, 0.8))):
        for model, scale in (("ccvae", 1.0), ("m2", 1.2)):
            rows += [{"model": model, "f": f, "metric": metric, "mean": v * scale, "low": np.nan, "high": np.nan}
                     for f, v in zip((0.06, 1.0), values, strict=True)]
        for row, value in (("floor: does nothing", values[0] * 2), ("ceiling: renderer", values[1]),
                           ("ceiling: real images", values[1] * 1.01)):  # two ceilings at nearly one value
            rows += [{"model": row, "f": f, "metric": metric, "mean": value, "low": np.nan, "high": np.nan}
                     for f in (0.06, 1.0)]
    rows += [{"model": "majority_accuracy", "f": f, "metric": "classification.accuracy", "mean": 0.55, "low": np.nan,
              "high": np.nan} for f in (0.06, 1.0)]
    spec = table_spec("1")  # its reference row: the majority baseline
    figure = captured_figure(monkeypatch, lambda: measures_plot(pd.DataFrame(rows), spec))
    axes = {axis.get_title().split(" (")[0]: axis for axis in figure.axes if axis.get_visible()}
    assert axes["oracle Fréchet"].get_yscale() == "log"
    assert axes["accuracy"].get_yscale() == "linear"
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert {"floor: does nothing", "ceiling: renderer", "ceiling: real images"} <= set(legend)
    assert "majority_accuracy" not in legend and "majority baseline" in legend
    colours = [line.get_color() for line in figure.legends[0].get_lines()]
    assert len(set(colours)) == len(colours)  # no two entries share a colour


def test_training_curves_run_over_optimiser_steps_with_whole_ticks(monkeypatch, tmp_path):
    from bench.report import training_curves

    log = pd.DataFrame({"epoch": [1, 2, 3], "steps": [250, 500, 750], "sup_loss": [2700.0, 2400.0, 2300.0],
                        "unsup_loss": [2600.0, 2500.0, 2450.0], "valid_accuracy": [0.6, 0.7, 0.75]})
    (tmp_path / "run").mkdir()
    log.to_csv(tmp_path / "run" / "train_log.csv", index=False)
    figure = captured_figure(monkeypatch, lambda: training_curves({"ccvae": (None, tmp_path / "run")}))
    for axis in figure.axes:
        assert axis.get_xlabel() == "optimiser steps"
        ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick <= axis.get_xlim()[1]]
        assert all(float(tick).is_integer() for tick in ticks)
        visible = [t for t in axis.get_yticks() if axis.get_ylim()[0] <= t <= axis.get_ylim()[1]]
        assert len(visible) >= 3  # a loss axis with more than one tick


@pytest.mark.slow  # it reads the trained CI grid
def test_the_gallery_shows_every_model_at_every_rate(ci_runs, tmp_path):
    from bench.report import gallery_runs

    chosen = gallery_runs(ci_runs, "synthfaces")
    assert chosen and all([config.f for config, _ in runs] == sorted({c.f for c, _ in runs}) for runs in
                          chosen.values())
    assert all(config.seed == min(c.seed for c, _ in runs) for runs in chosen.values() for config, _ in runs)


def test_the_reports_page_does_not_scroll_sideways():
    from bench.report import STYLE

    assert "overflow-x:auto" in STYLE and "img{max-width:100%}" in STYLE  # wide tables scroll inside themselves
