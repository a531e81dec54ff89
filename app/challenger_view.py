"""What the Challengers page shows, as frames: each challenger's standing against the champion
(``tradeloop.challengers``: the live sequential test on their paired per-bar returns) and the
growth of one unit under each over the bars they were paired on."""

from __future__ import annotations

import math

import polars as pl

from tradeloop.challengers.evidence import ChallengerStore
from tradeloop.ops import OpsStore


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _capital(share: float | None, state: str | None) -> str:
    """``shadow`` (simulated beside the champion), or the share it trades and its slice's state."""
    if share is None:
        return "shadow"
    return f"{share:.0%} {state or 'waiting'}"


def standings_frame(store: OpsStore, session_id: int, *, champion: str | None) -> pl.DataFrame:
    """One row per challenger: its status (``testing`` while its evidence is judged), its capital
    (``shadow``, or its share of the session and its slice's state: ``20% open``), bars (and the
    minimum its test needs), mean returns (per bar, fractions; None before its first paired bar),
    the test's z, statistic, bar and decision, over the bars paired with ``champion`` (the one in
    force)."""
    rows = [
        {
            "artifact": s.artifact[:12],
            "status": "testing" if s.status == "shadow" else s.status,
            "capital": _capital(s.capital_share, s.slice_state),
            "bars": s.test.bars,
            "min_bars": s.config.min_bars,
            "champion_mean": s.test.champion_mean if s.test.bars else None,
            "challenger_mean": s.test.challenger_mean if s.test.bars else None,
            "difference": s.test.mean_diff if s.test.bars else None,
            "z": _finite(s.test.z),
            "log_lr": _finite(s.test.log_lr),
            "threshold": s.test.threshold,
            "decision": s.test.decision if s.status == "shadow" else s.status,
        }
        for s in ChallengerStore(store).standings(session_id, champion=champion)
    ]
    schema = {"artifact": pl.String, "status": pl.String, "capital": pl.String, "bars": pl.Int64, "min_bars": pl.Int64,
              "champion_mean": pl.Float64, "challenger_mean": pl.Float64, "difference": pl.Float64,
              "z": pl.Float64, "log_lr": pl.Float64, "threshold": pl.Float64, "decision": pl.String}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def growth_frame(store: OpsStore, session_id: int, *, champion: str | None) -> pl.DataFrame:
    """``time`` and one column per run (``champion`` and each challenger's short id): one unit
    compounded by its paired returns against ``champion``, over the bars of the challenger with
    the most of them."""
    evidence = ChallengerStore(store)
    series = {r.artifact: evidence.returns_against(session_id, r.artifact, champion) for r in evidence.rows(session_id)}
    series = {a: bars for a, bars in series.items() if bars}
    if not series:
        return pl.DataFrame(schema={"time": pl.Datetime("ms", "UTC"), "champion": pl.Float64})
    longest = max(series.values(), key=len)
    frame = pl.DataFrame({"ts": [b.ts for b in longest], "champion": [b.champion for b in longest]})
    for artifact, bars in series.items():
        other = pl.DataFrame({"ts": [b.ts for b in bars], artifact[:12]: [b.challenger for b in bars]})
        frame = frame.join(other, on="ts", how="left")
    runs = [c for c in frame.columns if c != "ts"]
    return frame.sort("ts").select(
        pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC").alias("time"),
        *[(1 + pl.col(c).fill_null(0.0)).cum_prod().alias(c) for c in runs],
    )
