"""Baseline models (M2, MVAE, modified DIVA, CSVAE), one per file; see issue 3."""
