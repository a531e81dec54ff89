"""How the research assets read in the Dagster UI: markdown tables in the units people read
(percentages, dates, Sharpe to two or four decimals; ``tradeloop.performance.format``), the
equity curve as an image, and links to the executed notebooks.

Numbers Dagster should also plot across runs stay plain floats, rounded to what they mean
(``rounded``): a 16-digit float is noise in a table.

A notebook link is two entries: ``notebook`` (Dagster's own rendering of the executed
.ipynb) and ``notebook_in_lab``, the address that opens it in JupyterLab (``make lab``,
``TRADELOOP_LAB_URL``), present when the run folder lies inside Lab's root.
"""

import base64
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import dagster as dg
import polars as pl
from tabulate import tabulate

from tradeloop.performance.format import count, days, money, pct, ratio
from tradeloop.performance.series import drawdown_frame, equity_frame
from tradeloop.research.notebooks import LAB_ROOT, lab_link
from tradeloop.settings import get_settings

#: the backtest metrics (``PerformanceReport`` fields and the out-of-sample ones) as people read them
METRIC_ROWS = (
    ("total_return", "total return", pct),
    ("cagr", "CAGR", pct),
    ("volatility", "volatility (annualised)", pct),
    ("sharpe", "Sharpe (annualised)", ratio),
    ("sharpe_per_bar", "Sharpe per bar", lambda v: ratio(v, 4)),
    ("sortino", "Sortino", ratio),
    ("calmar", "Calmar", ratio),
    ("max_drawdown", "max drawdown", pct),
    ("max_drawdown_days", "longest drawdown", days),
    ("trades", "trades", count),
    ("win_rate", "win rate", pct),
    ("profit_factor", "profit factor", ratio),
    ("expectancy", "expectancy per trade", money),
    ("avg_trade_return", "average trade return", pct),
    ("exposure", "exposure", pct),
    ("final_equity", "final equity", money),
    ("bars", "bars", count),
)


def rounded(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` decimals (NaN and infinities kept): what a float in metadata shows."""
    return value if not math.isfinite(value) else round(float(value), digits)


def table(rows: Iterable[Iterable[object]], headers: Iterable[str], *, numbers: bool = False) -> dg.MetadataValue:
    """A markdown table (pipe tables, which Dagster renders) of values shown as given, floats
    to four significant digits; with ``numbers`` every column after the first is right-aligned."""
    headers = list(headers)
    align = ("left", *(("right" if numbers else "left") for _ in headers[1:]))
    cells = [[f"{v:.4g}" if isinstance(v, float) else v for v in row] for row in rows]
    return dg.MetadataValue.md(tabulate(cells, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align))


def metrics_table(columns: Mapping[str, Mapping[str, float]]) -> dg.MetadataValue:
    """The known metrics of each column (e.g. in-sample history, out-of-sample) side by side;
    a metric no column has is left out, one a column lacks shows ``-``."""
    rows = [
        [label, *(fmt(col[key]) if key in col else "-" for col in columns.values())]
        for key, label, fmt in METRIC_ROWS
        if any(key in col for col in columns.values())
    ]
    return table(rows, ["metric", *columns], numbers=True)


def key_values(values: Mapping[str, object]) -> dg.MetadataValue:
    """A two-column markdown table of already formatted values."""
    return table(([k, v] for k, v in values.items()), ["", "value"])


def notebook_links(output: Path) -> dict[str, dg.MetadataValue]:
    """Dagster's view of the executed notebook, and its address in JupyterLab when Lab can show it."""
    links = {"notebook": dg.MetadataValue.notebook(str(output))}
    url = lab_link(output, lab_url=get_settings().lab_url, lab_root=LAB_ROOT)
    if url is not None:
        links["notebook_in_lab"] = dg.MetadataValue.url(url)
    return links


def equity_image(equity: pl.DataFrame, *, title: str) -> dg.MetadataValue:
    """The equity curve (summed over portfolios) with its drawdown below, as a PNG inside markdown."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend in a Dagster process
    from matplotlib.ticker import StrMethodFormatter

    curve = equity_frame(equity)
    time, values = curve["time"].to_numpy(), curve["equity"].to_numpy()
    drawdown = drawdown_frame(equity)["drawdown"].to_numpy()
    fig = Figure(figsize=(9, 4.2), dpi=90, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.2))
    top.plot(time, values, lw=1.0, color="tab:blue")
    top.set_title(title, fontsize=10)
    top.set_ylabel("equity")
    bottom.fill_between(time, drawdown * 100, 0, color="tab:red", alpha=0.5, lw=0)
    bottom.set_ylabel("drawdown %")
    top.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def timestamp(ms: int | None) -> dg.MetadataValue | str:
    """An epoch-ms time as a Dagster timestamp (shown as a date), or ``-`` when there is none."""
    return dg.MetadataValue.timestamp(ms / 1000) if ms is not None else "-"
