"""Progress of an optuna study that runs elsewhere (a papermill kernel, worker processes):
a thread reads the study's storage and reports each newly finished trial.

The study runs inside the thresholds notebook's kernel (and its workers), so the process
that started the run cannot hook optuna's callbacks; it can read the storage they share.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tradeloop.research.tuning import make_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True, slots=True)
class TrialProgress:
    """Where a study stands: ``finished`` of ``total`` trials, the best value so far (None
    before a trial completes) and the study's name."""

    study: str
    finished: int
    total: int
    best: float | None


class StudyWatcher:
    """Reads the storage (``study_dir``'s journal, or the ``storage`` URL) every ``interval_s``
    and calls ``on_progress`` when the watched study gains a finished trial.

    The study watched is the one with the latest trial started since the watch began (a new
    study, or a resumed one). Use as a context manager around the work; the last state is
    reported on exit. Errors
    while reading (a storage still being created) are retried on the next poll: watching
    never fails the run it watches.
    """

    def __init__(
        self,
        *,
        study_dir: Path,
        storage: str | None,
        total: int,
        on_progress: Callable[[TrialProgress], None],
        interval_s: float = 1.0,
    ) -> None:
        if total < 1:
            raise ValueError(f"total={total} must be at least 1 (the study's n_trials)")
        self.study_dir = Path(study_dir)
        self.storage_url = storage
        self.total = total
        self.on_progress = on_progress
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="study-watcher", daemon=True)
        self._since: datetime | None = None
        self._reported = -1

    def __enter__(self) -> StudyWatcher:
        self._since = datetime.now()  # optuna stamps study starts in local naive time
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def poll(self) -> TrialProgress | None:
        """Read the storage once; report and return the progress when it moved."""
        try:
            progress = self._read()
        except Exception:  # noqa: BLE001 - a storage being created or written; the next poll retries
            return None
        if progress is None or progress.finished == self._reported:
            return None
        self._reported = progress.finished
        self.on_progress(progress)
        return progress

    def _read(self) -> TrialProgress | None:
        if self.storage_url is None and not (self.study_dir / "journal.log").exists():
            return None
        storage = make_storage(study_dir=self.study_dir, storage=self.storage_url)
        since = self._since or datetime.min
        active: list[tuple[datetime, str, list]] = []  # studies with a trial started since the watch began
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            trials = storage.get_all_trials(storage.get_study_id_from_name(summary.study_name), deepcopy=False)
            starts = [t.datetime_start for t in trials if t.datetime_start is not None]
            last = max(starts, default=summary.datetime_start or datetime.min)
            if last >= since:  # a new study, or an older one resumed (same data version)
                active.append((last, summary.study_name, trials))
        if not active:
            return None
        _, name, trials = max(active, key=lambda item: item[0])
        finished = [t for t in trials if t.state in FINISHED]
        values = [t.value for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
        return TrialProgress(study=name, finished=len(finished), total=self.total, best=max(values) if values else None)


def progress_text(progress: TrialProgress) -> str:
    """``optuna: 3/10 trials finished (study breakout-4h-..., best 0.0283 so far)``."""
    best = "no completed trial yet" if progress.best is None else f"best {progress.best:.4f} so far"
    return f"optuna: {progress.finished}/{progress.total} trials finished (study {progress.study}, {best})"


class TerminalProgress:
    """Shows trial progress to people: a rich progress bar on a terminal, one line per
    finished trial otherwise (a CI log, `dagster dev`'s captured output). ``log`` also gets
    each line (the Dagster run's log)."""

    def __init__(self, *, total: int, log: Callable[[str], None] | None = None, stream=None) -> None:
        import sys

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.stream = stream or sys.stderr
        self.log = log
        self.console = Console(file=self.stream)
        self.bar = (
            Progress(
                TextColumn("optuna trials"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[best]}"),
                console=self.console,
                transient=False,
            )
            if self.console.is_terminal
            else None
        )
        self.task = self.bar.add_task("trials", total=total, best="") if self.bar else None

    def __enter__(self) -> TerminalProgress:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def __call__(self, progress: TrialProgress) -> None:
        text = progress_text(progress)
        if self.log:
            self.log(text)
        if self.bar is not None and self.task is not None:
            best = "" if progress.best is None else f"best {progress.best:.4f}"
            self.bar.update(self.task, completed=progress.finished, total=progress.total, best=best)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()
