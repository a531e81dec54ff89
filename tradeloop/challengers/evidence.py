"""A session's challengers and their paired returns in the operational database (migration 0012).

Rules:

1. **Naming a challenger** (``add``): a registered artifact (an id or a unique prefix, as
   ``tradeloop models promote`` takes) of the session's strategy, not its champion's artifact,
   once per session; ``capital_share`` makes it trade a real slice of the session's capital
   (``tradeloop.challengers.slices``, ``live.slices``; None: shadow only): paper sessions and
   live sessions on one spot venue (``check_split``), and the shares of a session together at
   most 0.5: those named and in shadow, and those of slices still holding money (closing after
   a retirement); namings of one session are serialized (its row locked), so two at once cannot
   both pass. Its own sequential-test options (``test``: alpha, min_bars, ...) may be given
   when it is first named; they are fixed from then on (a false-promotion rate chosen after
   seeing evidence no longer holds), and a challenger named without them is judged with the
   caller's options (the engine's, the defaults). A retired one named again goes back to
   shadow, its evidence and options kept (its capital slice is funded afresh; refused while its
   old slice is still closing). Naming it again is harmless, also at the same moment from two
   callers (the unique constraint's refusal of the second insert is caught and the naming
   retried, finding the row); naming it again with other options is refused.
2. **Evidence** (``record``): one row per challenger and bar where the champion decided, with
   the champion's artifact, merged, so a bar that comes again (its transaction did not commit)
   writes the same row once.
3. **Reads** (``returns``, ``standings``) give the paired returns oldest bar first and the
   sequential test's standing on them (``tradeloop.challengers.sequential``), counting only
   the bars paired with ``champion`` (the champion in force): evidence against an earlier
   champion says nothing about this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tradeloop.challengers.books import FUNDED
from tradeloop.challengers.sequential import SequentialConfig, Standing, standing
from tradeloop.challengers.slices import MAX_TOTAL_SHARE, check_split
from tradeloop.errors import ConfigError, SessionStateError
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.ops.challenger_models import ChallengerReturn, ChallengerRow
from tradeloop.registry import ModelRegistry

__all__ = ["ChallengerStanding", "ChallengerStore", "PairedBar", "test_of"]


def test_of(row: ChallengerRow, default: SequentialConfig) -> SequentialConfig:
    """The options ``row``'s challenger is judged with: its own (rule 1), else ``default``."""
    if not row.test_options:
        return default
    try:
        return SequentialConfig(**row.test_options)
    except ValidationError as exc:  # edited by hand in the database, or from a later schema
        raise ConfigError(
            f"challenger {row.artifact[:12]}: its stored test options {row.test_options} are invalid "
            f"({exc.errors()[0]['msg']}); correct challengers.test_options, or name another model"
        ) from None


