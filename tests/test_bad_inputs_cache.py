"""Corrupt cache entries are never trusted: checked on load, reported, re-analysed."""

from __future__ import annotations

import numpy as np
import pytest

from wms.analysis.audio import write_audio
from wms.analysis.basic_waves import basic_waves
from wms.analysis.cache import FeatureCache
from wms.analysis.features import Analysis
from wms.analysis.prepare import prepare
from wms.config import Config


def _entry(cache_root):
    (entry,) = (cache_root / "entries").iterdir()
    return entry


@pytest.fixture
def prepared(tmp_path):
    wav = write_audio(tmp_path / "w.wav", basic_waves(3.0, sample_rate=16000, seed=0), 16000)
    cache = tmp_path / "cache"
    first = prepare(wav, Config(), cache_dir=cache, jobs=1, progress=False)
    return wav, cache, np.array(first.files[0].analysis.target)


def _corrupt_target(entry, change):
    path = entry / "target.npy"
    a = np.load(path)
    change(a)
    np.save(path, a)


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda a: a.__setitem__((3, 5), np.nan), "target.npy fails its checksum"),
        (lambda a: a.__setitem__((0, 0), a[0, 0] + 1.0), "target.npy fails its checksum"),
    ],
)
def test_a_damaged_entry_is_reported_and_re_analysed(prepared, change, problem):
    wav, cache, target = prepared
    _corrupt_target(_entry(cache), change)
    again = prepare(wav, Config(), cache_dir=cache, jobs=1, progress=False)
    assert again.summary["files_analysed"] == 1  # not trusted: analysed again
    assert any(problem in n and "re-analysing" in n for n in again.summary["notes"])
    np.testing.assert_array_equal(np.asarray(again.files[0].analysis.target), target)


def test_nan_entries_are_refused_even_with_a_matching_checksum(tmp_path):
    """A checksum proves the bytes are what was written; NaN is refused regardless."""
    c = FeatureCache(tmp_path)
    n = 10
    good = Analysis(
        np.ones(n, "f4"), np.ones(n, "f4"), np.zeros((n, 8), "f4"), np.zeros((n, 80), "f4")
    )
    c.store("k", good, {"source": "x.wav"})
    bad = good.target.copy()
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="analysis.target holds NaN or infinite values"):
        c.store("k2", Analysis(good.f0, good.voicedness, good.mfcc, bad), {})
    entry = tmp_path / "entries" / "k"
    np.save(entry / "target.npy", bad)
    import json

    meta = json.loads((entry / "meta.json").read_text())
    from wms.analysis.cache import _sha256

    meta["sha256"]["target"] = _sha256(bad)  # forge a matching checksum
    (entry / "meta.json").write_text(json.dumps(meta))
    assert c.load("k", n_mfcc=8, n_bins=80) is None
    assert "target.npy holds NaN or infinite values" in c.notes[-1]
