"""DuckDB over the candle lake: one SQL view per series and one ``candles`` view of them all.

Views (in an in-memory DuckDB database, opened per ``LakeSQL``; no ``.duckdb`` file):

- one per series, named ``<exchange>_<symbol>_<timeframe>`` in lower case with ``-`` as
  ``_`` (``binance_btc_usdt_1h``, ``binanceusdm_btc_usdt_perp_1h``), columns ``ts, open,
  high, low, close, volume``, ordered by ``ts``;
- ``candles``: every series, with ``exchange, symbol, timeframe`` in front;
- ``lake_rows.<view>`` and ``lake_rows.candles``: every stored row with its ``file``, ``row``
  and ``rule`` (the first import rule it breaks; NULL for the rows the views hold).

They hold exactly the candles that ``CandleLake.read`` returns: each stored file is read by
DuckDB where it has the lake's own schema (int64 ``ts``, float64 values), or cast by the
lake's reader (``tradeloop.data.stored``) where it does not, and the import rules of
``tradeloop.data.validation`` leave the bad rows out. The rules are written once more here,
in SQL, because DuckDB evaluates them; ``tests/data/test_sql.py`` holds the two versions to
the same rows, rule by rule. As in ``check_stored``, rows are taken in ``ts`` order (ties in
file, then row order), so ``out_of_order`` cannot occur, and ``in_future`` applies only when
a clock reading is given (``now_ms``: status does, plain reads never do).

Read-only: a query is one statement of the SELECT kind (``SELECT``, ``WITH ... SELECT``,
``FROM``, ``VALUES``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``); anything else is a
:class:`ConfigError` before it runs. The connection may read only the lake's folder and its
configuration is locked, so a query cannot reach other files either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import polars as pl

from tradeloop.data.lake import CandleLake, SeriesStatus
from tradeloop.data.schema import CANDLE_COLUMNS, SeriesKey, grid_offset_ms
from tradeloop.data.stored import REJECTED_COLUMNS, read_stored_file
from tradeloop.data.validation import (
    CLOCK_TOLERANCE_MS,
    MAX_PRICE,
    MAX_VOLUME,
    MIN_PRICE,
    MIN_TS_MS,
    Gap,
)
from tradeloop.errors import ConfigError, DataError

UNION_VIEW = "candles"
UNION_COLUMNS: tuple[str, ...] = ("exchange", "symbol", "timeframe", *CANDLE_COLUMNS)
_INTERNAL = "lake_rows"  # schema of the per-series views that keep the rule of every row
_PRICES = ("open", "high", "low", "close")
_VALUES = (*_PRICES, "volume")
# parquet_schema() of a file written by the lake: (physical type, no logical type)
_PLAIN_TYPES = {"ts": "INT64", **{c: "DOUBLE" for c in _VALUES}}
_READ_ONLY_HELP = (
    "`tradeloop data query` and LakeSQL run one read-only statement: SELECT, WITH ... SELECT, "
    "FROM, VALUES, DESCRIBE, SHOW or SUMMARIZE; the lake changes only through "
    "`tradeloop data import` and `tradeloop data ingest`"
)


def view_name(key: SeriesKey) -> str:
    """The SQL view of a series: ``binance:BTC-USDT:1h`` -> ``binance_btc_usdt_1h``."""
    return f"{key.exchange}_{key.symbol.lower().replace('-', '_')}_{key.timeframe}"


def rule_sql(*, timeframe_ms: int, now_ms: int | None) -> str:
    """SQL ``CASE`` naming the first import rule a row breaks (NULL: a good row).

    Needs the columns ``ts``, ``open``... ``volume`` and ``prev_ts``: the ``ts`` of the row
    before in ``ts``, file, row order (a repeated ``ts`` is a duplicate after its first row)."""
    low, high = f"least({', '.join(_PRICES)})", f"greatest({', '.join(_PRICES)})"
    future = "false" if now_ms is None else f"ts > {now_ms + timeframe_ms + CLOCK_TOLERANCE_MS}"
    checks = [
        ("missing", " OR ".join(f"{c} IS NULL" for c in ("ts", *_VALUES))),
        ("non_finite", " OR ".join(f"NOT isfinite({c})" for c in _VALUES)),
        ("non_positive", f"{low} <= 0"),
        ("absurd_magnitude", f"{high} > {MAX_PRICE!r} OR {low} < {MIN_PRICE!r} OR volume > {MAX_VOLUME!r}"),
        ("negative_volume", "volume < 0"),
        ("high_lt_low", "high < low"),
        ("high_below_body", "high < greatest(open, close)"),
        ("low_above_body", "low > least(open, close)"),
        ("before_2009", f"ts < {MIN_TS_MS}"),
        ("in_future", future),
        ("off_grid", f"(ts - {grid_offset_ms(timeframe_ms)}) % {timeframe_ms} <> 0"),
        ("duplicate", "ts = prev_ts"),
    ]
    return "CASE " + " ".join(f"WHEN {cond} THEN '{rule}'" for rule, cond in checks) + " END"


@dataclass(frozen=True, kw_only=True, slots=True)
class Unreadable:
    """A stored file the views leave out (``strict=False``), and why."""

    key: SeriesKey
    path: Path
    reason: str


class LakeSQL:
    """Read-only SQL over the lake's series (see the module docstring for the views).

    Parameters
    ----------
    lake:
        The candle lake to read.
    keys:
        Only these series (default: every series ``lake.list_series()`` finds).
    now_ms:
        The clock reading for the ``in_future`` rule (status passes ``lake.clock()``);
        ``None``, the default, reads as ``CandleLake.read`` does.
    strict:
        ``True`` (default): a damaged stored file is a :class:`DataError` naming it, as for
        ``CandleLake.read``. ``False``: it is left out and listed in ``unreadable``.

    Construction reads nothing; ``open()`` (or ``with``, or the first query) builds the
    views, reading each file's Parquet footer.
    """

    def __init__(
        self,
        lake: CandleLake,
        *,
        keys: Iterable[SeriesKey] | None = None,
        now_ms: int | None = None,
        strict: bool = True,
    ) -> None:
        self.lake = lake
        self._keys = None if keys is None else list(dict.fromkeys(keys))
        self.now_ms = now_ms
        self.strict = strict
        self._con: duckdb.DuckDBPyConnection | None = None
        self._views: dict[str, SeriesKey] = {}
        self._unreadable: list[Unreadable] = []

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> LakeSQL:
        """Build the views (once); returns ``self``."""
        if self._con is not None:
            return self
        keys = self.lake.list_series() if self._keys is None else self._keys
        root = str(self.lake.root.absolute()).rstrip("/") + "/"
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"SET allowed_directories = [{_quote(root)}]")  # no parameters: they import pandas
            con.execute("SET enable_external_access = false")
            con.execute(f"CREATE SCHEMA {_INTERNAL}")
            views: dict[str, SeriesKey] = {}
            for key in keys:
                name = view_name(key)
                if name in views:
                    raise ConfigError(f"series {key.label} and {views[name].label} map to one view name {name!r}")
                self._create_series_views(con, key, name)
                views[name] = key
            con.execute(f"CREATE VIEW {UNION_VIEW} AS " + _union_sql(views, internal=False))
            con.execute(f"CREATE VIEW {_INTERNAL}.{UNION_VIEW} AS " + _union_sql(views, internal=True))
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        self._con, self._views = con, views
        return self

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> LakeSQL:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def views(self) -> dict[str, SeriesKey]:
        """View name -> series, for every series view (``candles`` not included)."""
        self.open()
        return dict(self._views)

    @property
    def unreadable(self) -> list[Unreadable]:
        """Stored files left out because they cannot be read (only with ``strict=False``)."""
        self.open()
        return list(self._unreadable)

    # -- queries ---------------------------------------------------------------------------
    def query(self, sql: str, *, params: Sequence[Any] | None = None, limit: int | None = None) -> pl.DataFrame:
        """Run one read-only statement; the result as a polars DataFrame (at most ``limit``
        rows when given: DuckDB stops there).

        Raises
        ------
        ConfigError
            The statement is not one read-only SELECT-kind statement, or DuckDB refuses it
            (syntax, unknown view or column): the message quotes DuckDB and lists the views.
        DataError
            A file changed or vanished under the views while the query ran.
        """
        check_read_only(sql, hint=self.describe_views())
        con = self._con
        assert con is not None
        try:
            if limit is None:
                return (con.execute(sql, params) if params else con.execute(sql)).pl()
            return con.sql(sql, params=params or None).limit(limit).pl()
        except duckdb.IOException as exc:
            raise DataError(
                f"reading the lake failed: {_first_line(exc)}; a file changed during the "
                "query: run it again (`tradeloop data status` names damaged files)"
            ) from None
        except duckdb.PermissionException as exc:
            raise ConfigError(
                f"the query failed: {_first_line(exc)}; queries read the lake through its views "
                f"only, no other files; {self.describe_views()}"
            ) from None
        except duckdb.Error as exc:  # syntax, unknown view or column, types, ...
            raise ConfigError(f"the query failed: {_first_line(exc)}; {self.describe_views()}") from None

    def describe_views(self, *, limit: int = 12) -> str:
        """One line for error messages: the union view, its columns and the series views."""
        names = sorted(self.views)
        shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
        return (
            f"views: {UNION_VIEW} ({', '.join(UNION_COLUMNS)}) and one per series with ts, open, high, "
            f"low, close, volume: {shown or 'none (the lake is empty)'}; "
            f"e.g. SELECT symbol, count(*) FROM {UNION_VIEW} GROUP BY symbol"
        )

    def status(self) -> dict[SeriesKey, SeriesStatus]:
        """Coverage of every series, as ``CandleLake.status`` reports it (rows, first/last
        ``ts``, gaps, rows left out per rule, unreadable files): the rows are checked once,
        into a temporary table, which three SQL queries then summarise."""
        con = self.open()._con
        assert con is not None
        if not self._views:
            return {}
        con.execute(
            f"CREATE TEMP TABLE status_rows AS SELECT exchange, symbol, timeframe, timeframe_ms, ts, file, "
            f"row, rule FROM {_INTERNAL}.{UNION_VIEW}"
        )
        try:
            spans = con.execute(
                "SELECT exchange, symbol, timeframe, count(*), min(ts), max(ts) FROM status_rows "
                "WHERE rule IS NULL GROUP BY ALL"
            ).fetchall()
            gap_rows = con.execute(
                "SELECT exchange, symbol, timeframe, prev + timeframe_ms, ts - timeframe_ms, "
                "(ts - prev) // timeframe_ms - 1 FROM (SELECT *, lag(ts) OVER (PARTITION BY exchange, symbol, "
                "timeframe ORDER BY ts) AS prev FROM status_rows WHERE rule IS NULL) WHERE ts - prev > timeframe_ms "
                "ORDER BY ALL"
            ).fetchall()
            rejected = con.execute(
                "SELECT exchange, symbol, timeframe, rule FROM status_rows WHERE rule IS NOT NULL "
                "ORDER BY exchange, symbol, timeframe, file, row"
            ).fetchall()
        finally:
            con.execute("DROP TABLE status_rows")
        figures = {tuple(row[:3]): row[3:] for row in spans}
        gaps: dict[tuple, list[Gap]] = {}
        for *series, start, end, missing in gap_rows:
            gaps.setdefault(tuple(series), []).append(Gap(start=start, end=end, missing=missing))
        invalid: dict[tuple, dict[str, int]] = {}
        for *series, rule in rejected:  # counted in file, row order, as CandleLake.status does
            counts = invalid.setdefault(tuple(series), {})
            counts[rule] = counts.get(rule, 0) + 1
        out: dict[SeriesKey, SeriesStatus] = {}
        for key in self._views.values():
            ident = (key.exchange, key.symbol, key.timeframe)
            rows, first, last = figures.get(ident, (0, None, None))
            out[key] = SeriesStatus(
                key=key,
                rows=rows,
                first_ts=first,
                last_ts=last,
                gaps=gaps.get(ident, []),
                invalid=invalid.get(ident, {}),
                unreadable=[(u.path, u.reason) for u in self._unreadable if u.key == key],
            )
        return out

    def rejected(self) -> pl.DataFrame:
        """Stored rows the views leave out: exchange, symbol, timeframe, file, row, ts, rule."""
        con = self.open()._con
        assert con is not None
        return con.execute(
            f"SELECT exchange, symbol, timeframe, {', '.join(REJECTED_COLUMNS)} FROM {_INTERNAL}.{UNION_VIEW} "
            "WHERE rule IS NOT NULL ORDER BY exchange, symbol, timeframe, file, row"
        ).pl()

    # -- building --------------------------------------------------------------------------
    def _create_series_views(self, con: duckdb.DuckDBPyConnection, key: SeriesKey, name: str) -> None:
        plain: list[Path] = []
        parts: list[str] = []
        files = self.lake.files(key)
        kinds = _file_kinds(con, files)
        for path in files:
            if kinds[path] == "plain":
                plain.append(path)
                continue
            try:  # another schema, or damaged: the lake's reader casts it or says what is wrong
                frame = read_stored_file(path)
            except DataError as exc:
                if self.strict:
                    raise
                self._unreadable.append(Unreadable(key=key, path=path, reason=str(exc)))
                continue
            table = f"{_INTERNAL}.{name}__{len(parts)}"
            con.register(
                f"_cast_{name}_{len(parts)}",
                frame.with_columns(file=pl.lit(path.name), row=pl.int_range(pl.len(), dtype=pl.Int64)),
            )
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM _cast_{name}_{len(parts)}")
            con.unregister(f"_cast_{name}_{len(parts)}")
            parts.append(f"SELECT {', '.join(CANDLE_COLUMNS)}, file, row FROM {table}")
        if plain:
            listed = ", ".join(_quote(str(p.absolute())) for p in plain)
            parts.append(
                f"SELECT {', '.join(CANDLE_COLUMNS)}, parse_filename(filename) AS file, "
                f"CAST(file_row_number AS BIGINT) AS row FROM read_parquet([{listed}], "
                "filename = true, file_row_number = true, union_by_name = true)"
            )
        if not parts:
            parts.append(
                f"SELECT {', '.join(f'NULL::{_sql_type(c)} AS {c}' for c in CANDLE_COLUMNS)}, "
                "NULL::VARCHAR AS file, NULL::BIGINT AS row WHERE false"
            )
        rows = " UNION ALL ".join(parts)
        con.execute(
            f"CREATE VIEW {_INTERNAL}.{name} AS SELECT *, {rule_sql(timeframe_ms=key.timeframe_ms, now_ms=self.now_ms)}"
            f" AS rule FROM (SELECT *, lag(ts) OVER (ORDER BY ts, file, row) AS prev_ts FROM ({rows}))"
        )
        con.execute(
            f"CREATE VIEW {name} AS SELECT {', '.join(CANDLE_COLUMNS)} FROM {_INTERNAL}.{name} "
            "WHERE rule IS NULL ORDER BY ts"
        )


def check_read_only(sql: str, *, hint: str = "") -> None:
    """Refuse anything but one SELECT-kind statement (see the module docstring); ``hint``
    ends the message of a statement that does not parse (the views, say)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ConfigError(f"the query does not parse: {_first_line(exc)}" + (f"; {hint}" if hint else "")) from None
    if len(statements) != 1:
        raise ConfigError(f"the query holds {len(statements)} statements, not one; {_READ_ONLY_HELP}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ConfigError(f"the query is a {kind.name} statement, which is refused; {_READ_ONLY_HELP}")


def _file_kinds(con: duckdb.DuckDBPyConnection, files: list[Path]) -> dict[Path, str]:
    """Each file: ``plain`` when DuckDB can read it as the lake writes it, else ``other``.
    One footer query for all the files; file by file only when one of them is damaged."""
    if not files:
        return {}
    listed = ", ".join(_quote(str(p.absolute())) for p in files)
    try:
        rows = con.execute(f"SELECT file_name, name, type, logical_type FROM parquet_schema([{listed}])").fetchall()
    except duckdb.Error:
        if len(files) == 1:
            return {files[0]: "other"}
        return {path: kind for p in files for path, kind in _file_kinds(con, [p]).items()}
    found: dict[str, dict[str, tuple]] = {}
    for file_name, name, kind, logical in rows:
        found.setdefault(file_name, {})[name] = (kind, logical)
    return {
        p: "plain"
        if all(found.get(str(p.absolute()), {}).get(c) == (t, None) for c, t in _PLAIN_TYPES.items())
        else "other"
        for p in files
    }


def _union_sql(views: dict[str, SeriesKey], *, internal: bool) -> str:
    """``candles`` (good rows only) or ``lake_rows.candles`` (every row, its file, row, rule
    and the series' ``timeframe_ms``); both read the checked rows, so no series is sorted."""
    if not views:
        cols = ", ".join(f"NULL::{_sql_type(c)} AS {c}" for c in UNION_COLUMNS)
        if internal:
            cols += ", NULL::VARCHAR AS file, NULL::BIGINT AS row, NULL::VARCHAR AS rule, NULL::BIGINT AS timeframe_ms"
        return f"SELECT {cols} WHERE false"
    return " UNION ALL ".join(
        f"SELECT {_quote(k.exchange)} AS exchange, {_quote(k.symbol)} AS symbol, {_quote(k.timeframe)} AS "
        f"timeframe, {', '.join(CANDLE_COLUMNS)}"
        + (f", file, row, rule, {k.timeframe_ms}::BIGINT AS timeframe_ms" if internal else "")
        + f" FROM {_INTERNAL}.{name}"
        + ("" if internal else " WHERE rule IS NULL")
        for name, k in views.items()
    )


def _sql_type(column: str) -> str:
    return "BIGINT" if column == "ts" else "DOUBLE" if column in _VALUES else "VARCHAR"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    """DuckDB's message without the ``LINE 1: ...`` echo of the query and its caret."""
    lines = []
    for line in (raw.strip() for raw in str(exc).splitlines()):
        if line.startswith("LINE "):
            break
        if line:
            lines.append(line)
    return " ".join(lines) or type(exc).__name__
