"""What people read about a strategy's champion, in words: its training window, its age and
when it goes stale, and the research pipeline's latest events from the audit log.

The research pipeline writes three audit events (``OpsStore.audit(db, event, detail=...)``),
each with ``detail = {"strategy", "reason", "run_id", "stale_at_ms" (optional)}``:

- ``retrain_failed``: the scheduled retrain did not finish;
- ``retrain_refused``: it finished and the promotion gate refused the challenger;
- ``champion_stale_soon``: the champion goes stale before the next scheduled retrain.

Times are UTC and printed as ISO 8601 (``2026-01-31T12:00:00Z``), which ``--start`` accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

RESEARCH_EVENTS = ("retrain_failed", "retrain_refused", "champion_stale_soon")
DAY_MS = 86_400_000


def iso_utc(ms: int) -> str:
    """``2026-01-31T12:00:00Z``; a time no calendar can show prints as its epoch ms."""
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


def span_words(ms: int) -> str:
    """A duration as people say it: ``3 days``, ``5 hours``, ``20 minutes``."""
    ms = abs(ms)
    for unit, size in (("day", DAY_MS), ("hour", 3_600_000), ("minute", 60_000)):
        if ms >= size:
            n = ms // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "less than a minute"


def age_words(*, trained_until_ms: int, max_age_ms: int, now_ms: int) -> str:
    """The champion's age and when it goes stale (``trained_until + max_age_ms``), in words."""
    stale_at = trained_until_ms + max_age_ms
    age = f"The champion saw data up to {iso_utc(trained_until_ms)} ({span_words(now_ms - trained_until_ms)} ago)"
    if now_ms - trained_until_ms < 0:
        age = f"The champion saw data up to {iso_utc(trained_until_ms)} (in the future by this clock)"
    if now_ms > stale_at:
        return (
            f"{age}; it went stale on {iso_utc(stale_at)}, {span_words(now_ms - stale_at)} ago: the live "
            "engine no longer opens positions on it until a newer champion is promoted."
        )
    return (
        f"{age}; it goes stale on {iso_utc(stale_at)}, in {span_words(stale_at - now_ms)} "
        f"(maximum age {span_words(max_age_ms)})."
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)  # SQLite: naive UTC


@dataclass(frozen=True, kw_only=True, slots=True)
class ResearchEvent:
    """One research audit row of a strategy (see the module docstring)."""

    event: str
    at: datetime  # UTC
    reason: str
    run_id: str | None
    stale_at_ms: int | None

    @classmethod
    def from_row(cls, event: str, at: datetime, detail: dict) -> ResearchEvent:
        stale = detail.get("stale_at_ms")
        return cls(
            event=event,
            at=_utc(at),
            reason=str(detail.get("reason") or "no reason recorded"),
            run_id=None if detail.get("run_id") is None else str(detail["run_id"]),
            stale_at_ms=int(stale) if isinstance(stale, int | float) and not isinstance(stale, bool) else None,
        )

    def words(self) -> str:
        when = self.at.strftime("%Y-%m-%dT%H:%M:%SZ")
        run = f", run {self.run_id}" if self.run_id else ""
        if self.event == "retrain_failed":
            text = f"The last retrain ({when}{run}) failed: {self.reason}."
        elif self.event == "retrain_refused":
            text = f"The last retrain ({when}{run}) was refused by the gate: {self.reason}."
        else:
            text = f"Warning ({when}{run}): the champion goes stale before the next scheduled retrain: {self.reason}."
        if self.stale_at_ms is not None:
            text += f" The champion goes stale on {iso_utc(self.stale_at_ms)}."
        return text


def latest_research_events(rows: Iterable[tuple[str, datetime, dict]], strategy: str) -> list[ResearchEvent]:
    """Of ``rows`` (``(event, at, detail)``, oldest first): the last retrain that failed or was
    refused, and the last stale-soon warning, of ``strategy``; newest first."""
    retrain: ResearchEvent | None = None
    stale: ResearchEvent | None = None
    for event, at, detail in rows:
        if event not in RESEARCH_EVENTS or not isinstance(detail, dict) or detail.get("strategy") != strategy:
            continue
        found = ResearchEvent.from_row(event, at, detail)
        if event == "champion_stale_soon":
            stale = found
        else:
            retrain = found
    return sorted([e for e in (retrain, stale) if e is not None], key=lambda e: e.at, reverse=True)


def research_words(events: Iterable[ResearchEvent], *, promoted_at: datetime | None = None) -> list[str]:
    """One sentence per event; an event older than the champion's promotion says so (a later
    retrain promoted the champion in force since)."""
    lines = []
    for event in events:
        text = event.words()
        if promoted_at is not None and event.at < _utc(promoted_at):
            text += f" (Before the champion in force was promoted on {_utc(promoted_at):%Y-%m-%dT%H:%M:%SZ}.)"
        lines.append(text)
    return lines
