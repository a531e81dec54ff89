"""What a trading session is doing now, from its stored status and its engine's heartbeat.

One definition for every reader (``tradeloop live sessions``, the dashboard):

* ``stopped``: an operator ran ``tradeloop live stop`` (final).
* ``finished``: a replay without ``--follow`` reached the end of its data. ``live run`` with
  the same name resumes it when the lake has grown (it is ``running`` again meanwhile).
* ``running`` / ``paused``: stored so, and the engine's heartbeat (``sessions.heartbeat_at``,
  written with every bar and every ``heartbeat_s`` while it waits for one) is younger than
  ``stale_after_s``.
* ``stale``: stored running or paused, but no engine is alive for it: the heartbeat is old
  (crashed or hung engine, operational database unreachable) or absent (the engine exited;
  ``tradeloop live run --name ...`` resumes it).

The readers pass ``now``; nothing here reads the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

STALE_AFTER_S = 180.0  # six missed heartbeats at the engine's default 30 s
DISPLAY_STATUSES = ("running", "paused", "stale", "finished", "stopped")


def session_status(
    stored: str, heartbeat_at: datetime | None, *, now: datetime, stale_after_s: float = STALE_AFTER_S
) -> str:
    """The status to show for a session stored as ``stored`` whose engine last beat at
    ``heartbeat_at`` (None: no engine is running it)."""
    if stored in ("stopped", "finished"):
        return stored
    if heartbeat_at is None:
        return "stale"
    if heartbeat_at.tzinfo is None:  # SQLite hands back naive datetimes; they were written in UTC
        heartbeat_at = heartbeat_at.replace(tzinfo=UTC)
    age = (now - heartbeat_at).total_seconds()
    return stored if age <= stale_after_s else "stale"


IN_SAMPLE_WARNING = (
    "trades bars its champion was trained on (started with --allow-in-sample): its results are "
    "not evidence of how the model does on new data"
)


def sample_label(in_sample: bool) -> str:
    """How a session's ``in_sample`` flag reads wherever a session is shown."""
    return "IN-SAMPLE" if in_sample else "out-of-sample"
