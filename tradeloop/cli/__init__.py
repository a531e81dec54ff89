"""The ``tradeloop`` command-line tool."""
