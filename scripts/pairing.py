"""Does pairing two models' runs by training seed remove variance? The measurement behind the protocol's choice of
unpaired tests (bench/protocol.py).

Runs of two models at the same (data set, f, seed) share their labelled subset, so a seed effect shared by both
would make var(a − b) smaller than var(a) + var(b). This prints, per stored set, var(a − b) / (var a + var b)
pooled over every pair of models, metric and f with at least three common seeds (1: pairing removes nothing;
paired tests then only halve the degrees of freedom).

Usage: python scripts/pairing.py [results/stored/standard results/stored/quick ...]
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def pairing_ratio(results: pd.DataFrame) -> tuple[float, int]:
    """(Σ var(a − b) / Σ (var a + var b), the number of pairs) over a results.csv's model pairs, metrics and f."""
    runs = results[results.f.notna()].groupby(["dataset", "metric", "f", "model", "seed"]).value.mean()
    difference = total = 0.0
    pairs = 0
    for _, cell in runs.groupby(level=["dataset", "metric", "f"]):
        table = cell.unstack("model").droplevel(["dataset", "metric", "f"])
        for a, b in itertools.combinations(table.columns, 2):
            both = table[[a, b]].dropna()
            if len(both) < 3 or both[a].var() + both[b].var() == 0:
                continue
            difference += (both[a] - both[b]).var()
            total += both[a].var() + both[b].var()
            pairs += 1
    return difference / total, pairs


def main() -> None:
    sets = [Path(arg) for arg in sys.argv[1:]] or [ROOT / "results" / "stored" / name for name in ("standard", "quick")]
    for stored in sets:
        ratio, pairs = pairing_ratio(pd.read_csv(stored / "results.csv"))
        print(f"{stored.name}: var(a − b) / (var a + var b) = {ratio:.3f} over {pairs} pairs of models × metrics × f")


if __name__ == "__main__":
    main()
