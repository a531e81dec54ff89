"""The champion in words: ISO UTC times, its age and staleness, and the research pipeline's
latest audit events (the last retrain's outcome, the stale-soon warning) of one strategy."""

from __future__ import annotations

from datetime import UTC, datetime

from tradeloop.ops.champion_log import age_words, iso_utc, latest_research_events, research_words, span_words

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_times_and_spans_read_as_people_write_them() -> None:
    assert iso_utc(T0) == "2026-01-01T00:00:00Z" and iso_utc(T0 + 4 * 3_600_000) == "2026-01-01T04:00:00Z"
    assert iso_utc(10**20) == f"{10**20} ms"
    assert (span_words(3 * DAY + 5), span_words(DAY), span_words(7_200_000), span_words(61_000), span_words(5)) == (
        "3 days",
        "1 day",
        "2 hours",
        "1 minute",
        "less than a minute",
    )


def test_age_says_when_the_champion_goes_or_went_stale() -> None:
    fresh = age_words(trained_until_ms=T0, max_age_ms=14 * DAY, now_ms=T0 + 3 * DAY)
    assert fresh == (
        "The champion saw data up to 2026-01-01T00:00:00Z (3 days ago); it goes stale on "
        "2026-01-15T00:00:00Z, in 11 days (maximum age 14 days)."
    )
    stale = age_words(trained_until_ms=T0, max_age_ms=14 * DAY, now_ms=T0 + 20 * DAY)
    assert "it went stale on 2026-01-15T00:00:00Z, 6 days ago" in stale and "no longer opens positions" in stale


def _at(day: int) -> datetime:
    return datetime(2026, 2, day, 12, 0, tzinfo=UTC)


def test_the_latest_retrain_outcome_and_warning_of_the_strategy_only() -> None:
    rows = [
        ("retrain_failed", _at(1), {"strategy": "sma_cross", "reason": "old failure", "run_id": "r1"}),
        (
            "champion_stale_soon",
            _at(2),
            {
                "strategy": "sma_cross",
                "reason": "next retrain after stale",
                "stale_at_ms": T0 + 40 * DAY,
                "run_id": "r2",
            },
        ),
        (
            "retrain_refused",
            _at(3).replace(tzinfo=None),  # SQLite hands back naive UTC
            {
                "strategy": "sma_cross",
                "reason": "deflated Sharpe 0.41 < 0.95",
                "stale_at_ms": T0 + 45 * DAY,
                "run_id": "r3",
            },
        ),
        ("retrain_failed", _at(4), {"strategy": "momentum", "reason": "not ours", "run_id": "r4"}),
        ("session_started", _at(5), {"strategy": "sma_cross"}),
    ]
    events = latest_research_events(rows, "sma_cross")
    assert [(e.event, e.run_id) for e in events] == [("retrain_refused", "r3"), ("champion_stale_soon", "r2")]
    words = research_words(events)
    assert words[0] == (
        "The last retrain (2026-02-03T12:00:00Z, run r3) was refused by the gate: deflated Sharpe "
        "0.41 < 0.95. The champion goes stale on 2026-02-15T00:00:00Z."
    )
    assert words[1].startswith(
        "Warning (2026-02-02T12:00:00Z, run r2): the champion goes stale before the next "
        "scheduled retrain: next retrain after stale."
    )
    failed = research_words(latest_research_events(rows[:1], "sma_cross"))
    assert failed == ["The last retrain (2026-02-01T12:00:00Z, run r1) failed: old failure."]
    superseded = research_words(events, promoted_at=_at(10))
    assert all("(Before the champion in force was promoted on 2026-02-10T12:00:00Z.)" in w for w in superseded)
    assert latest_research_events(rows, "breakout") == []
