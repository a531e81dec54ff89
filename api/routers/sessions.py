"""Trading sessions: made, listed, read and controlled (pause, resume, start, stop, ack).

Rules:

1. A session belongs to the user who made it (``sessions.owner_id``); another user's session
   does not exist for a non-admin, on every endpoint (404), whatever the query says. Sessions
   made before there were users (no owner) are an admin's.
2. ``POST /sessions`` writes the row ``tradeloop live run`` would write for the same options
   (``tradeloop.ops.session_spec.create_session``): the champion's costs, the order rules,
   the risk limits, the in-sample check. It starts no engine: the answer's ``run_command``
   starts one (``tradeloop live run --name NAME`` resumes the session). A live session
   (``mode=live``) names one of the caller's stored exchange credentials (``credential``,
   ``POST /credentials``) for the same exchange: its engine trades with that account, whose
   secret it decrypts with ``TRADELOOP_ENCRYPTION_KEY``; a paper session names none.
3. Transitions are ``tradeloop live pause/resume/stop/ack``'s (``OpsStore.set_status``,
   ``OpsStore.acknowledge``), audited with the caller as actor; a transition the session's
   status does not allow is a 409 naming the status and what it can become. ``start`` is
   ``resume``: a paused or finished session runs again.
4. ``status`` is what the session is doing now (``tradeloop.ops.status``: ``stale`` when no
   engine's heartbeat is fresh); ``stored_status`` what was last written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from api.context import ApiContext
from api.deps import Context, Principal, Trader, Viewer
from api.paging import IdPage, Paged, invalid_all, paged
from api.session_options import NewSession, new_session_spec, run_command, session_credential
from api.timequery import SessionId, owned_session
from tradeloop.challengers.books import whole_cash
from tradeloop.data import CandleLake
from tradeloop.errors import DataError, NotFoundError
from tradeloop.ops import TradingSession
from tradeloop.ops.session_reads import SessionReads
from tradeloop.ops.session_spec import (
    create_session,
    replay_first_bar,
)
from tradeloop.ops.status import STALE_AFTER_S, session_status
from tradeloop.registry import ModelRegistry
from tradeloop.risk import RiskConfig

router = APIRouter(prefix="/sessions", tags=["sessions"])


class SessionOut(BaseModel):
    id: int
    name: str
    owner_id: int | None = Field(description="the user who owns it (null: made before there were users)")
    strategy: str
    exchange: str
    symbols: list[str]
    timeframe: str
    mode: str
    credential_id: int | None = Field(default=None, description="the stored exchange credential a live session uses")
    status: str = Field(description="running, paused, stale (no engine alive), finished or stopped")
    stored_status: str = Field(description="the status last written: running, paused, finished or stopped")
    in_sample: bool = Field(description="it trades bars its champion was trained on")
    init_cash: float
    cash: float = Field(description="the champion's book's cash (the whole session's without capital slices)")
    whole_cash: float = Field(
        description="the whole session's cash: the champion's plus its challengers' capital slices' (the cash "
        "beside equity, which is the whole session's too)"
    )
    equity: float = Field(description="the newest equity mark (the cash before the first)")
    last_bar_ts: int | None = Field(description="the last bar processed (epoch ms)")
    heartbeat_at: datetime | None
    needs_ack: str | None = Field(description="why the session is reduce-only until acknowledged (null: it is not)")
    halted: dict[str, str] = Field(description="symbols in reduce-only, with the reason")
    orders: dict[str, Any] = Field(description="the stored order and sizing rules (BacktestConfig)")
    risk: dict[str, Any] = Field(description="the risk limits (RiskConfig)")
    kill_switch: dict[str, Any] | None = Field(description="the kill switch's trip (null: armed)")
    created_at: datetime


class SessionCreated(SessionOut):
    run_command: str = Field(description="starts the engine on this session (the CLI resumes it by name)")


class Ack(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str | None = Field(
        default=None, max_length=50, description="lift this symbol's halt instead", examples=["BTC-USD"]
    )


def session_out(
    ctx: ApiContext, row: TradingSession, equity: float | None = None, whole_cash: float | None = None
) -> dict[str, Any]:
    tripped = (row.risk_state or {}).get("tripped")
    return {
        "id": row.id, "name": row.name, "owner_id": row.owner_id, "strategy": row.strategy,
        "exchange": row.exchange, "symbols": list(row.symbols), "timeframe": row.timeframe, "mode": row.mode,
        "credential_id": row.credential_id,
        "status": session_status(row.status, row.heartbeat_at, now=ctx.now(), stale_after_s=STALE_AFTER_S),
        "stored_status": row.status, "in_sample": row.in_sample, "init_cash": row.init_cash, "cash": row.cash,
        "whole_cash": row.cash if whole_cash is None else whole_cash,
        "equity": row.cash if equity is None else equity, "last_bar_ts": row.last_bar_ts,
        "heartbeat_at": row.heartbeat_at, "needs_ack": row.needs_ack, "halted": dict(row.halted or {}),
        "orders": dict(row.config), "risk": RiskConfig.parse(row.risk_config or {}).model_dump(mode="json"),
        "kill_switch": tripped or None, "created_at": row.created_at,
    }  # fmt: skip


def _whole_cash(ctx: ApiContext, row: TradingSession) -> float:
    with ctx.store.transaction() as db:
        return whole_cash(db, row)


def _read(ctx: ApiContext, row: TradingSession) -> SessionOut:
    equity = SessionReads(ctx.store).last_equity([row.id]).get(row.id)
    return SessionOut(**session_out(ctx, row, equity, _whole_cash(ctx, row)))


@router.post(
    "",
    response_model=SessionCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Make a paper or live session (the row `tradeloop live run` would write); run_command starts its engine",
)
def make_session(body: NewSession, principal: Trader, ctx: Context) -> SessionCreated:
    spec, problems = new_session_spec(body)
    credential_id = None
    if body.credential is not None and body.mode == "live":
        credential_id, wrong = session_credential(ctx, principal, body)
        problems += wrong
    if problems:
        raise invalid_all(problems)
    first_bar_ms = None
    if spec.feed == "replay" and spec.start is None:  # the replay opens with the lake's first candle
        try:
            first_bar_ms = replay_first_bar(CandleLake(ctx.settings.lake_dir), spec)
        except DataError as exc:
            raise invalid_all([("body.start", None, str(exc))]) from None
    try:
        row = create_session(
            ctx.store,
            ModelRegistry(ctx.settings.registry_dir),
            spec,
            first_bar_ms=first_bar_ms,
            owner_id=principal.user_id,
            actor=principal.actor,
            credential_id=credential_id,
        )
    except NotFoundError as exc:  # the credential was removed since session_credential found it
        raise invalid_all([("body.credential", body.credential, str(exc))]) from None
    command = run_command(spec, window_bars=body.window_bars, in_sample=row.in_sample)
    return SessionCreated(run_command=command, **session_out(ctx, row))


@router.get("", response_model=Paged[SessionOut], summary="The caller's sessions (an admin's: everyone's)")
def list_sessions(
    principal: Viewer,
    ctx: Context,
    page: IdPage,
    stored_status: Annotated[
        Literal["running", "paused", "finished", "stopped"] | None,
        Query(description="only sessions whose stored status is this"),
    ] = None,
) -> Paged[SessionOut]:
    reads = SessionReads(ctx.store)
    rows = reads.sessions(page, owner_id=None if principal.is_admin else principal.user_id, status=stored_status)
    equity = reads.last_equity([r.id for r in rows])
    return paged(
        rows, page, lambda r: SessionOut(**session_out(ctx, r, equity.get(r.id), _whole_cash(ctx, r))), lambda r: r.id
    )


@router.get("/{session_id}", response_model=SessionOut, summary="One session: status, cash, equity, risk")
def read_session(session_id: SessionId, principal: Viewer, ctx: Context) -> SessionOut:
    return _read(ctx, owned_session(ctx, principal, session_id))


def _transition(ctx: ApiContext, principal: Principal, session_id: int, to: str) -> SessionOut:
    row = owned_session(ctx, principal, session_id)
    return _read(ctx, ctx.store.set_status(row.name, to, actor=principal.actor))


@router.post("/{session_id}/pause", response_model=SessionOut, summary="Stop opening or closing positions")
def pause_session(session_id: SessionId, principal: Trader, ctx: Context) -> SessionOut:
    return _transition(ctx, principal, session_id, "paused")


@router.post("/{session_id}/resume", response_model=SessionOut, summary="Trade again (a paused or finished session)")
def resume_session(session_id: SessionId, principal: Trader, ctx: Context) -> SessionOut:
    return _transition(ctx, principal, session_id, "running")


@router.post("/{session_id}/start", response_model=SessionOut, summary="Resume: a paused or finished session runs")
def start_session(session_id: SessionId, principal: Trader, ctx: Context) -> SessionOut:
    return _transition(ctx, principal, session_id, "running")


@router.post("/{session_id}/stop", response_model=SessionOut, summary="End the session for good")
def stop_session(session_id: SessionId, principal: Trader, ctx: Context) -> SessionOut:
    return _transition(ctx, principal, session_id, "stopped")


@router.post(
    "/{session_id}/ack",
    response_model=SessionOut,
    summary="Acknowledge what put the session (or, with symbol, one symbol) in reduce-only",
)
def ack_session(session_id: SessionId, principal: Trader, ctx: Context, body: Ack | None = None) -> SessionOut:
    row = owned_session(ctx, principal, session_id)
    symbol = body.symbol if body is not None else None
    return _read(ctx, ctx.store.acknowledge(row.name, symbol=symbol, actor=principal.actor))
