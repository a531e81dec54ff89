"""Tables fit the terminal: optional columns go, least important first, and the caption says
which; --wide prints every column; required columns always stay."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tradeloop.cli.common import fmt_num
from tradeloop.cli.tables import FitTable

COLUMNS = ["name", "status", "equity", "cash", "mode"]


def sessions() -> FitTable:
    tbl = FitTable("Trading sessions", COLUMNS, optional=["equity", "cash", "mode"])
    tbl.add_row("a-rather-long-session-name", "running", "10,123.45", "5,000.00", "paper")
    tbl.add_row("b", "stale", "9,876.54", "9,876.54", "live")
    return tbl


def printed(tbl: FitTable, width: int, *, wide: bool = False) -> str:
    out = io.StringIO()
    tbl.print(Console(file=out, width=width, color_system=None), wide=wide)
    return out.getvalue()


def header(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if "name" in line and "┃" in line)
    return [cell.strip() for cell in line.split("┃")[1:-1]]


def test_a_wide_terminal_shows_every_column_and_no_caption() -> None:
    text = printed(sessions(), 200)
    assert header(text) == COLUMNS and "not shown" not in text


def test_a_narrow_terminal_drops_optional_columns_last_first_and_says_which() -> None:
    shown, hidden = sessions().fit(45)
    assert shown[:2] == ["name", "status"] and hidden and hidden == [c for c in COLUMNS if c not in shown]
    assert hidden[-1] == "mode" and (len(hidden) == 1 or hidden[-2] == "cash")  # least important go first
    text = printed(sessions(), 45)
    assert header(text) == shown
    assert f"{len(hidden)} column(s) not shown" in text and "--wide" in text
    for line in text.splitlines():
        assert len(line.rstrip()) <= 45


def test_required_columns_stay_however_narrow_and_wide_shows_all() -> None:
    shown, hidden = sessions().fit(10)
    assert shown == ["name", "status"] and hidden == ["equity", "cash", "mode"]
    assert header(printed(sessions(), 30, wide=True)) == COLUMNS  # every column, at its natural width
    assert "a-rather-long-session-name" in printed(sessions(), 30, wide=True)


def test_rows_and_options_are_checked() -> None:
    with pytest.raises(ValueError, match="not among the columns"):
        FitTable("t", ["a"], optional=["b"])
    with pytest.raises(ValueError, match="needs 2 cells"):
        FitTable("t", ["a", "b"]).add_row("1")


@pytest.mark.parametrize(
    ("value", "pct", "text"),
    [
        (-0.0, False, "0.00"),
        (-1e-9, False, "0.00"),
        (-0.02, False, "-0.02"),
        (-1234.5, False, "-1,234.50"),
        (-1e-9, True, "0.0%"),
        (-0.3, True, "-30.0%"),
        (float("nan"), False, "-"),
    ],
)
def test_numbers_never_read_minus_zero(value: float, pct: bool, text: str) -> None:
    assert fmt_num(value, pct) == text


def test_a_name_too_long_for_a_narrow_terminal_wraps_instead_of_being_cut() -> None:
    # data status at COLUMNS=60 printed "coinbase:BTC-USD:…" for both the 1h and the 4h series
    tbl = FitTable("Lake", ["series", "first", "last"])
    for label in ("coinbase:BTC-USD:1h", "coinbase:BTC-USD:4h"):
        tbl.add_row(label, "2017-07-01 11:00", "2019-10-17 09:00")
    text = printed(tbl, 60)
    assert "…" not in text
    cells = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    assert "".join(cells) == "coinbase:BTC-USD:1hcoinbase:BTC-USD:4h"  # folded over lines, every character kept
    assert "2017-07-01 11:00" in text and "2019-10-17 09:00" in text  # times stay on one line
    assert max(len(line) for line in text.splitlines()) <= 60
