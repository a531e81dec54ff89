"""The candle lake at scale: write N synthetic 1m candles through ``CandleLake.write`` (the
import path: validation, merge, atomic files), then query them with polars and DuckDB, and
print bytes per candle, write throughput and query times; extrapolate to 1 TB.

The lake is filled one symbol-year at a time (525,600 candles: 12 monthly files per series,
as ``tradeloop.data.lake`` partitions 1m candles), symbols ``S000-USDT``, ``S001-USDT``, ...
Prices are a random walk rounded to a 0.01 tick near 30,000 (BTC/USDT's tick and scale),
volumes lognormal rounded to a 0.00001 lot: real candles have a tick and a lot size, and
random full-precision floats would not compress like them. For comparison the script also
rewrites real Binance candles from ../shared/data/real as the lake writes them (when that
folder is there) and prints their bytes per candle; the 1 TB figures use both. Queries are
measured at every checkpoint (``--checkpoints``, default 10M) and at the end, so a one-symbol
one-month read can be compared across lake sizes:

* ``read 1 month (CandleLake.read)``: polars, what every reader of tradeloop does (reads the
  series' files, validates, filters to the month);
* ``read 1 month (polars scan)``: ``pl.scan_parquet`` of that month's file only;
* ``read 1 month (LakeSQL)``: DuckDB views over that one series (``LakeSQL(keys=[...])``),
  opening included;
* ``scan all (DuckDB)`` / ``scan all (polars)``: count, mean close and highest high over
  every file (these grow with the lake);
* ``one month, all symbols (DuckDB)``: the same month of every series.

Each time is the median of ``--repeat`` runs after one warm-up run (the files are in the OS
page cache: a cold disk read adds the device's time). Before writing, the free space of the
target folder is checked against the expected size; the temporary lake is deleted at the end
unless ``--keep``.

Run:  nice -n 19 .venv/bin/python bench/lake.py [--candles 100000000] [--dir /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from tradeloop.data import CandleLake, SeriesKey  # noqa: E402
from tradeloop.data.sql import LakeSQL, view_name  # noqa: E402

YEAR_MINUTES = 525_600
START_MS = 1_609_459_200_000  # 2021-01-01 00:00 UTC
MONTH = (1_614_556_800_000, 1_617_235_199_999)  # 2021-03, inclusive bounds
MONTH_FILE = "2021-03.parquet"
BYTES_GUESS = 40  # per candle, for the disk check (measured: about 20)
REAL = ROOT.parent / "shared" / "data" / "real"  # beside the checkout; see its PROVENANCE.md
REAL_FILES = ("binance__BTC-USDT__5m.parquet", "binance__ETH-USDT__5m.parquet", "binance__SOL-USDT__5m.parquet")
TB = 1e12


def candles(series: int, rows: int) -> pl.DataFrame:
    """One synthetic symbol-year (module docstring), reproducible per series."""
    rng = np.random.default_rng(series)
    steps = rng.normal(0.0, 0.0008, rows)
    close = np.round(30_000.0 * np.exp(np.cumsum(steps)), 2)
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.round(np.abs(rng.normal(0.0, 0.0004, rows)) * close, 2)
    high = np.maximum(open_, close) + wick
    low = np.maximum(np.minimum(open_, close) - wick[::-1], 0.01)
    volume = np.round(rng.lognormal(1.0, 1.0, rows), 5)
    return pl.DataFrame(
        {
            "ts": START_MS + np.arange(rows, dtype=np.int64) * 60_000,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }  # fmt: skip
    )


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def lake_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def queries(lake: CandleLake, key: SeriesKey, repeat: int) -> dict[str, float]:
    root = lake.root
    month_file = lake.series_dir(key) / MONTH_FILE
    every = str(root / "*" / "*" / "1m" / "*.parquet")
    month_all = str(root / "*" / "*" / "1m" / MONTH_FILE)

    def read_lake() -> int:
        return lake.read(key, start=MONTH[0], end=MONTH[1]).height

    def read_scan() -> int:
        return pl.scan_parquet(month_file).filter(pl.col("ts").is_between(*MONTH)).collect().height

    def read_sql() -> int:
        with LakeSQL(lake, keys=[key]) as sql:
            return sql.query(f"SELECT * FROM {view_name(key)} WHERE ts BETWEEN {MONTH[0]} AND {MONTH[1]}").height

    def scan_duckdb() -> int:
        with duckdb.connect(":memory:") as con:
            return con.execute(f"SELECT count(*), avg(close), max(high) FROM read_parquet('{every}')").fetchone()[0]

    def scan_polars() -> int:
        frame = pl.scan_parquet(every).select(pl.len(), pl.col("close").mean(), pl.col("high").max())
        return int(frame.collect()[0, 0])

    def month_duckdb() -> int:
        with duckdb.connect(":memory:") as con:
            return con.execute(f"SELECT count(*), avg(close) FROM read_parquet('{month_all}')").fetchone()[0]

    assert read_lake() == read_scan() == read_sql() == 31 * 1440
    return {
        "read 1 month (CandleLake.read)": timed(read_lake, repeat),
        "read 1 month (polars scan)": timed(read_scan, repeat),
        "read 1 month (LakeSQL)": timed(read_sql, repeat),
        "one month, all symbols (DuckDB)": timed(month_duckdb, repeat),
        "scan all (DuckDB)": timed(scan_duckdb, max(1, repeat // 2)),
        "scan all (polars)": timed(scan_polars, max(1, repeat // 2)),
    }


def real_bytes_per_candle(tmp: Path) -> float | None:
    """Real Binance 5m candles written as the lake writes them (zstd, statistics): bytes each."""
    files = [REAL / f for f in REAL_FILES if (REAL / f).exists()]
    if not files:
        return None
    rows = nbytes = 0
    for path in files:
        frame = pl.read_parquet(path).select("ts", "open", "high", "low", "close", "volume")
        out = tmp / path.name
        frame.write_parquet(out, compression="zstd", statistics=True)
        rows, nbytes = rows + frame.height, nbytes + out.stat().st_size
        out.unlink()
    return nbytes / rows


def report(total: int, nbytes: int, write_s: float, figures: dict[str, float]) -> None:
    per = nbytes / total
    print(f"\n== lake of {total:,} candles ({total / YEAR_MINUTES:.0f} symbol-years): {nbytes / 1e9:.2f} GB")
    print(f"   bytes per candle: {per:.1f}; written at {total / write_s:,.0f} candles/s ({write_s:.0f} s)")
    for name, seconds in figures.items():
        scanned = f"  ({total / seconds / 1e6:,.0f} M candles/s)" if name.startswith("scan all") else ""
        print(f"   {name:<34} {seconds * 1000:10.1f} ms{scanned}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candles", type=int, default=100_000_000, help="1m candles to write in all")
    parser.add_argument("--checkpoints", default="10000000", help="comma-separated sizes to query at on the way")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the temporary lake goes")
    parser.add_argument("--repeat", type=int, default=5, help="runs per query (median)")
    parser.add_argument("--keep", action="store_true", help="keep the lake afterwards")
    args = parser.parse_args()
    need = args.candles * BYTES_GUESS
    free = shutil.disk_usage(args.dir).free
    if need > free * 0.8:
        fits = int(free * 0.8 / BYTES_GUESS)
        raise SystemExit(
            f"--candles {args.candles:,} needs about {need / 1e9:.1f} GB and {args.dir} has {free / 1e9:.1f} GB free; "
            f"use --candles {fits:,} or less, or another --dir"
        )
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if c.strip()} | {args.candles})
    checkpoints = [c for c in checkpoints if c <= args.candles]
    first = SeriesKey("binance", "S000-USDT", "1m")
    root = Path(tempfile.mkdtemp(prefix="tradeloop-lake-bench-", dir=args.dir))
    print(f"lake: {root}; {args.candles:,} candles, checkpoints {', '.join(f'{c:,}' for c in checkpoints)}")
    print(f"free disk: {free / 1e9:.1f} GB; expected size: about {args.candles * 20 / 1e9:.1f} GB")
    lake = CandleLake(root / "lake", quarantine_root=root / "quarantine")
    written, write_s, series = 0, 0.0, 0
    results: list[tuple[int, int, float, dict[str, float]]] = []
    try:
        real = real_bytes_per_candle(root)
        for target in checkpoints:
            while written < target:
                rows = min(YEAR_MINUTES, target - written)
                frame = candles(series, rows)
                start = time.perf_counter()
                lake.write(SeriesKey("binance", f"S{series:03d}-USDT", "1m"), frame)
                write_s += time.perf_counter() - start
                written, series = written + rows, series + 1
                if series % 20 == 0:
                    print(f"   ... {written:,} candles in {series} series ({write_s:.0f} s writing)", flush=True)
            figures = queries(lake, first, args.repeat)
            results.append((written, lake_bytes(lake.root), write_s, figures))
            report(*results[-1])
        total, nbytes, _, figures = results[-1]
        for label, per in (("synthetic", nbytes / total), ("real Binance 5m", real)):
            if per is None:
                continue
            per_tb = TB / per
            print(f"\n== 1 TB at {per:.1f} bytes per candle ({label}): {per_tb / 1e9:,.1f} billion 1m candles, "
                  f"{per_tb / YEAR_MINUTES:,.0f} symbol-years")  # fmt: skip
            for name in ("scan all (DuckDB)", "scan all (polars)"):
                rate = total / figures[name]
                print(f"   {name}: about {per_tb / rate / 60:,.0f} min for 1 TB at {rate / 1e6:,.0f} M candles/s")
        if len(results) > 1:
            print("\n== one symbol, one month, by lake size (ms)")
            for name in ("read 1 month (CandleLake.read)", "read 1 month (polars scan)", "read 1 month (LakeSQL)"):
                cells = "  ".join(f"{r[0] / 1e6:,.1f}M: {r[3][name] * 1000:8.1f}" for r in results)
                print(f"   {name:<34} {cells}")
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
