"""A drift report: per-feature rows, calibration and hit rate on closed outcomes, a verdict.

Rules:

- A feature is judged only when both windows hold at least ``min_feature_rows`` finite
  values; otherwise its row says so and it cannot drift. It drifts when PSI > ``psi_bar``
  and the KS p-value < ``ks_p_bar`` (``DriftConfig``).
- Calibration and hit rate are judged only with at least ``min_closed`` closed live
  outcomes. Calibration drifts when the live Brier score exceeds the training window's by
  more than ``brier_worsening``; the hit rate drifts when its two-sided p-value is below
  ``hit_rate_p_bar`` (hits above expectation count too: the model is miscalibrated either way).
- The report is drifted when any of the three is; ``reasons`` says which and by how much.
- ``as_dict``/``from_dict`` are the JSON form the pipeline writes and the metrics read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tradeloop.drift.config import DriftConfig
from tradeloop.drift.stats import HitRate, ReliabilityBin, brier, hit_rate_test, ks_test, psi, reliability


@dataclass(frozen=True, kw_only=True, slots=True)
class FeatureDrift:
    feature: str
    reference_rows: int
    live_rows: int
    psi: float | None  # None: too few rows to judge
    ks_statistic: float | None
    ks_pvalue: float | None
    drifted: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class CalibrationDrift:
    closed: int  # closed live outcomes
    reference_closed: int  # closed outcomes of the training window
    brier: float | None
    reference_brier: float | None
    ece: float | None
    reliability: tuple[ReliabilityBin, ...]
    hit_rate: HitRate
    calibration_drifted: bool
    hit_rate_drifted: bool
    # whose outcomes: "sessions" (the champion's closed trades in the trading sessions) or
    # "simulated" (the strategy's entries after training, labelled by the triple barrier)
    source: str = "simulated"

    @property
    def worsening(self) -> float | None:
        return None if self.brier is None or self.reference_brier is None else self.brier - self.reference_brier


# CalibrationDrift's plain fields, as its JSON holds them
_CALIBRATION_SCALARS = (
    "closed", "reference_closed", "brier", "reference_brier", "ece", "calibration_drifted", "hit_rate_drifted",
)  # fmt: skip
_CALIBRATION_OPTIONAL = {"source": "simulated"}  # fields a report written before them lacks


@dataclass(frozen=True, kw_only=True, slots=True)
class DriftReport:
    strategy: str
    artifact: str
    trained_from: int  # ms: the training window the model saw
    trained_until: int
    live_from: int | None  # ms: the first and last live bar judged (None: no live bar yet)
    live_until: int | None
    features: tuple[FeatureDrift, ...]
    calibration: CalibrationDrift
    config: DriftConfig
    drifted: bool
    reasons: tuple[str, ...]

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(f.feature for f in self.features if f.drifted)

    def as_dict(self) -> dict[str, Any]:
        doc = {k: getattr(self, k) for k in ("strategy", "artifact", "trained_from", "trained_until", "live_from",
                                              "live_until", "drifted", "reasons")}  # fmt: skip
        doc["features"] = [asdict(f) for f in self.features]
        cal = self.calibration
        doc["calibration"] = {
            **{k: getattr(cal, k) for k in (*_CALIBRATION_SCALARS, *_CALIBRATION_OPTIONAL)},
            "worsening": cal.worsening,
            "reliability": [asdict(b) for b in cal.reliability],
            "hit_rate": asdict(cal.hit_rate),
        }
        doc["config"] = self.config.model_dump(mode="json")
        doc["reasons"] = list(self.reasons)
        return _json_safe(doc)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DriftReport:
        cal = doc["calibration"]
        calibration = CalibrationDrift(
            **{k: cal[k] for k in _CALIBRATION_SCALARS},
            **{k: cal.get(k, default) for k, default in _CALIBRATION_OPTIONAL.items()},
            reliability=tuple(ReliabilityBin(**b) for b in cal["reliability"]),
            hit_rate=_hit_rate(cal["hit_rate"]),
        )
        return cls(
            **{
                k: doc[k]
                for k in ("strategy", "artifact", "trained_from", "trained_until", "live_from", "live_until", "drifted")
            },  # fmt: skip
            features=tuple(FeatureDrift(**f) for f in doc["features"]),
            calibration=calibration,
            config=DriftConfig.parse(doc["config"]),
            reasons=tuple(doc["reasons"]),
        )


def _hit_rate(doc: dict[str, Any]) -> HitRate:
    """A ``HitRate`` from JSON, where NaN was written as null."""
    nan = math.nan
    return HitRate(
        n=int(doc["n"]),
        expected=nan if doc["expected"] is None else float(doc["expected"]),
        realised=nan if doc["realised"] is None else float(doc["realised"]),
        z=float(doc["z"]) if doc["z"] is not None else nan,
        pvalue=float(doc["pvalue"]) if doc["pvalue"] is not None else nan,
    )


def _json_safe(value: Any) -> Any:
    """NaN and infinities as None (JSON has neither), recursively."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def feature_drift(name: str, reference: np.ndarray, live: np.ndarray, *, config: DriftConfig) -> FeatureDrift:
    """One feature's row: PSI and KS when both windows are large enough (module rules)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if min(ref.size, cur.size) < config.min_feature_rows:
        return FeatureDrift(feature=name, reference_rows=ref.size, live_rows=cur.size, psi=None, ks_statistic=None,
                            ks_pvalue=None, drifted=False)  # fmt: skip
    index = psi(ref, cur, bins=config.bins, epsilon=config.epsilon)
    statistic, pvalue = ks_test(ref, cur)
    return FeatureDrift(feature=name, reference_rows=ref.size, live_rows=cur.size, psi=index, ks_statistic=statistic,
                        ks_pvalue=pvalue, drifted=index > config.psi_bar and pvalue < config.ks_p_bar)  # fmt: skip


def calibration_drift(
    proba: np.ndarray,
    label: np.ndarray,
    *,
    reference_proba: np.ndarray,
    reference_label: np.ndarray,
    config: DriftConfig,
    source: str = "simulated",
) -> CalibrationDrift:
    """Brier, reliability and hit rate of the live outcomes against the training window's;
    ``source`` says whose outcomes they are (``CalibrationDrift.source``)."""
    p = np.asarray(proba, dtype=np.float64)
    n = int(p.size)
    enough = n >= config.min_closed
    ref_brier = brier(reference_proba, reference_label) if len(reference_proba) else None
    live_brier = brier(p, label) if n else None
    bins, ece = reliability(p, label, bins=config.reliability_bins)
    hits = hit_rate_test(p, label)
    worse = live_brier is not None and ref_brier is not None and live_brier - ref_brier > config.brier_worsening
    return CalibrationDrift(
        closed=n,
        reference_closed=len(reference_proba),
        brier=live_brier,
        reference_brier=ref_brier,
        ece=ece if n else None,
        reliability=bins,
        hit_rate=hits,
        calibration_drifted=enough and worse,
        hit_rate_drifted=enough and hits.pvalue < config.hit_rate_p_bar,
        source=source,
    )


def verdict(
    features: tuple[FeatureDrift, ...], calibration: CalibrationDrift, *, config: DriftConfig
) -> tuple[bool, tuple[str, ...]]:
    """Whether the report is drifted, and why (one line per reason; none when not)."""
    reasons = []
    moved = [f for f in features if f.drifted]
    if len(moved) >= config.min_drifted_features:
        shown = ", ".join(f"{f.feature} PSI {f.psi:.3f} (KS p {f.ks_pvalue:.2g})" for f in moved)
        reasons.append(f"{len(moved)} feature(s) drifted beyond PSI {config.psi_bar:g}: {shown}")
    cal = calibration
    if cal.calibration_drifted:
        reasons.append(
            f"Brier score {cal.brier:.4f} on {cal.closed} closed outcomes vs {cal.reference_brier:.4f} in training "
            f"(worse by more than {config.brier_worsening:g})"
        )
    if cal.hit_rate_drifted:
        h = cal.hit_rate
        reasons.append(
            f"hit rate {h.realised:.3f} vs {h.expected:.3f} expected on {h.n} closed outcomes "
            f"(z {h.z:.2f}, p {h.pvalue:.2g} < {config.hit_rate_p_bar:g})"
        )
    return bool(reasons), tuple(reasons)
