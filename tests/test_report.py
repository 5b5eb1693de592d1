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

    from bench.claims import CLAIMS, evaluate_claims
    from bench.report import forest_png, verdicts_html

    stored = pd.read_csv(Path(__file__).resolve().parents[1] / "results" / "stored" / "standard" / "results.csv")
    text = verdicts_html(stored)
    rows = evaluate_claims(stored)
    measured = [claim for claim in CLAIMS if rows[(rows.claim == claim.key)].effect.notna().any()]
    assert text.count("class=plot") == len(measured) >= 6
    assert "interim (3 of 5 seeds): holds (all 12)" in text and "protocol 1" in text
    png = forest_png(CLAIMS[0], rows[rows.claim == "1"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert forest_png(CLAIMS[-1], rows[rows.claim == "7-mi"]) is None  # nothing measured: no plot


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
