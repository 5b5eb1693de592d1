"""Independent evaluators, pure functions of (model, data, oracle, rng); see issue 4."""
