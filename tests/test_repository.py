"""Repository habits that keep a clean clone honest: one version, a licence, pre-commit running CI's checks."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import recsvc

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_written_once() -> None:
    """pyproject takes the version from ``recsvc.__version__``; the installed metadata agrees with it."""
    assert importlib.metadata.version("recsvc") == recsvc.__version__
    assert not re.search(r'(?m)^version\s*=\s*"', (ROOT / "pyproject.toml").read_text())


def test_changelog_names_the_current_version() -> None:
    assert f"## [{recsvc.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_licence_matches_pyproject() -> None:
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def _command(text: str) -> str:
    """A command as the shell runs it from the activated venv: ``.venv/bin/ruff check .`` is ``ruff check .``."""
    return text.split('"$@"')[0].replace(".venv/bin/", "").strip()


def test_pre_commit_runs_every_check_ci_runs() -> None:
    """Every command scripts/test.sh runs after activating the venv is a pre-commit hook's entry."""
    script = (ROOT / "scripts" / "test.sh").read_text().splitlines()
    start = next(i for i, line in enumerate(script) if line.startswith(". .venv/bin/activate"))
    checks = [_command(line) for line in script[start + 1:] if line.strip() and not line.startswith("#")]
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    entries = [_command(m.group(1)) for m in re.finditer(r"entry:\s*(.+)", config)]
    assert checks, "scripts/test.sh runs no check after activating the venv"
    for check in checks:
        assert any(e == check or e.startswith(check + " ") for e in entries), f"pre-commit does not run {check!r}"
