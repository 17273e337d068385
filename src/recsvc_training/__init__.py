"""recsvc's offline trainer: reads a data folder (the input contract in :mod:`recsvc_training.input.columns`),
builds the models and publishes an artifact set through :mod:`recsvc.artifacts`."""
