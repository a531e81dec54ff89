"""A loopback WebSocket server that speaks Binance's spot market streams (kline and
bookTicker events).

ccxt.pro connects to it, sends ``SUBSCRIBE`` frames and gets ``{"result": null, "id": N}``
before any event, as from Binance. Each subscribed ``<symbol>@kline_<interval>`` stream
then receives its scripted candles as ``kline`` events. Faults: ``drop_after`` closes the
first connection after that many events (the client must reconnect; the next connection
resumes from the last candle sent, as Binance resends the current kline), ``silent_after``
stops sending after that many events (the client must notice the feed is stale).
Outages as Binance has them, where the missed bars never come over the socket:
``skip_on_reconnect`` candles of each stream closed while the client was away, so the next
connection starts that many candles later (the one forming at the drop is never finished over
the socket); ``holes`` are candles of one stream never sent: that stream is quiet for their
ticks while the others go on. The REST loopback (``exchange_server``) serves every candle.

Top of book: a subscribed ``<symbol>@bookTicker`` stream receives the symbol's scripted
``book_tickers`` (bid, bid size, ask, ask size), one per tick, as Binance's spot bookTicker
messages (no event type, no time: ``{"u", "s", "b", "B", "a", "A"}``), then stays quiet;
with a ``quotes_gate`` only once it is set (two venues' scripts start together). The faults
above are the kline streams'.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

import websockets

INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}


def kline_event(symbol: str, interval: str, row: list, *, closed: bool) -> dict:
    ts, o, h, lo, c, v = row
    return {
        "e": "kline",
        "E": ts + INTERVAL_MS[interval] - 1,
        "s": symbol,
        "k": {
            "t": ts,
            "T": ts + INTERVAL_MS[interval] - 1,
            "s": symbol,
            "i": interval,
            "f": 1,
            "L": 2,
            "o": f"{o:.8f}",
            "c": f"{c:.8f}",
            "h": f"{h:.8f}",
            "l": f"{lo:.8f}",
            "v": f"{v:.8f}",
            "n": 2,
            "x": closed,
            "q": f"{v * c:.8f}",
            "V": "0",
            "Q": "0",
            "B": "0",
        },
    }


def book_ticker_event(symbol: str, update_id: int, quote: tuple[float, float, float, float]) -> dict:
    """Binance's spot ``<symbol>@bookTicker`` message (it carries neither ``e`` nor a time)."""
    bid, bid_qty, ask, ask_qty = quote
    return {"u": update_id, "s": symbol, "b": f"{bid:.8f}", "B": f"{bid_qty:.8f}", "a": f"{ask:.8f}",
            "A": f"{ask_qty:.8f}"}  # fmt: skip


@dataclass
class BinanceWsLoopback:
    candles: dict[str, list[list]]  # BTCUSDT -> [[ts, o, h, l, c, v], ...] of the kline_<interval> stream
    interval: str = "1m"
    pace_s: float = 0.02
    drop_after: int | None = None
    silent_after: int | None = None
    skip_on_reconnect: int = 0
    holes: dict[str, set[int]] = field(default_factory=dict)  # BTCUSDT -> row indices never sent
    # BTCUSDT -> [(bid, bid_qty, ask, ask_qty), ...] of the bookTicker stream, one a tick
    book_tickers: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict)
    quotes_gate: threading.Event | None = None  # when given, book tickers wait until it is set
    connections: int = 0
    subscriptions: list[str] = field(default_factory=list)
    subscribe_frames: list[int] = field(default_factory=list)  # the connection each SUBSCRIBE frame came on
    quoted: dict[str, int] = field(default_factory=dict)  # BTCUSDT -> book tickers sent

    def __enter__(self) -> BinanceWsLoopback:
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
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    async def _handle(self, ws) -> None:
        self.connections += 1
        connection = self.connections
        first = connection == 1
        if not first and self.skip_on_reconnect:
            for symbol in self._sent:
                self._sent[symbol] += self.skip_on_reconnect
        events = 0
        streams: list[str] = []
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=self.pace_s)
                    msg = json.loads(raw)
                    if msg.get("method") == "SUBSCRIBE":
                        streams += msg["params"]
                        self.subscriptions += msg["params"]
                        self.subscribe_frames.append(connection)
                        await ws.send(json.dumps({"result": None, "id": msg["id"]}))
                    continue
                except TimeoutError:
                    pass
                for stream in streams:
                    symbol = stream.split("@")[0].upper()
                    if stream.endswith("@bookTicker"):
                        await self._book_ticker(ws, symbol)
                        continue
                    rows = self.candles.get(symbol, [])
                    i = self._sent.get(symbol, 0)
                    if i in self.holes.get(symbol, ()):  # quiet for this candle's tick: time passes, nothing sent
                        self._sent[symbol] = i + 1
                        continue
                    if i >= len(rows) or (self.silent_after is not None and events >= self.silent_after):
                        continue
                    await ws.send(json.dumps(kline_event(symbol, self.interval, rows[i], closed=False)))
                    self._sent[symbol] = i + 1
                    events += 1
                    if first and self.drop_after is not None and events >= self.drop_after:
                        self._sent[symbol] = i  # the next connection resends the current kline
                        await ws.close()
                        return
        except websockets.ConnectionClosed:
            return

    async def _book_ticker(self, ws, symbol: str) -> None:
        if self.quotes_gate is not None and not self.quotes_gate.is_set():
            return
        quotes = self.book_tickers.get(symbol, [])
        i = self.quoted.get(symbol, 0)
        if i < len(quotes):
            await ws.send(json.dumps(book_ticker_event(symbol, i + 1, quotes[i])))
            self.quoted[symbol] = i + 1

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._thread.join(timeout=5)
