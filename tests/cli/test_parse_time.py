"""Times on the command line: ISO (UTC when no zone) or epoch milliseconds; a compact date
(20240101) is refused instead of read as a moment in 1970."""

from __future__ import annotations

import pytest

from tradeloop.cli.common import parse_time
from tradeloop.errors import ConfigError


def test_iso_and_epoch_milliseconds() -> None:
    assert parse_time("2024-01-01", field="--start") == 1_704_067_200_000
    assert parse_time("2024-01-01T01:00+01:00", field="--start") == 1_704_067_200_000
    assert parse_time("1704067200000", field="--start") == 1_704_067_200_000


@pytest.mark.parametrize(("value", "hint"), [("20240101", "2024-01-01"), ("1000", "2024-01-31")])
def test_a_compact_date_is_refused_naming_the_field_and_the_iso_form(value: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_time(value, field="--start")
    assert f"--start={value} reads as epoch milliseconds (1970-01-01" in str(err.value)
    assert f"e.g. {hint}" in str(err.value)
