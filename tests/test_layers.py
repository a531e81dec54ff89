"""The layer contracts (pyproject's [tool.importlinter], run by ``make lint``) can fail.

``make lint`` shows the tree keeps them; these tests show that they catch what DESIGN.md
forbids: each plants one forbidden import in a copy of the packages and requires
``lint-imports`` to report that contract broken, naming the import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The four packages and pyproject.toml, copied (run from there, lint-imports reads the copy)."""
    for package in ("tradeloop", "live", "pipelines", "api"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_copied_tree_keeps_the_contracts(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        ("tradeloop/data/atomic.py", "import live.bus", "tradeloop is not allowed to import live"),
        ("tradeloop/settings.py", "import streamlit", "tradeloop is not allowed to import streamlit"),
        ("tradeloop/retry.py", "def _later():\n    import app.sources", "tradeloop is not allowed to import app"),
        ("tradeloop/registry/store.py", "import dagster", "tradeloop is not allowed to import dagster"),
        ("tradeloop/ops/store.py", "import pipelines.run", "tradeloop is not allowed to import pipelines"),
        ("tradeloop/performance/format.py", "import fastapi", "tradeloop is not allowed to import fastapi"),
        ("live/locks.py", "import pipelines.metadata", "live is not allowed to import pipelines"),
        ("live/outage.py", "import dagster", "live is not allowed to import dagster"),
        ("live/outbox.py", "from tradeloop.cli.common import fmt_ts", "live is not allowed to import tradeloop.cli"),
        ("live/outbox.py", "import api.deps", "live is not allowed to import api"),
        ("tradeloop/identity/store.py", "import api.context", "tradeloop is not allowed to import api"),
        ("api/deps.py", "import live.engine", "api is not allowed to import live"),
        ("api/routers/health.py", "import pipelines.run", "api is not allowed to import pipelines"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tree: Path, module: str, planted: str, broken: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{planted}  # planted by tests/test_layers.py\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout  # the report names the importer
