"""In-sample guard: a new session must not trade bars its champion was trained on.

The rules live in ``tradeloop.ops.in_sample`` (the API creates sessions too); this module
keeps the names the engine's code imports.
"""

from __future__ import annotations

from tradeloop.ops.in_sample import first_bar, in_sample_detail

__all__ = ["first_bar", "in_sample_detail"]
