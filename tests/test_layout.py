"""The architecture, checked from the source: who may import whom, and how large a module may grow.

The artifact format is the contract between the trainer and the server (STYLE.md, habit 1). These tests read
every module's import statements (without importing anything) and pin the walls: the serving side never
imports the trainer, and the trainer reaches the server package only through the artifact format, the shared
rules and the ranking code it evaluates.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: What the trainer may import from the server package: the artifact format it writes, the settings, the
#: shared id/day rules and errors, the ranking code its evaluation scores, the live-event store it reads, and
#: the attribution rules the online report shares with the servers' metrics.
TRAINER_MAY_IMPORT = ("recsvc.artifacts", "recsvc.config", "recsvc.ids", "recsvc.days", "recsvc.errors",
                      "recsvc.ranking", "recsvc.events", "recsvc.logs", "recsvc.feedback")
#: The command line (the package and its modules) is the one entry point of both sides, so it alone may start
#: the trainer.
ENTRY_POINTS = ("recsvc.cli", "recsvc.__main__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports, at any depth (lazy imports inside functions included)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    return _imported_names(path.read_text(), package)


def _imported_names(source: str, package: str) -> set[str]:
    """Absolute module names a module of ``package`` imports (``from . import x`` resolved against it)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (SRC / package).rglob("*.py") if "v1" not in p.relative_to(SRC / package).parts)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("path", _modules("recsvc"), ids=lambda p: _module_name(p))
def test_serving_side_never_imports_the_trainer(path: Path) -> None:
    if _within(_module_name(path), ENTRY_POINTS):
        pytest.skip("the command line starts both sides")
    trainer = sorted(n for n in _imports(path) if _within(n, ("recsvc_training",)) or n.endswith(".TrainingSettings"))
    assert not trainer, f"{_module_name(path)} imports the trainer or its settings: {trainer}"


@pytest.mark.parametrize("path", _modules("recsvc_training"), ids=lambda p: _module_name(p))
def test_trainer_meets_the_server_only_through_the_contract(path: Path) -> None:
    server = sorted(n for n in _imports(path)
                    if _within(n, ("recsvc",)) and not _within(n, TRAINER_MAY_IMPORT) and n != "recsvc")
    assert not server, f"{_module_name(path)} reaches into {server}; the trainer meets the server through " \
                       f"{', '.join(TRAINER_MAY_IMPORT)}"


def test_import_reader_sees_relative_and_lazy_imports() -> None:
    """The reader the tests above rely on: an import inside a function and a relative import both count."""
    source = "def f():\n    from recsvc_training.pipeline import train\nfrom ..ranking import model\n"
    names = _imported_names(source, "recsvc.server")
    assert "recsvc_training.pipeline.train" in names
    assert "recsvc.ranking.model" in names
