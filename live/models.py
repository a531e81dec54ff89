"""The model in force: the registry's champion, swapped without a restart.

``ModelSlot.refresh`` runs between bars, so a decision in flight always finishes on the
model it started with. When the champion is missing, fails to load (tampered, corrupt) or
is stale, the slot falls back to the static break-even threshold p* and **reduce-only**:
exits still pass, no new position is opened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tradeloop.errors import ModelError
from tradeloop.registry import ModelRegistry
from tradeloop.strategies import Strategy
from tradeloop.thresholds import ThresholdModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InForce:
    """What decides entries now. ``model`` is None in the reduce-only fallback."""

    strategy: Strategy
    model: ThresholdModel | None
    artifact: str | None
    threshold: float
    reason: str

    @property
    def source(self) -> str:
        return "model" if self.model is not None else "static"


class ModelSlot:
    def __init__(self, registry: ModelRegistry, *, strategy: Strategy):
        self.registry = registry
        self.name = strategy.name
        self._loaded: tuple[str, ThresholdModel] | None = None
        self._failed: str | None = None  # artifact that failed to load: not retried every bar
        self.current = InForce(strategy, None, None, float("nan"), "no champion loaded yet")

    def refresh(self, now_ms: int) -> bool:
        """Pick up a promotion or rollback; True when what decides entries changed."""
        try:
            entry = self.registry.champion(self.name)
        except ModelError as exc:
            return self._set(self._fallback(f"registry unreadable: {exc}"))
        if entry is None:
            return self._set(self._fallback("no champion in the registry"))
        if self._loaded is None or self._loaded[0] != entry.artifact:
            if self._failed == entry.artifact:
                return False
            try:
                _, model = self.registry.load(self.name)
            except (ModelError, OSError, ValueError) as exc:
                self._failed = entry.artifact
                log.error("champion %s failed to load: %s; reduce-only", entry.artifact[:12], exc)
                return self._set(self._fallback(f"champion {entry.artifact[:12]} failed to load: {exc}"))
            self._loaded, self._failed = (entry.artifact, model), None
        artifact, model = self._loaded
        if model.is_stale(now_ms):
            return self._set(InForce(model.strategy, None, artifact, model.estimator.p_star_,
                                     f"champion {artifact[:12]} is stale (trained until {model.trained_until})"))
        return self._set(InForce(model.strategy, model, artifact, model.bar(now_ms), f"champion {artifact[:12]}"))

    def _fallback(self, reason: str) -> InForce:
        p_star = self._loaded[1].estimator.p_star_ if self._loaded else float("nan")
        return InForce(self.current.strategy, None, None, p_star, reason)

    def _set(self, new: InForce) -> bool:
        changed = (new.source, new.artifact, new.reason) != (self.current.source, self.current.artifact,
                                                             self.current.reason)
        self.current = new
        return changed