def _check_total(db: Session, session: TradingSession, artifact: str, share: float) -> None:
    """The shares of a session's slices together at most ``MAX_TOTAL_SHARE`` (rule 1): every
    challenger named with one and still in shadow, and every slice still holding money (open, or
    closing after its challenger was retired or promoted)."""
    others = db.scalars(
        select(ChallengerRow.capital_share).where(
            ChallengerRow.session_id == session.id,
            ChallengerRow.artifact != artifact,
            ChallengerRow.capital_share.is_not(None),
            or_(ChallengerRow.status.in_(("shadow", "recommended")), ChallengerRow.slice_state.in_(FUNDED)),
        )
    )
    total = share + sum(s or 0.0 for s in others)
    if total > MAX_TOTAL_SHARE + 1e-12:
        raise ConfigError(
            f"capital_share={share}: session {session.name!r}'s challengers would trade {total:g} of its capital; "
            f"together they may trade at most {MAX_TOTAL_SHARE:g} (the champion keeps the rest): give a smaller "
            "share, or retire another challenger first"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class PairedBar:
    """One bar's evidence of one challenger (rule 2)."""

    artifact: str
    ts: int
    champion: float
    challenger: float
    equity: float
    orders: int
    champion_artifact: str | None = None  # the champion it was paired with (None: the static fallback)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChallengerStanding:
    """A challenger against the session's champion: its row and the test on its evidence."""

    artifact: str
    status: str
    capital_share: float | None
    slice_state: str | None  # its capital slice (live.slices): waiting, open, closing, closed; None: not funded
    slice_cash: float | None
    slice_ts: int | None
    first_ts: int | None
    last_ts: int | None
    equity: float | None  # its shadow equity at the last bar
    config: SequentialConfig  # the options it is judged with (rule 1)
    test: Standing
    decision: dict | None  # what the promotion recorded, once promoted


class ChallengerStore:
    """The challengers tables of one operational database (cheap to construct)."""

    def __init__(self, store: OpsStore):
        self.store = store

    def add(
        self,
        session: TradingSession,
        artifact: str,
        *,
        registry: ModelRegistry,
        capital_share: float | None = None,
        test: SequentialConfig | None = None,
        actor: str | None = None,
    ) -> str:
        """Name a challenger of ``session`` (rule 1); returns its full artifact id.

        Raises
        ------
        ModelError
            The artifact is unknown, ambiguous, fails to load or holds another strategy's model.
        ConfigError
            It is the session's champion, ``capital_share`` is not in (0, 0.5], is given for a
            live session on derivatives or on several venues, or would make the session's
            shares pass 0.5, or it was named before with other ``test`` options.
        """
        full = registry.resolve(artifact)
        registry.model_of(full, strategy=session.strategy)  # loads through the allow-list: a bad file fails here
        champion = registry.champion(session.strategy)
        if champion is not None and champion.artifact == full:
            raise ConfigError(
                f"artifact {full[:12]} is the champion of {session.strategy}; name another registered model"
            )
        if capital_share is not None and not 0.0 < capital_share <= 0.5:
            raise ConfigError(
                f"capital_share={capital_share} is out of range; give a fraction in (0, 0.5] (e.g. 0.2 for 80/20)"
            )
        if capital_share is not None:
            check_split(mode=session.mode, exchange=session.exchange, symbols=session.symbols, share=capital_share)
        for attempt in range(2):
            try:
                self._name(session, full, capital_share=capital_share, test=test, actor=actor)
            except IntegrityError:
                # named at the same moment by another caller (PostgreSQL: the unique constraint
                # answers; SQLite's immediate transaction serializes): once more, it finds the row
                if attempt:
                    raise SessionStateError(
                        f"challenger {full[:12]} of session {session.name!r} is being named concurrently; try again"
                    ) from None
                continue
            break
        return full

    def _name(
        self,
        session: TradingSession,
        full: str,
        *,
        capital_share: float | None,
        test: SequentialConfig | None,
        actor: str | None,
    ) -> None:
        options = test.model_dump() if test is not None else None
        with self.store.transaction(immediate=True) as db:
            # namings of one session one at a time (PostgreSQL: the session's row locked; SQLite's
            # immediate transaction already is), so two cannot both pass the shares' check
            OpsStore.session_row(db, session.id, for_update=True)
            row = db.scalar(
                select(ChallengerRow).where(ChallengerRow.session_id == session.id, ChallengerRow.artifact == full)
            )
            if row is None:
                db.add(
                    ChallengerRow(
                        session_id=session.id, artifact=full, status="shadow", capital_share=capital_share,
                        test_options=options,
                    )
                )  # fmt: skip
                db.flush()  # a concurrent insert of the same challenger fails here (IntegrityError)
            else:
                if row.status in ("retired", "promoted") and row.slice_state in ("open", "closing"):
                    raise ConfigError(
                        f"challenger {full[:12]} of session {session.name!r}: its capital slice is still "
                        f"{row.slice_state} after it was {row.status}; name it again once the engine has flattened it "
                        "and its slice_state is closed (within a few bars)"
                    )
                if options is not None and options != (row.test_options or SequentialConfig().model_dump()):
                    raise ConfigError(
                        f"challenger {full[:12]} of session {session.name!r} was named with test options "
                        f"{row.test_options or 'the defaults'}; they are fixed once named (a false-promotion rate "
                        "chosen after seeing evidence does not hold): name it without options, or name another model"
                    )
                if row.status != "retired" and capital_share != row.capital_share:
                    raise ConfigError(
                        f"challenger {full[:12]} of session {session.name!r} was named with capital_share="
                        f"{row.capital_share}; retire it and name it again to change its share"
                    )
                if row.status == "retired":
                    row.status, row.capital_share = "shadow", capital_share
                    row.slice_cash = row.slice_ts = row.slice_state = None  # a new slice, funded afresh
            if capital_share is not None:
                _check_total(db, session, full, capital_share)
            OpsStore.audit(
                db,
                "challenger_added",
                session_id=session.id,
                detail={"artifact": full, "capital_share": capital_share, "test": options},
                actor=actor,
            )

    def slices(self, session_id: int) -> list[ChallengerRow]:
        """The session's challengers with a capital slice to trade or to close (``live.slices``):
        named with a share and not closed."""
        return [r for r in self.rows(session_id) if r.capital_share is not None and r.slice_state != "closed"]

    def retire(self, session_id: int, artifact: str, *, actor: str | None = None, detail: dict | None = None) -> None:
        """Stop running a challenger in shadow (its evidence stays); ``detail`` (why, e.g. the
        error that retired it) goes into the audit row."""
        with self.store.transaction(immediate=True) as db:
            for row in db.scalars(
                select(ChallengerRow).where(
                    ChallengerRow.session_id == session_id,
                    ChallengerRow.artifact.startswith(artifact),
                    ChallengerRow.status.in_(("shadow", "recommended")),  # a promotion made meanwhile stands
                )
            ):
                row.status = "retired"
                if row.slice_state == "waiting":  # never funded: nothing waits any more
                    row.slice_state = None
                OpsStore.audit(
                    db,
                    "challenger_retired",
                    session_id=session_id,
                    actor=actor,
                    detail={"artifact": row.artifact, **(detail or {})},
                )

    def rows(self, session_id: int) -> list[ChallengerRow]:
        with self.store.transaction() as db:
            return list(
                db.scalars(
                    select(ChallengerRow).where(ChallengerRow.session_id == session_id).order_by(ChallengerRow.id)
                )
            )

    @staticmethod
    def record(db: Session, session_id: int, bars: list[PairedBar]) -> None:
        """Store one bar's evidence of each challenger in the caller's transaction (rule 2)."""
        for bar in bars:
            db.merge(
                ChallengerReturn(
                    session_id=session_id, artifact=bar.artifact, ts=bar.ts, champion=bar.champion,
                    champion_artifact=bar.champion_artifact, challenger=bar.challenger, equity=bar.equity,
                    orders=bar.orders,
                )
            )  # fmt: skip

    def returns_against(self, session_id: int, artifact: str, champion: str | None) -> list[PairedBar]:
        """A challenger's evidence against the champion artifact ``champion`` (None: the static
        fallback), oldest bar first (rule 3)."""
        return [b for b in self.returns(session_id, artifact) if b.champion_artifact == champion]

    def returns(self, session_id: int, artifact: str) -> list[PairedBar]:
        """A challenger's evidence, every bar, oldest first."""
        with self.store.transaction() as db:
            rows = db.scalars(
                select(ChallengerReturn)
                .where(ChallengerReturn.session_id == session_id, ChallengerReturn.artifact == artifact)
                .order_by(ChallengerReturn.ts)
            )
            return [
                PairedBar(artifact=r.artifact, ts=r.ts, champion=r.champion, challenger=r.challenger, equity=r.equity,
                          orders=r.orders, champion_artifact=r.champion_artifact)
                for r in rows
            ]  # fmt: skip

    def standings(
        self, session_id: int, *, champion: str | None, config: SequentialConfig | None = None
    ) -> list[ChallengerStanding]:
        """Every challenger of the session with the test on its evidence against ``champion``,
        the champion artifact in force (rule 3), with its own options or ``config`` (rule 1)."""
        default = config or SequentialConfig()
        out = []
        for row in self.rows(session_id):
            bars = self.returns_against(session_id, row.artifact, champion)
            own = test_of(row, default)
            test = standing(np.array([b.champion for b in bars]), np.array([b.challenger for b in bars]), own)
            out.append(
                ChallengerStanding(
                    artifact=row.artifact,
                    status=row.status,
                    capital_share=row.capital_share,
                    slice_state=row.slice_state,
                    slice_cash=row.slice_cash,
                    slice_ts=row.slice_ts,
                    first_ts=bars[0].ts if bars else None,
                    last_ts=bars[-1].ts if bars else None,
                    equity=bars[-1].equity if bars else None,
                    config=own,
                    test=test,
                    decision=row.decision,
                )
            )
        return out
