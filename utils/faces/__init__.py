"""Faces: detection and 68 landmarks (detection.py), FFHQ alignment and paste-back
(alignment.py), landmark regions and their statistics (regions.py), and photos made from aligned
faces for tests and benchmarks (photos.py). Knows nothing of the wrinkle models."""
