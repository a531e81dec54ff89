"""tradeloop: the shared domain package (data lake, features, strategies, backtest, metrics).

It never imports dagster, streamlit or fastapi: notebooks, pipelines, the live engine and the
app import it.
"""

__version__ = "0.1.0"
