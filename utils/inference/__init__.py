"""Inference: model loading (this project's and third-party checkpoints, loading.py), backends
(torch, OpenVINO; backends.py), the one predictor (predictor.py), export for shipping and
deployment (export.py), and folders of photos (batch.py)."""
