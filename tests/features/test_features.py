import numpy as np
import polars as pl
import pytest

from tradeloop.backtest.reference import sma_numpy
from tradeloop.features import DEFAULT_FEATURES, compute_features
from tradeloop.features import indicators as ind
from tradeloop.strategies import STRATEGIES


def two_symbols(btc: pl.DataFrame, eth: pl.DataFrame, n: int) -> pl.DataFrame:
    return pl.concat([btc[:n].with_columns(symbol=pl.lit("BTC")), eth[:n].with_columns(symbol=pl.lit("ETH"))])


def test_no_look_ahead(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> None:
    """Appending future candles never changes an already computed row (features and scores)."""
    short = two_symbols(btc_4h, eth_4h, 600)
    long = two_symbols(btc_4h, eth_4h, 900)
    exprs = [*DEFAULT_FEATURES]
    a = compute_features(short, exprs)
    b = compute_features(long, exprs).join(short.select("symbol", "ts"), on=["symbol", "ts"], how="semi")
    assert a.equals(b.select(a.columns))
    for cls in STRATEGIES.values():
        sa = cls().signals(short)
        sb = cls().signals(long).join(short.select("symbol", "ts"), on=["symbol", "ts"], how="semi")
        assert sa.equals(sb.select(sa.columns)), cls.name


def test_future_shock_does_not_leak(btc_4h: pl.DataFrame) -> None:
    base = compute_features(btc_4h[:500], by=None)
    shocked = btc_4h[:500].with_columns(
        pl.when(pl.int_range(pl.len()) == 499).then(pl.col(c) * 10).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close", "volume")
    )
    after = compute_features(shocked, by=None)
    assert base[:499].equals(after[:499])
    assert not base[499:].equals(after[499:])


def test_symbols_are_computed_independently(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> None:
    both = compute_features(two_symbols(btc_4h, eth_4h, 300))
    alone = compute_features(eth_4h[:300], by=None)
    assert both.filter(pl.col("symbol") == "ETH").drop("symbol").equals(alone)


def test_values_against_plain_numpy(btc_4h: pl.DataFrame) -> None:
    frame = btc_4h[:400]
    close, high, low = (frame[c].to_numpy() for c in ("close", "high", "low"))
    out = frame.select(
        sma=ind.sma(30),
        vol=ind.volatility(20),
        z=ind.zscore(20),
        rsi=ind.rsi(14),
        atr=ind.atr(14),
        ret=ind.returns(),
    )
    np.testing.assert_allclose(out["sma"].to_numpy()[29:], sma_numpy(close, 30)[29:], rtol=1e-12)
    logret = np.log(close[1:] / close[:-1])
    np.testing.assert_allclose(out["vol"][20], np.std(logret[:20], ddof=1), rtol=1e-10)
    window = close[380:400]
    np.testing.assert_allclose(out["z"][399], (close[399] - window.mean()) / window.std(ddof=1), rtol=1e-10)
    # Wilder's RSI and ATR by their textbook recursions
    delta = np.diff(close)
    gain = loss = 0.0
    tr = np.maximum.reduce([high[1:] - low[1:], abs(high[1:] - close[:-1]), abs(low[1:] - close[:-1])])
    tr = np.concatenate([[high[0] - low[0]], tr])
    atr = tr[0]
    for i, d in enumerate(delta):
        gain = max(d, 0) if i == 0 else gain + (max(d, 0) - gain) / 14
        loss = max(-d, 0) if i == 0 else loss + (max(-d, 0) - loss) / 14
    for value in tr[1:]:
        atr += (value - atr) / 14
    np.testing.assert_allclose(out["rsi"][399], 100 - 100 / (1 + gain / loss), rtol=1e-9)
    np.testing.assert_allclose(out["atr"][399], atr, rtol=1e-9)
    assert out["ret"][1] == pytest.approx(close[1] / close[0] - 1)


def test_warmup_is_null_then_filled(btc_4h: pl.DataFrame) -> None:
    out = compute_features(btc_4h[:200], by=None)
    for spec in DEFAULT_FEATURES:
        col = out[spec.name]
        assert col[: spec.warmup].null_count() == spec.warmup, spec.name
        assert col[spec.warmup :].null_count() == 0, spec.name


def test_duplicate_feature_name_is_an_error(btc_4h: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="sma_10"):
        compute_features(btc_4h[:50].with_columns(sma_10=pl.lit(1.0)), by=None)
