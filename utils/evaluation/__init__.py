"""Evaluation: the one metric collection (metrics.py), a model over a loader (validation.py,
used by training too) and evaluate.py's evaluation of a checkpoint (evaluate.py)."""
