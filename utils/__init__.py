"""The library the scripts share, one package per stage of the pipeline.

    data/        images, masks, pairs, the dataset, splits, texture maps, data-step reports
    faces/       detection and 68 landmarks, FFHQ alignment and paste-back, regions, test photos
    inference/   model loading, backends, the predictor, export, batch prediction
    evaluation/  metrics, validation over a loader, evaluate.py's evaluation
    training/    the training loop, cross-validation

A stage imports only the stages before it (data < faces < inference < evaluation < training).
The modules at this level are shared by every stage (errors, io, config, runtime, checkpoints,
distributed) or are the layers users see (visualisation, comparison, the demo, script flags).
"""
