"""Baseline models (M2, MVAE, modified DIVA, CSVAE), one per file, each registered in `bench/models.py`."""
