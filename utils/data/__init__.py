"""Data: the one image loader and mask rule, image/mask pairs, the training dataset, splits,
texture maps, and the reports of the data-preparation steps. Knows nothing of faces or models."""
