"""optuna trial workers: several processes, on one machine or many, sharing one study.

A study lives in its storage (a journal file on one machine, or a database): every worker
that opens the same study name on the same storage asks the sampler for its next trial
and writes the trial back, returns included, so no worker needs another's files. On one
machine ``tune(..., config=TuningConfig(workers=N))`` starts N worker processes. To grow
past one machine, point workers on other machines at the same PostgreSQL database:

    python -m tradeloop.research.workers --storage postgresql+psycopg://... \\
        --study sma_cross-4h-<version>-<config> --candles features.parquet --timeframe 4h

Each worker checks that its candles have the study's data version (the hash recorded when
the study was created) and refuses to score other data. Workers stop once the study has
``n_trials`` finished trials, whoever ran them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import polars as pl

from tradeloop.backtest import BacktestConfig
from tradeloop.errors import ConfigError

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


def work(
    candles: pl.DataFrame,
    *,
    study_name: str,
    timeframe: str,
    study_dir: Path,
    storage: str | None,
    backtest: BacktestConfig | None = None,
) -> int:
    """Run trials of the study until it has its ``n_trials``; returns how many this worker ran."""
    from tradeloop.research.tuning import TuningConfig, data_version, objective_of, open_study

    probe = optuna.load_study(study_name=study_name, storage=_storage(study_dir, storage))
    config = TuningConfig.model_validate(probe.user_attrs["config"])
    version = data_version(candles)
    if probe.user_attrs.get("data_version") != version:
        raise ConfigError(
            f"these candles (data version {version[:12]}) are not the data of study {study_name!r} "
            f"({str(probe.user_attrs.get('data_version'))[:12]}); give the worker the study's candles"
        )
    study = open_study(
        config.model_copy(update={"seed": config.seed + os.getpid()}),
        name=study_name,
        study_dir=study_dir,
        storage=storage,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    before = _mine(study)
    study.optimize(
        _tagged(objective_of(candles, config=config, timeframe=timeframe, backtest=backtest)),
        catch=(ConfigError,),
        callbacks=[optuna.study.MaxTrialsCallback(config.n_trials, states=FINISHED)],
    )
    return _mine(study) - before


def _tagged(objective):
    def run(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
        return objective(trial)

    return run


def _mine(study: optuna.Study) -> int:
    me = f"{os.uname().nodename}:{os.getpid()}"
    return sum(1 for t in study.trials if t.user_attrs.get("worker") == me)


def _storage(study_dir: Path, storage: str | None):
    from tradeloop.research.tuning import make_storage

    return make_storage(study_dir=study_dir, storage=storage)


def run_workers(
    candles: pl.DataFrame,
    *,
    config,
    timeframe: str,
    study_name: str,
    study_dir: Path,
    storage: str | None,
    backtest: BacktestConfig | None = None,
) -> None:
    """``config.workers`` worker processes on this machine (``python -m tradeloop.research.workers``,
    the same command as on other machines), until the study has its trials."""
    with tempfile.TemporaryDirectory(prefix="tradeloop-workers-") as tmp:
        path = Path(tmp) / "candles.parquet"
        candles.write_parquet(path)
        command = [
            sys.executable,
            "-m",
            "tradeloop.research.workers",
            "--study",
            study_name,
            "--candles",
            str(path),
            "--timeframe",
            timeframe,
            "--study-dir",
            str(study_dir),
        ]
        if storage:
            command += ["--storage", storage]
        if backtest is not None:
            command += ["--backtest", backtest.model_dump_json()]
        procs = [subprocess.Popen(command) for _ in range(config.workers)]
        codes = [proc.wait() for proc in procs]
        if any(codes):
            raise ConfigError(f"optuna worker processes exited with {codes}; see their log above")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run trials of a shared optuna study (see the module doc).")
    parser.add_argument(
        "--storage",
        help="SQLAlchemy URL of the study's database (default: the journal file "
        "in --study-dir, for workers on this machine)",
    )
    parser.add_argument("--study-dir", default=".", help="folder of the journal file")
    parser.add_argument("--backtest", help="BacktestConfig as JSON (default: the tuning's)")
    parser.add_argument("--study", required=True, help="study name (strategy-timeframe-data version)")
    parser.add_argument("--candles", required=True, help="Parquet file of the study's candles (long frame)")
    parser.add_argument("--timeframe", required=True)
    args = parser.parse_args(argv)
    backtest = BacktestConfig.model_validate_json(args.backtest) if args.backtest else None
    ran = work(
        pl.read_parquet(args.candles),
        study_name=args.study,
        timeframe=args.timeframe,
        study_dir=Path(args.study_dir),
        storage=args.storage,
        backtest=backtest,
    )
    print(f"worker ran {ran} trial(s) of {args.study}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
