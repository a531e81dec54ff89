"""A loopback WebSocket server that speaks OKX's API v5 candle channels (for ccxt.pro's ``okx``).

OKX serves candles on its *business* endpoint (``/ws/v5/business``; ccxt.pro appends
``/business`` to its ``ws`` URL): a client sends ``{"op": "subscribe", "args": [{"channel":
"candle1m", "instId": "BTC-USDT"}]}`` and gets one ``{"event": "subscribe", "arg": ...,
"connId": ...}`` per argument before any push; a candle channel asked for on another endpoint,
or an instrument this server has no candles for, is ``{"event": "error", "code": "60018"}``.
Each subscribed channel then receives its scripted candles, one push each, as OKX sends them:
``{"arg": ..., "data": [[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]]}`` (strings;
``confirm`` ``"1"``: the candle has closed). OKX's text keep-alive is answered: ``ping`` ->
``pong``. ``drop_after`` closes the first connection after that many pushes (the client
reconnects and the next connection resends the candle it was on).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

import websockets

BARS = {"1m": "1m", "5m": "5m", "1h": "1H"}


def candle_push(channel: str, inst_id: str, row: list) -> dict:
    ts, o, h, lo, c, v = row
    data = [str(ts), *(f"{x:.8f}" for x in (o, h, lo, c, v)), f"{v * c:.8f}", f"{v * c:.8f}", "1"]
    return {"arg": {"channel": channel, "instId": inst_id}, "data": [data]}


@dataclass
class OkxWsLoopback:
    candles: dict[str, list[list]]  # BTC-USDT -> [[ts, o, h, l, c, v], ...] of the candle<bar> channel
    bar: str = "1m"
    pace_s: float = 0.02
    drop_after: int | None = None
    connections: int = 0
    subscriptions: list[dict] = field(default_factory=list)  # every subscribe argument received
    paths: list[str] = field(default_factory=list)  # the path of each connection

    def __enter__(self) -> OkxWsLoopback:
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._sent: dict[str, int] = {}

        async def serve() -> None:
            self._server = await websockets.serve(self._handle, "127.0.0.1", 0)
            started.set()
            await self._server.wait_closed()

        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(serve(),), daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    @property
    def url(self) -> str:
        """The base ccxt.pro's ``urls['api']['ws']`` takes (it appends ``/business``)."""
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws/v5"

    async def _handle(self, ws) -> None:
        self.connections += 1
        first = self.connections == 1
        path = ws.request.path if getattr(ws, "request", None) is not None else ws.path
        self.paths.append(path)
        channels: list[dict] = []
        pushes = 0
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=self.pace_s)
                    if raw == "ping":
                        await ws.send("pong")
                        continue
                    msg = json.loads(raw)
                    for arg in msg.get("args", []) if msg.get("op") == "subscribe" else []:
                        self.subscriptions.append(arg)
                        await ws.send(json.dumps(self._subscribed(arg, path, channels)))
                    continue
                except TimeoutError:
                    pass
                for arg in channels:
                    inst_id = arg["instId"]
                    rows, i = self.candles[inst_id], self._sent.get(inst_id, 0)
                    if i >= len(rows):
                        continue
                    await ws.send(json.dumps(candle_push(arg["channel"], inst_id, rows[i])))
                    self._sent[inst_id] = i + 1
                    pushes += 1
                    if first and self.drop_after is not None and pushes >= self.drop_after:
                        self._sent[inst_id] = i  # the next connection resends it
                        await ws.close()
                        return
        except websockets.ConnectionClosed:
            return

    def _subscribed(self, arg: dict, path: str, channels: list[dict]) -> dict:
        channel, inst_id = str(arg.get("channel")), str(arg.get("instId"))
        wanted = f"candle{BARS.get(self.bar, self.bar)}"
        if not path.endswith("/business") or channel != wanted or inst_id not in self.candles:
            return {
                "event": "error",
                "code": "60018",
                "msg": f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use the correct URL, "
                "channel and parameters referring to API document.",
                "connId": "loopback",
            }
        channels.append(arg)
        return {"event": "subscribe", "arg": arg, "connId": "loopback"}

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._thread.join(timeout=5)
