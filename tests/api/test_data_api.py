"""Market data through the real HTTP stack: the bundled sample imported into the API's lake;
series, coverage and candles as the lake itself reads them, page by page."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from tests.api.conftest import Api
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample, sample_files
from tradeloop.identity import Role

BTC_4H = SeriesKey("coinbase", "BTC-USD", "4h")
COLUMNS = ["ts", "open", "high", "low", "close", "volume"]


@pytest.fixture
def lake(api: Api) -> CandleLake:
    lake = CandleLake(api.ctx.settings.lake_dir, quarantine_root=api.ctx.settings.quarantine_dir)
    import_sample(lake)
    return lake


@pytest.fixture
def viewer(api: Api) -> dict[str, str]:
    api.user("vera", Role.VIEWER)
    return api.login("vera")


def _pages(api: Api, path: str, params: dict, headers: dict, *, cursor: str, into: str) -> tuple[list, int]:
    """Every item of a paged list, following ``cursor`` (``next_<cursor>``); and the page count."""
    items, pages = [], 0
    while True:
        answer = api.client.get(path, params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        pages += 1
        items += answer.json()[into]
        nxt = answer.json()[f"next_{cursor}"]
        if nxt is None:
            return items, pages
        params = {**params, cursor: nxt}


def test_the_series_are_the_lakes_and_their_pages_cover_each_once(api: Api, lake: CandleLake, viewer) -> None:
    expected = []
    for key in sorted(lake.list_series(), key=lambda k: k.label):
        frame = lake.read(key)
        expected.append((key.exchange, key.symbol, key.timeframe, frame["ts"].min(), frame["ts"].max(), frame.height))
    assert len(expected) == len(sample_files()) == 7
    whole = api.client.get("/data/series", headers=viewer).json()
    shown = [
        (s["exchange"], s["symbol"], s["timeframe"], s["first_ts"], s["last_ts"], s["rows"]) for s in whole["items"]
    ]
    assert shown == expected and whole["next_after"] is None
    paged, pages = _pages(api, "/data/series", {"limit": 3}, viewer, cursor="after", into="items")
    assert [(s["exchange"], s["symbol"], s["timeframe"]) for s in paged] == [e[:3] for e in expected] and pages == 3
    assert api.client.get("/data/series").status_code == 401


def test_candles_equal_the_lakes_rows_for_the_window_and_pages_cover_every_row_once(
    api: Api, lake: CandleLake, viewer
) -> None:
    stored = lake.read(BTC_4H)
    since, until = int(stored["ts"][100]), int(stored["ts"][2599])
    iso_since = datetime.fromtimestamp(since / 1000, tz=UTC).isoformat()
    params = {"exchange": "coinbase", "symbol": "BTC/USD", "timeframe": "4h", "since": iso_since, "until": str(until)}
    rows, pages = _pages(api, "/data/candles", {**params, "limit": 1000}, viewer, cursor="since", into="candles")
    window = lake.read(BTC_4H, start=since, end=until).select(COLUMNS)
    assert pages == 3 and len(rows) == window.height == 2500
    assert pl.DataFrame(rows, schema=window.schema, orient="row").equals(window)  # every value, exactly

    whole = {"exchange": "coinbase", "symbol": "BTC-USD", "timeframe": "4h", "limit": 5000}
    everything, pages = _pages(api, "/data/candles", whole, viewer, cursor="since", into="candles")
    assert pages == -(-stored.height // 5000)
    assert [r["ts"] for r in everything] == stored["ts"].to_list()  # each row once, in order

    too_many = api.client.get("/data/candles", params={**params, "limit": 5001}, headers=viewer)
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "query.limit"


def test_a_series_that_does_not_exist_is_a_404_naming_it(api: Api, lake: CandleLake, viewer) -> None:
    params = {"exchange": "binance", "symbol": "DOGE-USDT", "timeframe": "4h"}
    for path in ("/data/candles", "/data/coverage"):
        missing = api.client.get(path, params=params, headers=viewer)
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        assert "binance:DOGE-USDT:4h" in missing.json()["detail"] and "GET /data/series" in missing.json()["detail"]
    bad_timeframe = api.client.get("/data/candles", params={**params, "timeframe": "4 hours"}, headers=viewer)
    assert bad_timeframe.status_code == 422 and "timeframe='4 hours'" in bad_timeframe.json()["detail"]
    bad_time = api.client.get(
        "/data/candles", params={"exchange": "coinbase", "symbol": "BTC-USD", "timeframe": "4h", "since": "yesterday"},
        headers=viewer,
    )  # fmt: skip
    assert bad_time.status_code == 422 and "since" in bad_time.text and "yesterday" in bad_time.text


def test_coverage_reports_the_gaps_as_the_lake_counts_them(api: Api, lake: CandleLake, viewer) -> None:
    source = lake.read(SeriesKey("coinbase", "BTC-USD", "1h"))
    holed = SeriesKey("coinbase", "BTC-EUR", "1h")
    cut = 500
    lake.write(holed, pl.concat([source[:cut], source[cut + 2 :]]))  # two candles left out
    status = lake.status(holed)
    answer = api.client.get(
        "/data/coverage", params={"exchange": "coinbase", "symbol": "BTC-EUR", "timeframe": "1h"}, headers=viewer
    )
    assert answer.status_code == 200
    body = answer.json()
    assert (body["rows"], body["first_ts"], body["last_ts"]) == (source.height - 2, source["ts"][0], source["ts"][-1])
    assert body["gap_count"] == len(status.gaps) and body["missing"] == status.missing
    assert [(g["start"], g["end"], g["missing"]) for g in body["gaps"]] == [
        (g.start, g.end, g.missing) for g in status.gaps
    ]
    assert (int(source["ts"][cut]), int(source["ts"][cut + 1]), 2) in [
        (g["start"], g["end"], g["missing"]) for g in body["gaps"]
    ]
    assert body["coverage"] == pytest.approx(status.coverage) and body["invalid"] == {} and body["unreadable"] == []
