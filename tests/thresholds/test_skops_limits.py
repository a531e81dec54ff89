"""A classifier file that passes the type allow-list must still be one that can predict, and
must not be a decompression bomb: both are refused at load with a ``ModelError``."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import polars as pl
import pytest

from live.models import ModelSlot
from tests.thresholds.hostile import coef_members, with_arrays
from tests.thresholds.test_safe_skops import saved
from tradeloop.errors import ModelError
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import META_FEATURES, AdaptiveThreshold, BarrierConfig, ThresholdModel

N = len(META_FEATURES)
MAX_FILE_BYTES, MAX_UNPACKED_BYTES, MAX_RATIO = 64 * 2**20, 256 * 2**20, 100  # safe_skops' bounds


def _rewrite(folder, arrays_of) -> None:
    path = folder / "classifier.skops"
    data = path.read_bytes()
    path.write_bytes(with_arrays(data, arrays_of(coef_members(data))))


CRAFTED = {
    "coef_ for 10 features": lambda members: {m: np.zeros((1, N + 3)) for m in members},
    "coef_ of one column": lambda members: {members[0]: np.zeros((1, 1))},
    "coef_ for two classes": lambda members: {m: np.zeros((2, N)) for m in members},
    "coef_ of NaN": lambda members: {members[-1]: np.full((1, N), np.nan)},
}


@pytest.mark.parametrize("craft", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_classifier_that_cannot_predict_is_refused_at_load(tmp_path, craft) -> None:
    _, folder = saved(tmp_path)
    _rewrite(folder, craft)
    with pytest.raises(ModelError, match=r"classifier.skops holds a classifier that cannot predict on 7 features"):
        ThresholdModel.load(folder)


def test_a_crafted_champion_never_reaches_the_decision_the_engine_goes_reduce_only(tmp_path) -> None:
    """The hostile reviewer's case: register, promote and the live slot all accepted it, then
    every bar raised ValueError. Now register refuses it; one written straight into the store
    (a hostile writer skips register) makes the slot reduce-only instead of a dead engine."""
    _, good = saved(tmp_path / "good")
    _, bad = saved(tmp_path / "bad")
    _rewrite(bad, CRAFTED["coef_ for 10 features"])
    registry = ModelRegistry(tmp_path / "registry")
    with pytest.raises(ModelError, match="refusing to register .*cannot predict on 7 features"):
        registry.register(bad)
    first = registry.register(good)
    registry.promote("sma_cross", first, lineage=Lineage())
    crafted = registry.store.put(bad)
    with pytest.raises(ModelError, match="cannot predict on 7 features"):
        registry.promote("sma_cross", crafted, lineage=Lineage())
    manifest = registry.champions_dir / "sma_cross.json"
    manifest.write_text(manifest.read_text().replace(first, crafted))
    slot = ModelSlot(registry, strategy=SmaCross())
    slot.refresh(2)
    assert slot.current.source == "static" and slot.current.model is None
    assert slot.current.reason.startswith(f"champion {crafted[:12]} failed to load: ")
    assert "cannot predict on 7 features" in slot.current.reason


def _bomb(classifier_file: bytes, member: str, *, n_floats: int) -> bytes:
    """``classifier_file`` whose ``member`` is ``n_floats`` zeros, deflated (streamed: the test
    never holds the expanded bytes)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (1, n_floats)})
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(classifier_file)) as src,
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        for name in src.namelist():
            if name != member:
                zf.writestr(name, src.read(name))
                continue
            with zf.open(name, "w", force_zip64=True) as fh:
                fh.write(header.getvalue())
                chunk = bytes(8 * 2**20)
                for start in range(0, n_floats * 8, len(chunk)):
                    fh.write(chunk[: min(len(chunk), n_floats * 8 - start)])
    return out.getvalue()


def test_a_decompression_bomb_is_refused_before_it_is_expanded(tmp_path) -> None:
    _, folder = saved(tmp_path)
    path = folder / "classifier.skops"
    data = path.read_bytes()
    path.write_bytes(_bomb(data, coef_members(data)[0], n_floats=300 * 2**20 // 8))  # 300 MiB of zeros
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(
        ModelError,
        match=r"classifier.skops unpacks to 31[0-9],[0-9]{3},[0-9]{3} bytes, more than "
        r"the 268,435,456-byte bound",
    ):
        ThresholdModel.load(folder)


def test_a_small_bomb_is_refused_by_its_ratio(tmp_path) -> None:
    _, folder = saved(tmp_path)
    path = folder / "classifier.skops"
    data = path.read_bytes()
    path.write_bytes(_bomb(data, coef_members(data)[0], n_floats=40 * 2**20 // 8))  # 40 MiB: under the bound
    with pytest.raises(
        ModelError,
        match=rf"classifier.skops unpacks to [0-9]+ times its size .* more than "
        rf"{MAX_RATIO} times",
    ):
        ThresholdModel.load(folder)


def test_an_oversized_file_is_refused_without_being_read(tmp_path) -> None:
    _, folder = saved(tmp_path)
    path = folder / "classifier.skops"
    with open(path, "r+b") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(
        ModelError,
        match=r"classifier.skops is 67,108,865 bytes, more than the 67,108,864-byte "
        r"bound",
    ):
        ThresholdModel.load(folder)


def test_the_bounds_are_far_above_a_real_classifier(tmp_path) -> None:
    """The largest classifier AdaptiveThreshold writes (isotonic, 10 splits, many rows) stays
    orders of magnitude under the bounds, and loads and predicts as before."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20_000, N))
    y = (X[:, 0] + rng.normal(size=20_000) > 0).astype(int)
    est = AdaptiveThreshold(calibration="isotonic", calibration_splits=10).fit(X, y, returns=np.where(y, 0.02, -0.01))
    folder = ThresholdModel(
        strategy=SmaCross(), barriers=BarrierConfig(), estimator=est, trained_until=1_700_000_000_000
    ).save(tmp_path)
    path = folder / "classifier.skops"
    with zipfile.ZipFile(path) as zf:
        unpacked = sum(i.file_size for i in zf.infolist())
    assert path.stat().st_size * 100 < MAX_FILE_BYTES and unpacked * 100 < MAX_UNPACKED_BYTES
    loaded = ThresholdModel.load(folder)
    rows = pl.DataFrame(X[:50], schema=list(META_FEATURES))
    np.testing.assert_allclose(loaded.probabilities(rows), est.predict_proba(X[:50])[:, 1], rtol=1e-12)
