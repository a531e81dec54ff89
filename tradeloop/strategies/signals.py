"""Signal codes shared by strategies, the backtest kernel and the live engine.

A signal is an int8 bit set per symbol and bar, decided at the bar's close and acted on at
the next bar's open: several flags may be set on one bar (exit long + enter short is a
reversal; exits are always processed before entries).
"""

from __future__ import annotations

ENTER_LONG = 1
ENTER_SHORT = 2
EXIT_LONG = 4
EXIT_SHORT = 8
NONE = 0

ENTRIES = ENTER_LONG | ENTER_SHORT  # mask of the entry flags
