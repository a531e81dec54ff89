"""Run a jupytext notebook with papermill, in-process (no dagstermill), keeping the executed
.ipynb. A failed cell raises ``NotebookError`` naming the notebook and the kept output."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import jupytext
import papermill
from papermill.exceptions import PapermillExecutionError

from tradeloop.errors import TradeloopError

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


class NotebookError(TradeloopError):
    """A research notebook failed; its executed copy shows the failing cell."""

    exit_code = 7


@dataclass(frozen=True)
class NotebookRun:
    notebook: Path
    output: Path  # the executed .ipynb
    parameters: dict
    seconds: float


def notebook_path(name: str, notebook_dir: Path | None = None) -> Path:
    path = (notebook_dir or NOTEBOOK_DIR) / f"{name}.py"
    if not path.exists():
        raise NotebookError(f"notebook {name!r} not found at {path}; notebooks live in notebooks/<name>.py")
    return path


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def run_notebook(source: Path, output: Path, parameters: dict, *, cwd: Path | None = None,
                 timeout_s: int = 1800) -> NotebookRun:
    """Execute ``source`` (py:percent) with ``parameters`` injected; the run is kept at ``output``."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # plots render inline even if this process chose a headless backend (streamlit sets Agg)
    backend, os.environ["MPLBACKEND"] = os.environ.get("MPLBACKEND"), INLINE_BACKEND
    try:
        papermill.execute_notebook(
            jupytext.read(source), str(output), parameters=parameters, language="python",
            kernel_name="python3", cwd=str(cwd) if cwd else None, progress_bar=False,
            execution_timeout=timeout_s, log_output=False,
        )
    except PapermillExecutionError as exc:
        raise NotebookError(f"notebook {source.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}; "
                            f"see the executed copy {output}") from None
    finally:
        if backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = backend
    return NotebookRun(Path(source), output, dict(parameters), time.perf_counter() - started)
