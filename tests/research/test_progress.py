"""The study watcher follows a study another thread writes through the shared journal file,
reports each newly finished trial once, and ignores studies nobody works on now."""

from __future__ import annotations

import time
from pathlib import Path

import optuna

from tradeloop.research.progress import StudyWatcher, TrialProgress, progress_text
from tradeloop.research.tuning import make_storage


def test_the_watcher_reports_each_finished_trial_of_the_study_being_worked(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(study_dir=tmp_path)
    old = optuna.create_study(study_name="old", storage=storage, direction="maximize")
    old.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)  # finished before the watch: not followed
    seen: list[TrialProgress] = []
    values = iter([0.2, 0.7, 0.1, 0.4, 0.3])

    def objective(trial: optuna.Trial) -> float:
        time.sleep(0.15)  # slower than the watcher's polls, so it sees trials one by one
        if trial.number == 2:
            raise optuna.TrialPruned()
        return next(values)

    with StudyWatcher(study_dir=tmp_path, storage=None, total=5, on_progress=seen.append, interval_s=0.05):
        study = optuna.create_study(study_name="new", storage=make_storage(study_dir=tmp_path), direction="maximize")
        study.optimize(objective, n_trials=5)
    assert {p.study for p in seen} == {"new"}
    counts = [p.finished for p in seen]
    assert counts == sorted(set(counts)) and counts[-1] == 5  # each count once, increasing, ending at the total
    assert len(counts) >= 3  # progress, not only the final state
    assert seen[-1].best == study.best_value == 0.7
    assert "5/5 trials finished" in progress_text(seen[-1]) and "best 0.7000" in progress_text(seen[-1])


def test_a_resumed_study_is_followed_and_a_missing_storage_reports_nothing(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seen: list[TrialProgress] = []
    with StudyWatcher(study_dir=tmp_path / "none", storage=None, total=3, on_progress=seen.append, interval_s=0.05):
        time.sleep(0.2)
    assert seen == []
    storage = make_storage(study_dir=tmp_path)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with StudyWatcher(study_dir=tmp_path, storage=None, total=4, on_progress=seen.append, interval_s=0.05):
        time.sleep(0.1)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert seen and seen[-1].finished == 4 and seen[-1].total == 4 and seen[-1].study == "s"
    assert progress_text(TrialProgress("s", 0, 4, None)).endswith("no completed trial yet)")


def test_off_a_terminal_each_trial_is_one_line_and_the_log_gets_it_too() -> None:
    import io

    from tradeloop.research.progress import TerminalProgress

    out, logged = io.StringIO(), []
    with TerminalProgress(total=3, log=logged.append, stream=out) as show:
        assert show.bar is None  # no terminal: no live bar to redraw
        show(TrialProgress("s", 1, 3, None))
        show(TrialProgress("s", 3, 3, 0.25))
    lines = out.getvalue().splitlines()
    assert lines == logged and len(lines) == 2
    assert lines[0].startswith("optuna: 1/3") and "best 0.2500" in lines[1]
