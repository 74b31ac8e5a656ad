"""Training: the loop behind train.py (loop.py) and cross-validation over fixed folds
(crossval.py)."""
