"""Research notebooks: run, found, and shown in JupyterLab.

- ``run_notebook`` runs a jupytext notebook with papermill, in-process (no dagstermill),
  keeping the executed .ipynb; a failed cell raises ``NotebookError`` naming the notebook
  and the kept output.
- A notebook's path parameters default to None and ``research_paths()`` resolves them from
  the settings, so Run All in JupyterLab (whose kernel starts in notebooks/) reads and writes
  the files the pipeline does; the pipeline passes explicit paths.
- JupyterLab as the project serves it (``make lab``, ``tradeloop up``): ``lab_environment``
  puts the configuration in jupyter/ on JUPYTER_CONFIG_PATH (root at the repository, so
  notebooks/ and data/runs/ both show); ``lab_link`` is a file's address there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tradeloop.errors import TradeloopError

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
LAB_ROOT = NOTEBOOK_DIR.parent  # JupyterLab's root in `make lab` (jupyter/jupyter_lab_config.py)
LAB_CONFIG_DIR = LAB_ROOT / "jupyter"  # that configuration, found through JUPYTER_CONFIG_PATH


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


def run_notebook(
    source: Path, output: Path, parameters: dict, *, cwd: Path | None = None, timeout_s: int = 1800
) -> NotebookRun:
    """Execute ``source`` (py:percent) with ``parameters`` injected; the run is kept at ``output``."""
    import jupytext  # imported here: the CLI imports this module for Lab's paths, not to run notebooks
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(source)
    # the executed copy is a notebook of its own: pairing it with a .py (jupytext's "formats")
    # makes JupyterLab refuse to open it ("matches none of the export formats")
    notebook.metadata.get("jupytext", {}).pop("formats", None)
    started = time.perf_counter()
    # plots render inline even if this process chose a headless backend (streamlit sets Agg)
    backend, os.environ["MPLBACKEND"] = os.environ.get("MPLBACKEND"), INLINE_BACKEND
    try:
        papermill.execute_notebook(
            notebook,
            str(output),
            parameters=parameters,
            language="python",
            kernel_name="python3",
            cwd=str(cwd) if cwd else None,
            progress_bar=False,
            execution_timeout=timeout_s,
            log_output=False,
            # the kernel's own log is noise in a successful run: start-up warnings (plain-TCP
            # loopback), and "KeyboardInterrupt caught in kernel" when jupyter_client's shutdown
            # interrupts (SIGINT) a kernel still finishing its last reply. A failing cell or a dead
            # kernel reaches us as papermill's error, with the executed copy to read
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    except PapermillExecutionError as exc:
        raise NotebookError(
            f"notebook {source.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}; "
            f"see the executed copy {output}"
        ) from None
    finally:
        if backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = backend
    return NotebookRun(Path(source), output, dict(parameters), time.perf_counter() - started)


@dataclass(frozen=True, kw_only=True, slots=True)
class ResearchPaths:
    """Where the research notebooks write, under one research folder (the pipeline's layout)."""

    features: Path  # features.parquet (notebooks/features.py)
    thresholds: Path  # model/, tuning.json, evaluation.npz, study/ (notebooks/thresholds.py)
    backtest: Path  # metrics.json, equity.parquet, trades.parquet (notebooks/backtest.py)

    @classmethod
    def under(cls, research_dir: Path) -> ResearchPaths:
        base = Path(research_dir)
        return cls(features=base / "features.parquet", thresholds=base / "thresholds", backtest=base / "backtest")


def research_paths() -> ResearchPaths:
    """The layout under the settings' research folder (``TRADELOOP_DATA_DIR/research``)."""
    from tradeloop.settings import get_settings

    return ResearchPaths.under(get_settings().research_dir)


def lab_link(path: Path, *, lab_url: str, lab_root: Path = LAB_ROOT) -> str | None:
    """The address that opens ``path`` in JupyterLab served from ``lab_root`` at ``lab_url``
    (``TRADELOOP_LAB_URL``), or None when ``path`` lies outside ``lab_root`` (Lab cannot show it)."""
    try:
        relative = Path(path).resolve().relative_to(Path(lab_root).resolve())
    except ValueError:
        return None
    return f"{lab_url.rstrip('/')}/lab/tree/{quote(relative.as_posix())}"


def lab_environment(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with the project's JupyterLab configuration first on JUPYTER_CONFIG_PATH
    (what `make lab` does): root at the repository, jupytext's notebooks opened as notebooks,
    the data folder passed to kernels absolute, ``allow_root`` decided from the user id."""
    others = [p for p in environ.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]
    return {**environ, "JUPYTER_CONFIG_PATH": os.pathsep.join([str(LAB_CONFIG_DIR), *others])}
