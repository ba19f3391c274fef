"""The feature cache: one folder of memory-mapped arrays per analysed file.

An entry is keyed by the sha256 of the file's bytes and a hash of the settings
that change the analysis (:func:`settings_hash`), so re-running with nothing
changed does no analysis, adding a file analyses only that file, and changing a
setting re-analyses. Layout under the cache root::

    entries/<content sha256[:32]>-<settings hash[:16]>/
        f0.npy voicedness.npy mfcc.npy target.npy   float32, [n_frames] / [n_frames, ...]
        meta.json                                    source, duration, frames, settings ...
    tmp/<key>.<pid>.<random>/                        entries being written
    hashes.json                                      memo: path, size, mtime_ns -> sha256

An entry is written into ``tmp/`` and ``os.rename``'d into ``entries/`` in one
step, so an interrupted write leaves only a temp folder, which no lookup reads
and :meth:`FeatureCache.clean_temp` removes later. An entry that fails to load
(missing array, wrong shape or dtype, bad meta) is reported in
:attr:`FeatureCache.notes`, removed, and treated as a miss.

A file whose analysis found no voiced frame is stored as a *rejection* entry
(``meta.json`` with a ``rejected`` reason and no arrays): pitch tracking is the
expensive step, and its answer depends only on the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wms.errors import DataError
from wms.io import json_data, write_text

if TYPE_CHECKING:
    from wms.analysis.features import Analysis
    from wms.config import Config

#: Bump when pitch tracking or feature code changes its output: every entry
#: written by an older version then misses and is re-analysed.
CODE_VERSION = 3  # 2: sha256 checksums of the arrays; 3: the pitch range check in meta

#: Per-frame arrays of an entry, in :class:`~wms.analysis.features.Analysis` field order
#: (plus ``noise.npy`` when the settings have a noise part).
ARRAY_NAMES = ("f0", "voicedness", "mfcc", "target")

#: Feature settings applied at training time, not by ``features.analyse``:
#: changing them must not invalidate the cache.
TRAIN_TIME_FEATURE_KEYS = frozenset(
    {"include_voicedness", "reduction", "reduction_dims", "timbre", "envelope_harmonics"}
)

#: Temp folders older than this are from dead runs (a live write takes seconds).
TEMP_MAX_AGE_SECONDS = 3600.0

_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$WMS_CACHE_DIR`` if set and non-empty, else ``~/.cache/wms``."""
    env = os.environ.get("WMS_CACHE_DIR", "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wms"


def analysis_settings(cfg: Config) -> dict[str, Any]:
    """The settings an entry depends on, as plain JSON data.

    ``audio.sample_rate``, every ``pitch.*`` key, every ``features.*`` key except
    the train-time ones (:data:`TRAIN_TIME_FEATURE_KEYS`), and :data:`CODE_VERSION`.
    ``audio.silence_db`` and ``data.seq_len`` are not in it: they only decide
    whether a file is used, and are checked against each entry's ``meta.json``
    (``peak_db``, ``frames``) without re-analysis.
    """
    d = cfg.to_dict()
    features = {k: v for k, v in d["features"].items() if k not in TRAIN_TIME_FEATURE_KEYS}
    if not features.get("noise_bands"):
        # harmonics only: the entries of earlier versions (which had no noise part) still hit
        features.pop("noise_bands", None)
    if not features.get("noise_bands") or features.get("harmonic_noise") == "kept":
        # ... and so do those of the first noise part, whose analysis "kept" is
        features.pop("harmonic_noise", None)
    return {
        "code_version": CODE_VERSION,
        "sample_rate": d["audio"]["sample_rate"],
        "pitch": d["pitch"],
        "features": features,
    }


def settings_hash(cfg: Config) -> str:
    """sha256 (hex) of :func:`analysis_settings`, stable across runs and processes."""
    blob = json.dumps(analysis_settings(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A loaded entry: ``analysis`` (memory-mapped arrays) or, for a rejection, ``None``."""

    key: str
    meta: dict[str, Any]
    analysis: Analysis | None

    @property
    def rejected(self) -> str | None:
        """The reason a rejection entry records, else ``None``."""
        return self.meta.get("rejected")


class FeatureCache:
    """Per-file analysis results on disk, keyed by content and settings.

    Args:
        root: cache folder (created on first write); ``None`` means
            :func:`default_cache_dir`.

    Attributes:
        notes: human-readable notes about entries found corrupt and discarded.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        if self.root.exists() and not self.root.is_dir():
            raise DataError(f"cache folder {self.root} exists and is not a folder (--cache-dir)")
        self.entries_dir = self.root / "entries"
        self.tmp_dir = self.root / "tmp"
        self.notes: list[str] = []
        self._index_path = self.root / "hashes.json"
        self._index: dict[str, list] | None = None
        self._index_dirty = False

    # -- keys ---------------------------------------------------------------------------

    def content_hash(self, path: str | Path) -> str:
        """sha256 of ``path``'s bytes, memoised by (resolved path, size, mtime_ns).

        Raises ``OSError`` when the file cannot be read.
        """
        p = Path(path).resolve()
        st = p.stat()
        index = self._load_index()
        memo = index.get(str(p))
        if memo is not None and memo[0] == st.st_size and memo[1] == st.st_mtime_ns:
            return memo[2]
        digest = file_sha256(p)
        index[str(p)] = [st.st_size, st.st_mtime_ns, digest]
        self._index_dirty = True
        return digest

    def key(self, path: str | Path, cfg: Config, *, settings: str | None = None) -> str:
        """The entry key of ``path`` under ``cfg`` (``settings`` = a precomputed settings_hash)."""
        return f"{self.content_hash(path)[:32]}-{(settings or settings_hash(cfg))[:16]}"

    def _load_index(self) -> dict[str, list]:
        if self._index is None:
            self._index = {}
            try:
                data = json.loads(self._index_path.read_text())
            except (OSError, ValueError):
                data = {}  # no memo yet, or a damaged one: it is only a speed-up
            if isinstance(data, dict):
                self._index = {
                    k: v
                    for k, v in data.items()
                    if isinstance(v, list) and len(v) == 3 and isinstance(v[2], str)
                }
        return self._index

    def save_index(self) -> None:
        """Write the content-hash memo (atomically) if it changed."""
        if not self._index_dirty or self._index is None:
            return
        # Concurrent runs may race here; the last writer wins, and a lost memo only costs a re-hash.
        write_text(self._index_path, json.dumps(self._index))
        self._index_dirty = False

    # -- read ---------------------------------------------------------------------------

    def entry_dir(self, key: str) -> Path:
        return self.entries_dir / key

    def load(self, key: str, *, n_mfcc: int, n_bins: int, n_noise: int = 0) -> CacheEntry | None:
        """The entry ``key`` with memory-mapped arrays, or ``None`` on a miss.

        ``n_mfcc``, ``n_bins`` and ``n_noise`` are the expected widths of ``mfcc``,
        ``target`` and ``noise`` (no noise array when 0).
        A corrupt entry (unreadable meta, missing array, wrong shape or dtype) is
        noted in :attr:`notes`, removed, and reported as a miss.
        """
        d = self.entry_dir(key)
        if not d.is_dir():
            return None
        try:
            return self._read_entry(d, key, n_mfcc=n_mfcc, n_bins=n_bins, n_noise=n_noise)
        except _CorruptEntry as e:
            self.notes.append(f"cache entry {d} is corrupt ({e}); re-analysing {e.source}")
            self.discard(key)
            return None

    def _read_entry(
        self, d: Path, key: str, *, n_mfcc: int, n_bins: int, n_noise: int
    ) -> CacheEntry:
        from wms.analysis.features import Analysis  # lazy: keeps `wms prepare` on a warm cache fast

        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError) as e:
            raise _CorruptEntry(f"meta.json unreadable: {e}", "the file") from None
        source = meta.get("source", "the file") if isinstance(meta, dict) else "the file"
        if not isinstance(meta, dict) or meta.get("key") != key:
            raise _CorruptEntry("meta.json does not describe this entry", source)
        if "rejected" in meta:
            return CacheEntry(key, meta, None)
        n = meta.get("frames")
        if not isinstance(n, int) or n < 1:
            raise _CorruptEntry(f"meta.json frames = {n!r}", source)
        expected = {"f0": (n,), "voicedness": (n,), "mfcc": (n, n_mfcc), "target": (n, n_bins)}
        if n_noise:
            expected["noise"] = (n, n_noise)
        sums = meta.get("sha256")
        if not isinstance(sums, dict):
            raise _CorruptEntry("meta.json holds no checksums", source)
        arrays = {}
        for name, shape in expected.items():
            try:
                a = np.load(d / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise _CorruptEntry(f"{name}.npy unreadable: {e}", source) from None
            if a.shape != shape or a.dtype != np.float32:
                raise _CorruptEntry(
                    f"{name}.npy is {a.dtype}{list(a.shape)}, expected float32{list(shape)}", source
                )
            if _sha256(a) != sums.get(name):
                raise _CorruptEntry(f"{name}.npy fails its checksum", source)
            if not np.all(np.isfinite(a)):
                raise _CorruptEntry(f"{name}.npy holds NaN or infinite values", source)
            arrays[name] = a
        return CacheEntry(key, meta, Analysis(**arrays))

    # -- write --------------------------------------------------------------------------

    def store(self, key: str, analysis: Analysis, meta: dict[str, Any]) -> Path:
        """Write ``analysis`` (cast to float32) and ``meta`` as entry ``key``, atomically.

        ``meta`` gets ``key`` and ``frames`` added. If another process wrote the
        same key meanwhile, its entry is kept (same key, same content).
        Returns the entry folder.
        """
        n = len(analysis.f0)
        names = ARRAY_NAMES + (("noise",) if analysis.noise is not None else ())
        arrays = {
            name: np.ascontiguousarray(getattr(analysis, name), dtype=np.float32) for name in names
        }
        for name, a in arrays.items():
            if a.shape[0] != n:
                raise ValueError(f"analysis.{name} has {a.shape[0]} frames, f0 has {n}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"analysis.{name} holds NaN or infinite values: not cached")
        tmp = self._new_temp(key)
        for name, a in arrays.items():
            np.save(tmp / f"{name}.npy", a, allow_pickle=False)
        sums = {name: _sha256(a) for name, a in arrays.items()}
        return self._commit(tmp, key, {**meta, "key": key, "frames": n, "sha256": sums})

    def store_rejection(self, key: str, reason: str, meta: dict[str, Any]) -> Path:
        """Record that the file of ``key`` was analysed and is unusable for ``reason``."""
        return self._commit(self._new_temp(key), key, {**meta, "key": key, "rejected": reason})

    def _new_temp(self, key: str) -> Path:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        return tmp

    def _commit(self, tmp: Path, key: str, meta: dict[str, Any]) -> Path:
        # meta.json last: a temp folder without it was interrupted mid-write.
        (tmp / "meta.json").write_text(json.dumps(json_data(meta), indent=1))
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        final = self.entry_dir(key)
        try:
            os.rename(tmp, final)  # atomic on one file system; fails if `final` exists
        except OSError:
            if not final.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent writer won: same content
        return final

    def discard(self, key: str) -> None:
        """Remove entry ``key`` (renamed into ``tmp/`` first so removal is atomic too)."""
        d = self.entry_dir(key)
        if not d.exists():
            return
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        trash = self.tmp_dir / f"discard.{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(d, trash)
        except FileNotFoundError:
            return  # another process discarded it first
        shutil.rmtree(trash, ignore_errors=True)

    def clean_temp(self, max_age_seconds: float = TEMP_MAX_AGE_SECONDS) -> int:
        """Remove temp folders older than ``max_age_seconds`` (left by interrupted runs).

        Younger ones may belong to a run still writing. Returns how many were removed.
        """
        if not self.tmp_dir.is_dir():
            return 0
        now = time.time()
        removed = 0
        for p in self.tmp_dir.iterdir():
            try:
                age = now - p.stat().st_mtime
            except FileNotFoundError:
                continue
            if age >= max_age_seconds:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed += 1
        return removed


def _sha256(a: np.ndarray) -> str:
    """sha256 (hex) of an array's bytes (C order), read in chunks from a memory map."""
    h = hashlib.sha256()
    flat = a.reshape(-1)
    step = max(1, _CHUNK // max(1, a.itemsize))
    for i in range(0, flat.shape[0], step):
        h.update(np.ascontiguousarray(flat[i : i + step]).tobytes())
    return h.hexdigest()


class _CorruptEntry(Exception):
    """Internal: an entry that cannot be trusted (never escapes :meth:`FeatureCache.load`)."""

    def __init__(self, problem: str, source: str):
        super().__init__(problem)
        self.source = source
