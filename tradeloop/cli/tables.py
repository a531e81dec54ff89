"""Tables that fit the terminal: optional columns are left out, last first, until the table
fits the console's width; ``--wide`` prints every column at its natural width instead.

A table that hides columns says which in its caption, so nothing disappears silently.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Literal, cast

from rich.console import Console
from rich.table import Table

ColorSystemName = Literal["auto", "standard", "256", "truecolor", "windows"]  # rich.Console(color_system=...)

LEFT_ALIGNED = frozenset(
    {
        "strategy",
        "series",
        "rule",
        "file",
        "name",
        "session",
        "symbols",
        "service",
        "where",
        "portfolio",
        "metric",
        "status",
        "sample",
        "mode",
        "field",
        "symbol",
    }
)


class FitTable:
    """Rows of text cells under ``columns``; ``optional`` names the columns that may be left
    out at narrow widths, the least important last (they are dropped from the end)."""

    def __init__(self, title: str, columns: Sequence[str], *, optional: Sequence[str] = ()) -> None:
        unknown = [c for c in optional if c not in columns]
        if unknown:
            raise ValueError(f"optional column(s) {unknown} are not among the columns {list(columns)}")
        self.title = title
        self.columns = list(columns)
        self.optional = list(optional)
        self.rows: list[list[str]] = []

    def add_row(self, *cells: str) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {self.title!r} needs {len(self.columns)} cells, got {len(cells)}")
        self.rows.append([str(c) for c in cells])

    def build(self, shown: Sequence[str], *, caption: str | None = None) -> Table:
        """A rich table of the ``shown`` columns (in their original order)."""
        tbl = Table(
            title=self.title, header_style="bold", title_justify="left", caption=caption, caption_justify="left"
        )
        index = [self.columns.index(c) for c in self.columns if c in shown]
        for i in index:
            name = self.columns[i]
            text = name in LEFT_ALIGNED  # names wrap (folded, never cut to "…"); numbers and times stay whole
            tbl.add_column(
                name, justify="left" if text else "right", no_wrap=not text, overflow="fold" if text else "ellipsis"
            )
        for row in self.rows:
            tbl.add_row(*(row[i] for i in index))
        return tbl

    def fit(self, width: int) -> tuple[list[str], list[str]]:
        """(columns shown, columns hidden) so that the table's natural width fits ``width``."""
        shown = list(self.columns)
        hidden: list[str] = []
        probe = Console(width=10_000, file=io.StringIO())  # measures; prints nothing
        for name in reversed(self.optional):
            if probe.measure(self.build(shown)).maximum <= width:
                break
            shown.remove(name)
            hidden.insert(0, name)
        return shown, hidden

    def print(self, console: Console, *, wide: bool = False) -> None:
        """Print to ``console``: fitted to its width, or every column with ``wide``."""
        if wide:
            tbl = self.build(self.columns)
            natural = Console(width=10_000, file=io.StringIO()).measure(tbl).maximum
            Console(
                width=max(natural, console.width),
                file=console.file,
                force_terminal=console.is_terminal,
                # rich types the property as str; it returns one of the names the constructor takes
                color_system=cast(ColorSystemName, console.color_system),
            ).print(tbl)
            return
        shown, hidden = self.fit(console.width)
        caption = (
            f"{len(hidden)} column(s) not shown at this width ({', '.join(hidden)}): --wide shows them"
            if hidden
            else None
        )
        console.print(self.build(shown, caption=caption))
