"""The learned ranker: LightGBM learning-to-rank fitted on label windows, converted to the server's numpy trees."""
