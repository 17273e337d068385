"""The trainer on Spark: ``recsvc train --engine spark`` (the optional ``spark`` extra, pyspark).

The same input contract, validation and artifact set as the single-node trainer, with the work that grows with
the event log done as Spark jobs, in the order a run takes them:

* :mod:`.session`: the SparkSession (``local[*]`` by default, any master URL, or spark-submit's);
* :mod:`.ingest`: events read and validated in Spark (the same reasons, counts and quarantine files as
  :mod:`recsvc_training.input.ingest`); the catalog-sized tables (items, customers, identities, stock) through
  the single-node cleaning, whose rules they then share by construction;
* :mod:`.events`: the events as integer rows of the id maps, with their signed weights;
* :mod:`.als` (Spark MLlib ALS, implicit preferences), :mod:`.popularity`, :mod:`.history` (purchase history
  and repurchase rhythm), :mod:`.copurchase` (an exact self-join with minimum support), :mod:`.rfm`;
* :mod:`.assemble`: the collected results as the artifact parts of :mod:`recsvc.artifacts.parts`;
* :mod:`.train`: the run (ingest, build, publish with :func:`recsvc.artifacts.publish_artifacts`).

The learned ranker, LightFM cold start and the held-out evaluation are not run by this engine; the run summary
says so (see :mod:`.train`). pyspark is imported only here, so the rest of the trainer never needs it.
"""
