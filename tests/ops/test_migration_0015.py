"""Migration 0015 (capital slices): its downgrade is refused while a slice is open or closing (its
cash and positions live only in the columns it drops), and goes through once every slice is closed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.ops.test_audit import own_pg_url  # noqa: F401  (a database of this test's own)
from tests.ops.test_in_sample import _downgrade, _version, url  # noqa: F401
from tradeloop.ops import OpsStore, connect, migrate
from tradeloop.ops.challenger_models import ChallengerRow


def test_the_downgrade_is_refused_while_a_slice_holds_money(url: str) -> None:
    engine = connect(url)
    migrate(engine)
    store = OpsStore(engine)
    session = store.create_session(
        name="split", strategy="sma_cross", exchange="binance", timeframe="1h", symbols=["BTC-USDT"], mode="paper",
        init_cash=10_000.0, config={},
    )  # fmt: skip
    with store.transaction() as db:
        db.add(ChallengerRow(session_id=session.id, artifact="a" * 64, status="retired", capital_share=0.2,
                             slice_cash=2_000.0, slice_ts=0, slice_state="closing",
                             slice_risk_state={"version": 1}))  # fmt: skip
    with pytest.raises(RuntimeError, match="1 capital slice"):
        _downgrade(engine, "0014")
    assert _version(engine) == "0015"
    with store.transaction() as db:
        db.execute(sa.update(ChallengerRow).values(slice_state="closed"))
    _downgrade(engine, "0014")
    assert _version(engine) == "0014"
    assert "slice_cash" not in {c["name"] for c in sa.inspect(engine).get_columns("challengers")}
    engine.dispose()
