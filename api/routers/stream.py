"""``GET /ws``: the real-time WebSocket (protocol in ``api.ws``; fan-out in ``api.fanout``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, WebSocket

from api import ws


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await ws.stop_hub(app)  # its readers, its Redis consumer group


router = APIRouter(tags=["stream"], lifespan=lifespan)


@router.websocket("/ws", name="stream")
async def stream(websocket: WebSocket) -> None:
    """Events as they happen: prices, signals, orders, fills, risk and session status."""
    await ws.serve(websocket)
