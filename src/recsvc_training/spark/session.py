"""The SparkSession a training run uses: local by default, any master URL, or the one spark-submit made.

Settings are chosen for a nightly batch job, not for a notebook: no UI, a shuffle partition count that fits the
cluster (Spark's default of 200 makes a small run on two cores spend most of its time in task overhead), the
session time zone UTC (day numbers and recency are computed in UTC, as in the single-node trainer), and Arrow
for the pandas exchange with the driver.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

#: The master of ``recsvc train --engine spark`` when no ``--master`` is given.
DEFAULT_MASTER = "local[*]"


class SparkUnavailableError(RuntimeError):
    """pyspark is not installed, or Spark cannot start (no Java 17+): the message says which and what to do."""


def require_pyspark() -> None:
    """Raise :class:`SparkUnavailableError` when pyspark cannot be imported."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise SparkUnavailableError("the Spark engine needs pyspark: pip install 'recsvc[spark]' "
                                    "(and Java 17 or newer)") from exc


def default_shuffle_partitions(master: str) -> int:
    """Shuffle partitions for ``master``: 2 x the cores of a ``local[N]`` master (4 for ``local[*]`` on
    two cores), else 200 (Spark's own default; a cluster run should set ``spark.sql.shuffle.partitions``)."""
    if master.startswith("local"):
        inside = master[master.find("[") + 1: master.find("]")] if "[" in master else "1"
        cores = (os.cpu_count() or 1) if inside in ("*", "") else int(inside.split(",")[0])
        return max(2 * cores, 2)
    return 200


def local_worker_python(master: str | None) -> str | None:
    """The Python a ``local`` master's workers run: this interpreter, unless ``PYSPARK_PYTHON`` says otherwise.

    Spark starts its Python workers with ``PYSPARK_PYTHON`` or else whatever ``python3`` is first on PATH, so
    ``/path/to/venv/bin/recsvc train --engine spark`` run without activating the venv ran its pandas UDFs in
    the system Python, which has no recsvc. On one machine the driver's interpreter is the right one; on a
    cluster (any other master) the executors' Python is the cluster's to configure, so None.
    """
    if master is None or not master.startswith("local") or os.environ.get("PYSPARK_PYTHON"):
        return None
    return sys.executable


def spark_session(master: str | None = DEFAULT_MASTER, app_name: str = "recsvc-train",
                  shuffle_partitions: int | None = None, driver_memory: str | None = None) -> SparkSession:
    """Get or create the run's SparkSession.

    Parameters
    ----------
    master
        A master URL (``local[2]``, ``spark://host:7077``, ``yarn``, ``k8s://...``); None keeps the one
        ``spark-submit --master`` configured (the session then already exists or is configured by it).
    shuffle_partitions
        ``spark.sql.shuffle.partitions``; default :func:`default_shuffle_partitions`.
    driver_memory
        ``spark.driver.memory`` (only effective when this call starts the JVM, i.e. not under spark-submit).

    Raises
    ------
    SparkUnavailableError
        pyspark is missing, or the JVM did not start (Java missing or older than 17).
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    partitions = shuffle_partitions or default_shuffle_partitions(master or "")
    builder = (builder.config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", str(partitions))
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.ansi.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false"))
    if driver_memory:
        builder = builder.config("spark.driver.memory", driver_memory)
    worker_python = local_worker_python(master)
    if worker_python is not None:
        # pyspark's SparkContext takes its workers' interpreter from this variable when it starts (the
        # spark.pyspark.python setting is read by spark-submit's launcher, not by a session made here)
        os.environ["PYSPARK_PYTHON"] = worker_python
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j raises plain RuntimeErrors/Exceptions when the JVM does not come up
        raise SparkUnavailableError(f"Spark did not start ({exc}); it needs Java 17 or newer on PATH or "
                                    "JAVA_HOME") from exc
    session.sparkContext.setLogLevel("WARN")
    logger.info("Spark %s, master %s, %s shuffle partitions", session.version, session.sparkContext.master,
                session.conf.get("spark.sql.shuffle.partitions"))
    return session
