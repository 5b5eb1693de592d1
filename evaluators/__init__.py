"""Independent evaluators: pure functions of (model, data, oracle, generator, settings).

Each module's `evaluate` returns plain numbers (a JSON-able dict) and looks at a model only
through `bench/api.py`. `bench/evaluate.py` runs them for a run directory.
"""

from __future__ import annotations

from evaluators import classification, conditional, fid, ground_truth, interventions, mutual_info, swap

EVALUATORS = {
    "classification": classification.evaluate,
    "swap": swap.evaluate,
    "interventions": interventions.evaluate,
    "conditional": conditional.evaluate,
    "fid": fid.evaluate,
    "mutual_info": mutual_info.evaluate,
    "ground_truth": ground_truth.evaluate,
}
