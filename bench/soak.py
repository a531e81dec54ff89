"""Chaos soak: the live engine, the API and a job worker under supervisord
(``deploy/supervisor/tradeloop.conf``, as written) over this machine's PostgreSQL and Redis, with
bench/api.py's load on the API, while a process is killed with SIGKILL at random; then proof that
no order was lost or made twice.

* **Bars**: the bundled sample's last BTC-USD 4h candles are held back from the lake and written
  to it one at a time, every ``--bar-s`` seconds, as an ingest would; the engine (a paper
  session following the lake, ``tradeloop live run --follow``, checking every 5 s) trades
  them. A bar is *available* when its session has committed it within ``--deadline-s`` of
  its write (default 15 s: three of the engine's checks); availability is the share of
  bars that were (target 99.9%). One symbol: the lake is written per series, so two symbols
  of one bar would reach a following engine at different checks.
* **Load**: ``--users`` traders signed in (bench/api.py's seed: a session each with its
  orders, fills and equity), each reading their session, positions and equity (90%) or
  pausing and resuming it (10%) with a think time of 0 to 2 x ``--think`` s; a backtest job
  submitted through the API every ``--job-every`` s for the worker. Refused connections and
  5xx answers while the API restarts are counted, not fatal.
* **Chaos**: every ``--kill-every`` s on average (0.5 to 1.5 times it, at random), the next of
  the engine, the API (its whole process group: uvicorn and its workers), the engine again and
  the worker is killed with SIGKILL; supervisord starts it again.
* **Proof**: once the last bar is written and committed, supervisord is stopped and the same
  bars are traded again by one uninterrupted engine in a database of its own; both order books
  (client order id less its session prefix, symbol, side, intent, quantity, status) and fills
  must be equal, and no client order id may repeat. Every submitted job must have ended
  (``--drain-s`` s at most after the soak; a killed worker's job waits out its heartbeat).

A throwaway PostgreSQL database and Redis prefix are made and removed; ``TRADELOOP_TEST_DATABASE_URL``
/ ``TRADELOOP_TEST_REDIS_URL`` point it at other servers, as for the tests. Needs Debian's
supervisor (tests/services/ensure.sh installs it). It is long: `make bench` only names it.

Run:  .venv/bin/python bench/soak.py                      (30 minutes)
      nice -n 19 .venv/bin/python bench/soak.py --minutes 3 --kill-every 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api import HIGH, PASSWORD, REDIS_URL, free_port, seed, throwaway_database, tokens_for  # noqa: E402

CONF = ROOT / "deploy" / "supervisor" / "tradeloop.conf"
SESSION, SYMBOL, EXCHANGE, TIMEFRAME = "soak", "BTC-USD", "coinbase", "4h"
VICTIMS = ("engine", "api", "engine", "worker")  # in turn: the engine half the time


@dataclass
class Load:
    ok: int = 0
    refused: int = 0  # no connection: the API was restarting
    errors: Counter = field(default_factory=Counter)  # status >= 500
    ms: list[float] = field(default_factory=list)
    jobs: list[int] = field(default_factory=list)
    signed_in_again: int = 0  # an access token expired (15 minutes): the user signed in again


# ---------------------------------------------------------------------------------- the bars


def hold_back(data_dir: Path, bars: int) -> tuple[int, pl.DataFrame]:
    """The lake under ``data_dir`` with the sample's candles less the last ``bars`` of SYMBOL,
    which are returned (oldest first) to be written during the soak, after the session's first
    bar (its ``--start``, stored now: a replay needs a candle from its start on)."""
    from tradeloop.data import CandleLake, SeriesKey
    from tradeloop.data.importer import import_sample

    scratch = CandleLake(data_dir / "scratch")
    import_sample(scratch)
    key = SeriesKey(EXCHANGE, SYMBOL, TIMEFRAME)
    candles = scratch.read_many([key]).sort("ts")
    CandleLake(data_dir / "lake").write(key, candles.head(candles.height - bars + 1))
    shutil.rmtree(data_dir / "scratch")
    start = int(candles["ts"][candles.height - bars])
    promote_champion(data_dir, candles.filter(pl.col("ts") < start))
    return start, candles.tail(bars - 1)


def promote_champion(data_dir: Path, candles: pl.DataFrame) -> None:
    """A champion trained on the candles before the soak's (so it trades out of sample), its
    threshold lowered to take most entries: the session trades often enough for the proof."""
    import numpy as np

    from tradeloop.registry import Lineage, ModelRegistry
    from tradeloop.research.walkforward import fit_threshold
    from tradeloop.strategies import SmaCross
    from tradeloop.thresholds import BarrierConfig, meta_dataset

    strategy, barriers = SmaCross(fast=5, slow=20), BarrierConfig()
    events = meta_dataset(candles, strategy, barriers=barriers).filter(pl.col("t1") < int(candles["ts"].max()))
    model = fit_threshold(events, strategy, barriers)
    model.max_age_ms = 1800 * 86_400_000  # the held-back bars: 30 min at a bar a second span 300 days
    model.estimator.threshold_ = float(np.quantile(model.probabilities(events), 0.1))
    registry = ModelRegistry(data_dir / "registry")
    artifact = registry.register(model.save(data_dir / "model"))
    registry.promote("sma_cross", artifact, lineage=Lineage(run_id="soak"))


def write_bars(data_dir: Path, held: pl.DataFrame, *, every_s: float, until: float, written: dict[int, float]) -> None:
    """Write the held-back candles one a time until ``until`` (monotonic); ``written``: ts -> time."""
    from tradeloop.data import CandleLake, SeriesKey

    lake, key = CandleLake(data_dir / "lake"), SeriesKey(EXCHANGE, SYMBOL, TIMEFRAME)
    next_at = time.monotonic()
    for row in held.iter_slices(1):
        if next_at >= until:
            return
        time.sleep(max(0.0, next_at - time.monotonic()))
        lake.write(key, row)
        written[int(row["ts"][0])] = time.monotonic()
        next_at += every_s


def watch_commits(db_url: str, seen: dict[int, float], stop: threading.Event) -> None:
    """When each bar was first seen committed (the session's last_bar_ts), polled every 0.1 s."""
    engine = sa.create_engine(db_url)
    last = None
    while not stop.is_set():
        try:
            with engine.connect() as conn:
                now = conn.execute(sa.text("SELECT last_bar_ts FROM sessions WHERE name = :n"), {"n": SESSION})
                ts = now.scalar()
        except sa.exc.DBAPIError:
            ts = None
        if ts is not None and ts != last:
            seen.setdefault(int(ts), time.monotonic())
            last = ts
        stop.wait(0.1)
    engine.dispose()


# ---------------------------------------------------------------------------------- the load


async def api_load(url: str, users: list[tuple[str, int]], tokens: list[str], *, seconds: float, think: float,
                   job_every: float, load: Load) -> None:  # fmt: skip
    """bench/api.py's mix, counting refusals and 5xx instead of failing on them; and jobs."""
    limits = httpx.Limits(max_connections=len(users) + 1, max_keepalive_connections=len(users) + 1)
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def call(method: str, path: str, headers: dict, **kw) -> httpx.Response | None:
            started = time.perf_counter()
            try:
                answer = await client.request(method, path, headers=headers, **kw)
            except httpx.TransportError:
                load.refused += 1
                return None
            if answer.status_code >= 500:
                load.errors[answer.status_code] += 1
            else:
                load.ok += 1
                load.ms.append((time.perf_counter() - started) * 1000)
            return answer

        async def signed_in(name: str, answer: httpx.Response | None, headers: dict) -> dict:
            """The headers to go on with: an access token lives 15 minutes, so a 401 signs in again
            (as a client would refresh), counted in ``load.signed_in_again``."""
            if answer is None or answer.status_code != 401:
                return headers
            again = await call("POST", "/auth/login", {}, json={"username": name, "password": PASSWORD})
            if again is None or again.status_code != 200:
                return headers
            load.signed_in_again += 1
            return {"Authorization": f"Bearer {again.json()['access_token']}"}

        async def user(index: int, name: str, sid: int, token: str) -> None:
            rng, headers, paused = random.Random(index), {"Authorization": f"Bearer {token}"}, False
            await asyncio.sleep(rng.uniform(0, 2 * think))
            while time.monotonic() < end:
                if rng.random() < 0.9:
                    path = rng.choice(["/sessions", f"/sessions/{sid}", f"/sessions/{sid}/positions",
                                       f"/sessions/{sid}/equity"])  # fmt: skip
                    headers = await signed_in(name, await call("GET", path, headers), headers)
                else:
                    answer = await call("POST", f"/sessions/{sid}/{'resume' if paused else 'pause'}", headers)
                    paused = not paused if answer is not None and answer.status_code == 200 else paused
                    headers = await signed_in(name, answer, headers)
                await asyncio.sleep(rng.uniform(0, 2 * think))

        async def jobs(name: str, token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            body = {"strategy": "sma_cross", "exchange": EXCHANGE, "symbols": [SYMBOL], "timeframe": TIMEFRAME,
                    "start": "2024-01-01", "end": "2024-07-01"}  # fmt: skip
            while time.monotonic() < end:
                answer = await call("POST", "/backtests", headers, json=body)
                if answer is not None and answer.status_code == 202:
                    load.jobs.append(answer.json()["id"])
                headers = await signed_in(name, answer, headers)
                await asyncio.sleep(job_every)

        await asyncio.gather(jobs(users[0][0], tokens[0]), *(user(i, name, sid, tok) for i, ((name, sid), tok) in
                                                             enumerate(zip(users, tokens, strict=True))))  # fmt: skip


# ---------------------------------------------------------------------------------- chaos


class Supervisor:
    """supervisord on the repository's configuration, and supervisorctl against it."""

    def __init__(self, env: dict[str, str], run_dir: Path):
        self.env, self.run_dir = env, run_dir
        self.proc = subprocess.Popen(["supervisord", "-n", "-c", str(CONF)], cwd=run_dir, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip

    def ctl(self, *args: str) -> str:
        return subprocess.run(["supervisorctl", "-c", str(CONF), *args], env=self.env, capture_output=True,
                              text=True, timeout=120).stdout  # fmt: skip

    def pid(self, program: str) -> int:
        out = self.ctl("pid", program).strip()
        return int(out) if out.isdigit() else 0

    def shutdown(self) -> None:
        self.ctl("shutdown")
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def chaos(supervisor: Supervisor, *, every_s: float, until: float, rng: random.Random, kills: Counter) -> None:
    turn = 0
    while (wait := every_s * rng.uniform(0.5, 1.5)) < until - time.monotonic():
        time.sleep(wait)
        victim = VICTIMS[turn % len(VICTIMS)]
        turn += 1
        pid = supervisor.pid(victim)
        if not pid:  # it is restarting now
            continue
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)  # supervisord gives each program its own group
            kills[victim] += 1
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------------- proof


def order_book(db_url: str) -> tuple[list[tuple], list[tuple], int]:
    """Orders (client order id less its session prefix, ...), fills, and repeated client order ids."""
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        sid = conn.execute(sa.text("SELECT id FROM sessions WHERE name = :n"), {"n": SESSION}).scalar()
        orders = conn.execute(
            sa.text(
                "SELECT client_order_id, symbol, side, intent, quantity, status FROM orders "
                "WHERE session_id = :s ORDER BY decided_ts, client_order_id"
            ),
            {"s": sid},
        ).all()
        fills = conn.execute(sa.text("SELECT f.ts, f.side, f.quantity, f.price FROM fills f WHERE f.session_id = :s "
                                     "ORDER BY f.ts, f.side"), {"s": sid}).all()  # fmt: skip
    engine.dispose()
    ids = [o[0] for o in orders]
    prefix = f"tl{sid}-"
    return [(o[0].removeprefix(prefix), *o[1:]) for o in orders], [tuple(f) for f in fills], len(ids) - len(set(ids))


def job_outcomes(url: str, token: str, ids: list[int], *, drain_s: float) -> Counter:
    deadline = time.monotonic() + drain_s
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        states = Counter()
        for job in ids:
            try:
                states[httpx.get(f"{url}/jobs/{job}", headers=headers, timeout=10).json()["status"]] += 1
            except (httpx.TransportError, KeyError, ValueError):
                states["unreadable"] += 1
        if states["succeeded"] + states["failed"] + states["dead"] == len(ids) or time.monotonic() > deadline:
            return states
        time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long bars come and processes die")
    parser.add_argument("--bar-s", type=float, default=1.0, help="seconds between two bars written to the lake")
    parser.add_argument("--deadline-s", type=float, default=15.0, help="a bar committed later than this is missed")
    parser.add_argument("--kill-every", type=float, default=60.0, help="mean seconds between two kills")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--think", type=float, default=2.0, help="mean think time between a user's requests (s)")
    parser.add_argument("--job-every", type=float, default=20.0, help="seconds between two backtest jobs")
    parser.add_argument("--drain-s", type=float, default=150.0, help="the longest wait for jobs to end after it")
    parser.add_argument("--seed", type=int, default=7, help="the chaos's random seed")
    args = parser.parse_args()
    assert shutil.which("supervisord"), "supervisord is missing: bash tests/services/ensure.sh (Debian's supervisor)"
    import redis

    seconds = args.minutes * 60
    prefix = f"tradeloop-soak-{uuid.uuid4().hex[:8]}"
    with throwaway_database() as db_url, tempfile.TemporaryDirectory(prefix="tradeloop-soak-") as tmp:
        data, run_dir = Path(tmp) / "data", Path(tmp) / "run"
        run_dir.mkdir()
        start, held = hold_back(data, int(seconds / args.bar_s) + 10)
        seeded = seed(db_url, users=args.users, orders=200, equity=1000, desk_sessions=0)
        ports = {name: free_port() for name in ("api", "dashboard", "engine", "worker", "research")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_")} | {
            "TRADELOOP_HOME": str(ROOT), "TRADELOOP_RUN_DIR": str(run_dir), "TRADELOOP_SESSION": SESSION,
            "TRADELOOP_ENGINE_ARGS": f"--symbol {SYMBOL} --start {start}",
            "TRADELOOP_ENGINE_METRICS_PORT": str(ports["engine"]),
            "TRADELOOP_WORKER_METRICS_PORT": str(ports["worker"]),
            "TRADELOOP_API_HOST": "127.0.0.1", "TRADELOOP_API_PORT": str(ports["api"]), "TRADELOOP_API_WORKERS": "2",
            "TRADELOOP_DASHBOARD_PORT": str(ports["dashboard"]),
            "TRADELOOP_RESEARCH_METRICS_PORT": str(ports["research"]),
            "TRADELOOP_DATA_DIR": str(data), "DATABASE_URL": db_url, "REDIS_URL": REDIS_URL,
            "TRADELOOP_REDIS_PREFIX": prefix, "TRADELOOP_LOG_LEVEL": "WARNING", "TRADELOOP_RATE_LIMIT_USER": HIGH,
            "TRADELOOP_RATE_LIMIT_API_KEY": HIGH, "TRADELOOP_RATE_LIMIT_IP": HIGH, "TRADELOOP_RATE_LIMIT_LOGIN": HIGH,
        }  # fmt: skip
        url = f"http://127.0.0.1:{ports['api']}"
        supervisor = Supervisor(env, run_dir)
        written: dict[int, float] = {}
        committed: dict[int, float] = {}
        kills: Counter = Counter()
        load = Load()
        stop_watch = threading.Event()
        try:
            deadline = time.monotonic() + 120
            while not _ready(url) and time.monotonic() < deadline:
                time.sleep(0.5)
            tokens = asyncio.run(tokens_for(url, [name for name, _ in seeded.users]))
            print(f"{datetime.now(UTC):%H:%M:%S} soak: {args.minutes:g} min, a bar every {args.bar_s:g} s, a kill "
                  f"every ~{args.kill_every:g} s, {args.users} users", flush=True)  # fmt: skip
            until = time.monotonic() + seconds
            threads = [
                threading.Thread(target=watch_commits, args=(db_url, committed, stop_watch), daemon=True),
                threading.Thread(target=write_bars, args=(data, held), daemon=True,
                                 kwargs={"every_s": args.bar_s, "until": until, "written": written}),
                threading.Thread(target=chaos, args=(supervisor,), daemon=True,
                                 kwargs={"every_s": args.kill_every, "until": until - 20,  # the last 20 s: calm
                                         "rng": random.Random(args.seed), "kills": kills}),
            ]  # fmt: skip
            for thread in threads:
                thread.start()
            asyncio.run(api_load(url, seeded.users, tokens, seconds=seconds, think=args.think,
                                 job_every=args.job_every, load=load))  # fmt: skip
            for thread in threads[1:]:
                thread.join()
            last = max(written)
            catch_up = time.monotonic() + 120
            while max(committed, default=0) < last and time.monotonic() < catch_up:
                time.sleep(0.2)
            stop_watch.set()
            fresh = asyncio.run(tokens_for(url, [seeded.users[0][0]]))[0]  # the first token has expired
            jobs = job_outcomes(url, fresh, load.jobs, drain_s=args.drain_s)
        finally:
            supervisor.shutdown()
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(f"{prefix}:*"))
            if keys:
                client.delete(*keys)
            client.close()
        restarts = (run_dir / "supervisord.log").read_text().count("spawned: ")
        soaked_orders, soaked_fills, repeated = order_book(db_url)
        reference = f"sqlite:///{Path(tmp) / 'reference.db'}"
        done = subprocess.run(
            [sys.executable, "-m", "tradeloop", "live", "run", "--name", SESSION, "--symbol", SYMBOL,
             "--start", str(start)],
            cwd=ROOT, env=env | {"DATABASE_URL": reference}, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        expected_orders, expected_fills, _ = order_book(reference)

    report(args, written=written, committed=committed, kills=kills, restarts=restarts, load=load, jobs=jobs,
           soaked=(soaked_orders, soaked_fills, repeated), expected=(expected_orders, expected_fills))  # fmt: skip


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def report(args, *, written, committed, kills, restarts, load: Load, jobs: Counter, soaked, expected) -> None:
    """Print the figures, and exit 1 when an order was lost or repeated."""
    order_ts = sorted(committed)
    latency = {}
    for ts, at in written.items():  # a bar is committed at the first sight of last_bar_ts >= its ts
        later = [committed[c] for c in order_ts if c >= ts]
        latency[ts] = (min(later) - at) if later else float("inf")
    within = sum(v <= args.deadline_s for v in latency.values())
    finite = [v for v in latency.values() if v != float("inf")]
    requests = load.ok + load.refused + sum(load.errors.values())
    (orders, fills, repeated), (want_orders, want_fills) = soaked, expected
    lost = len(set(want_orders) - set(orders))
    extra = len(set(orders) - set(want_orders))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "")  # fmt: skip
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; supervisord, PostgreSQL, Redis")  # fmt: skip
    print(f"soak: {args.minutes:g} min; kills (SIGKILL): {dict(kills)} = {sum(kills.values())}; "
          f"supervisord spawns: {restarts} (4 at the start)")  # fmt: skip
    print(f"bars: {len(written)} written, {within} committed within {args.deadline_s:g} s: availability "
          f"{100 * within / max(1, len(written)):.2f}% (target 99.9%: "
          f"{'met' if within >= 0.999 * len(written) else 'missed'}); write to commit p50 "
          f"{np.percentile(finite, 50):.1f} s, p99 {np.percentile(finite, 99):.1f} s, "
          f"max {max(finite):.1f} s")  # fmt: skip
    print(f"API: {requests} requests, {load.ok} answered below 500 ({100 * load.ok / max(1, requests):.2f}%), "
          f"{load.refused} refused while it restarted, 5xx {dict(load.errors)}; p99 of answered "
          f"{np.percentile(load.ms or [0], 99):.0f} ms; {load.signed_in_again} sign-in(s) again after a token "
          "expired")  # fmt: skip
    print(f"jobs: {len(load.jobs)} submitted: {dict(jobs)}")
    print(f"orders: {len(orders)} (uninterrupted run: {len(want_orders)}), fills {len(fills)} "
          f"({len(want_fills)}); lost {lost}, extra {extra}, repeated client order ids {repeated}; fills equal: "
          f"{fills == want_fills}")  # fmt: skip
    ok = lost == extra == repeated == 0 and orders == want_orders and fills == want_fills
    print("zero lost or duplicated orders: " + ("proven" if ok else "FAILED"))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
