"""python -m pipelines.replay without a champion: an error naming the fix, or (for make demo,
after the gate refused every candidate) a clear sentence and a clean exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def replay(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"TRADELOOP_DATA_DIR": str(data), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.replay", "--strategy", "breakout", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_champion_is_an_error_unless_the_demo_asks_to_skip(tmp_path: Path) -> None:
    refused = replay(tmp_path)
    assert refused.returncode == 2 and "run the research pipeline first" in refused.stdout
    skipped = replay(tmp_path, "--skip-without-champion")
    assert skipped.returncode == 0, skipped.stderr
    assert "nothing to trade out of sample; no session replayed" in skipped.stdout
