"""Run ``tradeloop`` with the live engine set to kill itself (SIGKILL, no cleanup) at one
point of its bar step: ``python tests/live/crash_at.py STAGE N -- live run ...``.

Stages (each at its N-th occurrence that has work to do):

* ``settle``, ``mark``, ``decide``, ``risk``, ``persist``: after that stage ran, inside the bar's
  transaction (nothing of the bar is committed);
* ``committed``: the bar committed, its orders not yet marked sent;
* ``sent``: ``sent`` committed for the bar's orders, no create gone out yet;
* ``submitted``: the broker took an order, its answer not stored yet.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from live.engine import LiveEngine
from tradeloop.cli.main import app

STAGES = {"settle": "_settle", "mark": "_mark", "decide": "_decide_intents", "risk": "_risk", "persist": "_persist"}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    stage, nth, rest = sys.argv[1], int(sys.argv[2]), sys.argv[sys.argv.index("--") + 1 :]
    seen = [0]

    def count(has_work: bool) -> None:
        if has_work:
            seen[0] += 1
            if seen[0] >= nth:
                die()

    if stage in STAGES:
        original = getattr(LiveEngine, STAGES[stage])

        @functools.wraps(original)
        def after(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            work = {"settle": args[1] if len(args) > 1 else True}.get(stage, True)
            if stage in ("decide", "risk", "persist"):
                work = bool(result)
            count(bool(work))
            return result

        setattr(LiveEngine, STAGES[stage], after)
    elif stage == "committed":
        send = LiveEngine._send

        async def before_send(self, orders):
            count(bool(orders))
            return await send(self, orders)

        LiveEngine._send = before_send  # type: ignore[method-assign]
    elif stage in ("sent", "submitted"):
        submit = LiveEngine._submit

        async def around_submit(self, order):
            if stage == "sent":
                count(True)
            state = await submit(self, order)
            if stage == "submitted":
                count(True)
            return state

        LiveEngine._submit = around_submit  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown stage {stage!r}; one of {[*STAGES, 'committed', 'sent', 'submitted']}")
    sys.argv = ["tradeloop", *rest]
    app()


if __name__ == "__main__":
    main()
