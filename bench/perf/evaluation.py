"""`bench perf`'s evaluator measurements: each evaluator's throughput on a synthetic set."""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench import models
from bench.errors import BenchError
from bench.perf.timing import CELEBA_LABELS, PerfSettings, spec_of, synchronise, synthetic_images


def evaluator_rates(device: torch.device, settings: PerfSettings, names: list[str],
                    fid_weights: str | None = None) -> list[dict]:
    """Images per second of each evaluator on synthetic sets, with an untrained CCVAE and oracle.

    Each evaluator runs at the smoke preset's budget with `settings.eval_samples` samples, and with the resources
    any caller passes (a missing file replaced by its `stand_in`, whose note its row carries); what it shares
    across runs (its `prepare`: mutual_info's GP head) is built before the clock starts and read from the cache
    during the timing."""
    from bench.budgets import EvalSettings
    from bench.presets import preset
    from evaluators import EVALUATORS
    from evaluators.common import Resources
    from evaluators.oracle import OracleNet

    eval_settings = EvalSettings(seed=settings.seed)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            evaluator = EVALUATORS[name]
            budget = preset("smoke").budget_for(evaluator)
            if budget is not None:
                budget = replace(budget, samples=settings.eval_samples)
            task = evaluator.tasks[0]  # the first task it is defined for: CelebA-like labels, or ten classes
            labels = CELEBA_LABELS if task == "multilabel" else 10
            data = synthetic_images(2000, settings.image_size, labels, task, settings.seed)
            torch.manual_seed(settings.seed)
            model = models.resolve("ccvae")(spec_of(data)).to(device).eval()
            oracle = OracleNet(3, settings.image_size, labels, task).to(device).eval()
            resources, note = Resources(cache=Path(scratch) / f"perf-{name}.pt", fid_weights=fid_weights), ""
            if evaluator.stand_in is not None:
                resources, note = evaluator.stand_in(resources, Path(scratch), device)
            if evaluator.prepare is not None:  # what it shares across runs is built before the clock starts
                evaluator.prepare(data, oracle, resources, budget, device)
            torch.manual_seed(settings.seed)
            started = time.perf_counter()
            result = evaluator.evaluate(model, data, oracle, torch.Generator().manual_seed(settings.seed),
                                        eval_settings, resources, budget)
            synchronise(device)
            seconds = time.perf_counter() - started
            key, unit = evaluator.count
            count = result.get(key)
            if count is None:
                raise BenchError(f"evaluator {name} returned no '{key}' on the perf set: {result}")
            rows.append({"model": "ccvae", "mode": f"eval:{name}", "batch": eval_settings.batch_size,
                         "images_per_s": count / seconds, "unit": unit, "note": note})
    return rows
