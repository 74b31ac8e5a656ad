"""The library that the scripts share: data, masks, config, checkpoints, metrics, inference."""
