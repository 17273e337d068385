"""The Spark session's settings that need no JVM: shuffle partitions and the local workers' Python."""

from __future__ import annotations

import sys

import pytest

from recsvc_training.spark.session import default_shuffle_partitions, local_worker_python


def test_local_workers_run_this_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    # recsvc run from a venv that is not activated: Spark would start "python3" from PATH for its UDFs
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    assert local_worker_python("local[2]") == sys.executable
    assert local_worker_python("local[*]") == sys.executable


def test_an_explicit_worker_python_or_a_cluster_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    assert local_worker_python("spark://head:7077") is None
    assert local_worker_python(None) is None  # spark-submit configured the session
    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/python/bin/python3")
    assert local_worker_python("local[2]") is None


def test_shuffle_partitions_follow_the_local_cores() -> None:
    assert default_shuffle_partitions("local[3]") == 6
    assert default_shuffle_partitions("local") == 2
    assert default_shuffle_partitions("yarn") == 200
