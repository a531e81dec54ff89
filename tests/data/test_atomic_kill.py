"""A writer killed with SIGKILL in the middle of a write leaves the stored data intact."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.atomic import TMP_MARK

WRITER = textwrap.dedent(
    """
    import sys, numpy as np, polars as pl
    from tradeloop.data import CandleLake, SeriesKey
    lake = CandleLake(sys.argv[1])
    key = SeriesKey("binance", "BTC-USDT", "1m")
    start = 1_577_836_800_000  # 2020-01-01, one month partition holds 44,640 candles
    n = 44_640
    rng = np.random.default_rng(1)
    while True:  # rewrite the same partition with new values until killed
        close = 100 + rng.random(n)
        frame = pl.DataFrame({"ts": start + np.arange(n) * 60_000, "open": close, "high": close + 1,
                              "low": close - 1, "close": close, "volume": np.ones(n)})
        lake.write(key, frame, on_conflict="replace")
    """
)


def _previous_version() -> pl.DataFrame:
    n = 44_640
    close = 200.0 + np.linspace(0, 1, n)
    return pl.DataFrame(
        {
            "ts": 1_577_836_800_000 + np.arange(n) * 60_000,
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": np.ones(n),
        }
    )


def test_kill_during_write_keeps_previous_file(tmp_path: Path) -> None:
    lake = CandleLake(tmp_path / "lake")
    key = SeriesKey("binance", "BTC-USDT", "1m")
    directory = lake.series_dir(key)
    previous = _previous_version()
    lake.write(key, previous)
    kills_mid_write = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(lake.root)])
        deadline = time.monotonic() + 60
        try:
            # wait until a temp file exists: the writer is inside write_parquet_atomic
            while time.monotonic() < deadline:
                if any(TMP_MARK in p.name for p in directory.iterdir()):
                    break
                time.sleep(0.0005)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        kills_mid_write += any(TMP_MARK in p.name for p in directory.iterdir())
        stored = lake.read(key)
        # either the previous version or a complete new one, never a torn or mixed file
        assert stored.height == previous.height and stored["ts"].equals(previous["ts"])
        is_previous = stored.equals(previous)
        is_complete_new = bool(stored["close"].is_between(100, 101).all())
        assert is_previous or is_complete_new
    assert kills_mid_write >= 1, "the writer was never caught mid-write"
    # the next writer removes the leftovers and the series stays readable
    lake.write(key, previous, on_conflict="replace")
    assert not [p for p in directory.iterdir() if TMP_MARK in p.name]
    assert lake.read(key).equals(previous)
