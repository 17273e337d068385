"""The trainer's steps import nothing of the pipeline that runs them, and no import hides inside a function.

Pins issue 12 (architecture item 2): the ranker was trained inside the quality gate, and a pipeline <-> quality
import cycle was broken by importing inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import recsvc_training

PACKAGE = Path(recsvc_training.__file__).parent


def test_no_trainer_module_imports_the_trainer_inside_a_function() -> None:
    lazy = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    names = ([inner.module or ""] if isinstance(inner, ast.ImportFrom)
                             else [a.name for a in inner.names] if isinstance(inner, ast.Import) else [])
                    lazy += [f"{path.relative_to(PACKAGE)}:{getattr(inner, 'lineno', 0)} {n}" for n in names
                             if n.startswith("recsvc_training")]
    assert lazy == []


def test_the_steps_load_without_the_pipeline() -> None:
    code = ("import sys\n"
            "import recsvc_training.ranker.step, recsvc_training.evaluation.holdout, recsvc_training.evaluation.gate\n"
            "print('recsvc_training.pipeline' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


def test_the_gate_is_a_decision_over_the_evaluation_block() -> None:
    from recsvc.config import TrainingSettings
    from recsvc_training.evaluation.gate import GateDecision, QualityGateError, decide

    summary = {"default": {"ndcg@10": 0.10}, "baselines": {"buy_it_again": {"ndcg@10": 0.12}}}
    refused = decide(summary, None, TrainingSettings())
    assert isinstance(refused, GateDecision) and not refused.passed and not refused.forced
    try:
        refused.enforce()
    except QualityGateError as exc:
        assert "below 1 x the 'buy_it_again' baseline" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a refused set must raise")
    forced = decide(summary, None, TrainingSettings(), force=True)
    forced.enforce()  # warns, publishes
    assert forced.as_dict() == {"passed": False, "failures": list(refused.failures), "forced": True}
    assert decide({"default": {"ndcg@10": 0.2}, **{k: v for k, v in summary.items() if k != "default"}},
                  {"default": {"ndcg@10": 0.2}}, TrainingSettings()).passed
