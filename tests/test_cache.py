"""cache.py: keys, atomic writes, memory-mapped loads, corrupt entries."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from wms.analysis import cache as cache_mod
from wms.analysis.cache import FeatureCache, default_cache_dir, file_sha256, settings_hash
from wms.analysis.features import Analysis
from wms.config import Config

N_MFCC, N_BINS = 8, 80


def _analysis(n: int = 12, seed: int = 0) -> Analysis:
    rng = np.random.default_rng(seed)
    return Analysis(
        f0=rng.uniform(100, 200, n).astype(np.float32),
        voicedness=rng.uniform(0, 1, n).astype(np.float32),
        mfcc=rng.normal(size=(n, N_MFCC)).astype(np.float32),
        target=rng.uniform(0, 3, (n, N_BINS)).astype(np.float32),
    )


def _load(c: FeatureCache, key: str):
    return c.load(key, n_mfcc=N_MFCC, n_bins=N_BINS)


@pytest.mark.parametrize(
    ("section", "key", "value", "changes"),
    [
        ("audio", "sample_rate", 22050, True),
        ("pitch", "method", "yin", True),
        ("pitch", "fmin", 50.0, True),
        ("pitch", "voicing_threshold", 0.3, True),
        ("features", "hop_size", 128, True),
        ("features", "n_bins", 60, True),
        ("features", "unvoiced", "raw", True),
        ("features", "reduction", "pca", False),
        ("features", "include_voicedness", False, False),
        ("data", "seq_len", 20, False),
        ("audio", "silence_db", -40.0, False),
        ("train", "lr", 1e-3, False),
        ("model", "hidden_size", 64, False),
    ],
)
def test_settings_hash_tracks_only_analysis_settings(section, key, value, changes):
    base = Config()
    other = base.replace(**{section: {key: value}})
    assert (settings_hash(other) != settings_hash(base)) is changes


def test_settings_hash_of_the_noise_part():
    """Harmonics only, any harmonic_noise: the hash of the entries before the noise part;
    noise with "kept" (the first noise part's analysis): the hash of that part's entries (no
    key then); "removed" (the default) changes the targets, so its entries are its own."""
    from wms.analysis.cache import analysis_settings

    base = Config().replace(features={"noise_bands": 0})
    assert settings_hash(base.replace(features={"harmonic_noise": "kept"})) == settings_hash(base)
    noise = base.replace(features={"noise_bands": 8})
    kept = noise.replace(features={"harmonic_noise": "kept"})
    assert "harmonic_noise" not in analysis_settings(kept)["features"]
    assert analysis_settings(noise)["features"]["harmonic_noise"] == "removed"
    assert len({settings_hash(c) for c in (base, noise, kept)}) == 3


def test_settings_hash_includes_code_version(monkeypatch):
    before = settings_hash(Config())
    monkeypatch.setattr(cache_mod, "CODE_VERSION", cache_mod.CODE_VERSION + 1)
    assert settings_hash(Config()) != before


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WMS_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert FeatureCache().root == tmp_path / "c"
    monkeypatch.delenv("WMS_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "wms")


def test_content_hash_is_sha256_and_memoised(tmp_path, monkeypatch):
    f = tmp_path / "a.bin"
    f.write_bytes(os.urandom(3 * (1 << 20) + 5))  # several chunks
    c = FeatureCache(tmp_path / "cache")
    import hashlib

    assert c.content_hash(f) == hashlib.sha256(f.read_bytes()).hexdigest() == file_sha256(f)
    c.save_index()
    # A fresh cache object reads the memo: no re-hash while size and mtime are unchanged.
    calls = []
    monkeypatch.setattr(cache_mod, "file_sha256", lambda p: calls.append(p) or "x" * 64)
    c2 = FeatureCache(tmp_path / "cache")
    assert c2.content_hash(f) == file_sha256(f)
    assert calls == []
    # Changed bytes (new size/mtime) are hashed again.
    f.write_bytes(b"changed")
    assert c2.content_hash(f) == "x" * 64 and len(calls) == 1


def test_store_and_load_round_trip_memory_mapped(tmp_path):
    c = FeatureCache(tmp_path)
    a = _analysis()
    key = "k" * 32 + "-" + "s" * 16
    assert _load(c, key) is None
    c.store(key, a, {"source": "x.wav", "duration": 1.0})
    entry = _load(c, key)
    assert entry is not None and entry.rejected is None
    assert entry.meta["frames"] == 12 and entry.meta["source"] == "x.wav"
    for name in ("f0", "voicedness", "mfcc", "target"):
        got = getattr(entry.analysis, name)
        assert isinstance(got, np.memmap), name
        np.testing.assert_array_equal(got, getattr(a, name))
    # Nothing but the committed entry and an empty temp area remain.
    assert [p.name for p in (tmp_path / "entries").iterdir()] == [key]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_store_casts_to_float32(tmp_path):
    c = FeatureCache(tmp_path)
    a = _analysis()
    a64 = Analysis(a.f0.astype(np.float64), a.voicedness, a.mfcc.astype(np.float64), a.target)
    c.store("key", a64, {})
    assert _load(c, "key").analysis.mfcc.dtype == np.float32


def test_store_rejects_misaligned_arrays(tmp_path):
    c = FeatureCache(tmp_path)
    a = _analysis()
    bad = Analysis(a.f0, a.voicedness, a.mfcc[:-1], a.target)
    with pytest.raises(ValueError, match="mfcc has 11 frames, f0 has 12"):
        c.store("key", bad, {})
    assert _load(c, "key") is None
    assert not (tmp_path / "tmp").exists()  # checked before anything is written


def test_rejection_entry(tmp_path):
    c = FeatureCache(tmp_path)
    c.store_rejection("key", "no voiced frames", {"source": "n.wav"})
    entry = _load(c, "key")
    assert entry.rejected == "no voiced frames" and entry.analysis is None


def test_interrupted_write_is_never_trusted(tmp_path, monkeypatch):
    c = FeatureCache(tmp_path)
    real_save = np.save
    written = []

    def failing_save(path, arr, **kw):
        if len(written) == 2:
            raise KeyboardInterrupt("simulated stop after 2 arrays")  # the run stopped midway
        written.append(path)
        real_save(path, arr, **kw)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt, match="simulated stop after 2 arrays"):
        c.store("key", _analysis(), {})
    monkeypatch.setattr(np, "save", real_save)
    leftovers = list((tmp_path / "tmp").iterdir())
    assert len(leftovers) == 1 and len(list(leftovers[0].iterdir())) == 2
    # A later run does not see the half-written entry ...
    c2 = FeatureCache(tmp_path)
    assert _load(c2, "key") is None
    # ... keeps young temp folders (another run may be writing them) ...
    assert c2.clean_temp() == 0 and leftovers[0].exists()
    # ... and removes old ones.
    assert c2.clean_temp(max_age_seconds=0) == 1 and not leftovers[0].exists()
    c2.store("key", _analysis(), {})
    entry = _load(c2, "key")
    for name in ("f0", "voicedness", "mfcc", "target"):
        np.testing.assert_array_equal(getattr(entry.analysis, name), getattr(_analysis(), name))


@pytest.mark.parametrize(
    "damage", ["missing_array", "truncated", "wrong_shape", "bad_meta", "other_key"]
)
def test_corrupt_entry_is_a_miss_with_a_note(tmp_path, damage):
    c = FeatureCache(tmp_path)
    c.store("key", _analysis(), {"source": "voice.wav"})
    d = tmp_path / "entries" / "key"
    if damage == "missing_array":
        (d / "target.npy").unlink()
    elif damage == "truncated":
        raw = (d / "mfcc.npy").read_bytes()
        (d / "mfcc.npy").write_bytes(raw[: len(raw) // 2])
    elif damage == "wrong_shape":
        np.save(d / "target.npy", np.zeros((12, N_BINS - 1), np.float32))
    elif damage == "bad_meta":
        (d / "meta.json").write_text("{not json")
    elif damage == "other_key":
        meta = json.loads((d / "meta.json").read_text())
        (d / "meta.json").write_text(json.dumps({**meta, "key": "another"}))
    c2 = FeatureCache(tmp_path)
    assert _load(c2, "key") is None
    assert len(c2.notes) == 1 and "corrupt" in c2.notes[0] and str(d) in c2.notes[0]
    assert not d.exists()  # removed, so the re-analysis can be committed


def test_expected_widths_are_checked(tmp_path):
    c = FeatureCache(tmp_path)
    c.store("key", _analysis(), {})
    assert c.load("key", n_mfcc=N_MFCC + 1, n_bins=N_BINS) is None
    assert "mfcc.npy is float32[12, 8], expected float32[12, 9]" in c.notes[0]


def test_second_writer_of_a_key_keeps_the_first_entry(tmp_path):
    c = FeatureCache(tmp_path)
    first, second = _analysis(seed=1), _analysis(seed=2)
    c.store("key", first, {})
    c.store("key", second, {})  # e.g. two processes racing on the same file
    np.testing.assert_array_equal(_load(c, "key").analysis.f0, first.f0)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_cache_root_must_be_a_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    from wms.errors import DataError

    with pytest.raises(DataError, match="exists and is not a folder"):
        FeatureCache(f)
