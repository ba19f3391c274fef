"""The input map: MFCC -> timbre controls, fitted on training frames (docs/DESIGN.md §1.4).

The timbre features are the MFCC, or with ``features.timbre = "envelope"`` the levels of
the first harmonics (:func:`wms.analysis.features.harmonic_envelope`; ``mfcc`` below names
either). Timbre controls are ``z = (mfcc - mfcc_mean) / mfcc_std`` then, by
``features.reduction``:

- ``"none"`` -> ``z`` (controls ``mfcc0..``);
- ``"pca"`` -> ``(z - pca_mean) @ components.T`` (controls ``pc0..``, the default; signed
  so that raising one makes the envelope louder, brighter or fuller in the middle);
- ``"pacmap"`` -> the inverse-distance-weighted mean of the PaCMAP embeddings of the
  ``knn_k`` nearest stored training points (controls ``pacmap0..``). PaCMAP has no robust
  out-of-sample transform, so *every* frame, training frames included, is mapped this
  same way, and training and synthesis agree.

Everything else the model needs (control ranges and defaults, the pitch mapping, the
output layout) is in :class:`wms.interface.ModelInterface`; this module holds only the
fitted mapping. Arrays are float64 so :meth:`InputMap.to_state` round-trips exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wms.config import Config
from wms.errors import BundleError, ConfigError

#: Coefficients whose training std is below this are only centred, not scaled.
_STD_FLOOR = 1e-6
#: PaCMAP is fitted on at most this many training frames (a seeded subsample).
PACMAP_MAX_POINTS = 10000
#: Neighbours used to map new points into a PaCMAP embedding.
PACMAP_NEIGHBOURS = 8
#: ``features.reduction_dims = 0`` gives PaCMAP this many axes (its count before 0.4.0).
PACMAP_DIMS = 3
#: ``features.reduction_dims = 0`` keeps the principal components that each explain at least
#: this share of the training frames' (standardised) timbre variance: on the seven real
#: pieces of benchmarks/real_audio.py 4-8 of 8 (docs/DESIGN.md §1.4).
MIN_EXPLAINED = 0.01

INPUT_MAP_FORMAT = "wms-input-map"
INPUT_MAP_VERSION = 2
#: The version of a map fitted on other features than MFCC (``source``; version 2 is MFCC).
INPUT_MAP_SOURCE_VERSION = 3
REDUCTIONS = ("none", "pca", "pacmap")
SOURCES = ("mfcc", "envelope")
_PREFIX = {"none": "mfcc", "pca": "pc", "pacmap": "pacmap"}


@dataclass(frozen=True, eq=False)
class InputMap:
    """The fitted MFCC -> timbre-control mapping.

    Attributes:
        mfcc_mean, mfcc_std: ``[n_mfcc]`` (std of constant coefficients is 1).
        reduction: ``"none"``, ``"pca"`` or ``"pacmap"``.
        components: pca ``[dims, n_mfcc]``; pca_mean ``[n_mfcc]``;
            explained_variance_ratio ``[dims]``.
        knn_points ``[m, n_mfcc]``, knn_embedding ``[m, dims]``, knn_k: pacmap.
    """

    mfcc_mean: np.ndarray
    mfcc_std: np.ndarray
    reduction: str
    components: np.ndarray | None = None
    pca_mean: np.ndarray | None = None
    explained_variance_ratio: np.ndarray | None = None
    knn_points: np.ndarray | None = None
    knn_embedding: np.ndarray | None = None
    knn_k: int = PACMAP_NEIGHBOURS
    #: the timbre features it maps (``features.timbre``): ``"mfcc"`` or ``"envelope"``
    source: str = "mfcc"
    _tree: list = field(default_factory=list, init=False, repr=False, compare=False)

    _ARRAYS = (
        "mfcc_mean",
        "mfcc_std",
        "components",
        "pca_mean",
        "explained_variance_ratio",
        "knn_points",
        "knn_embedding",
    )

    @property
    def n_mfcc(self) -> int:
        return int(self.mfcc_mean.shape[0])

    @property
    def n_controls(self) -> int:
        if self.reduction == "pca":
            return int(self.components.shape[0])
        if self.reduction == "pacmap":
            return int(self.knn_embedding.shape[1])
        return self.n_mfcc

    @property
    def control_names(self) -> tuple[str, ...]:
        """``mfcc0..`` (``harm1..`` for the envelope), ``pc0..`` or ``pacmap0..``: the names
        training gives the controls."""
        if self.reduction == "none" and self.source == "envelope":
            return tuple(f"harm{i + 1}" for i in range(self.n_controls))
        return tuple(f"{_PREFIX[self.reduction]}{i}" for i in range(self.n_controls))

    def controls(self, mfcc: np.ndarray, *, dtype=np.float32) -> np.ndarray:
        """Timbre controls of MFCC frames: ``[n, n_mfcc] -> [n, n_controls]``.

        Raises:
            ValueError: wrong width or non-finite MFCC.
        """
        x = np.asarray(mfcc, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_mfcc:
            raise ValueError(f"mfcc has shape {x.shape}, expected [n, {self.n_mfcc}]")
        if not np.all(np.isfinite(x)):
            raise ValueError("mfcc holds NaN or infinite values")
        z = (x - self.mfcc_mean) / self.mfcc_std
        if self.reduction == "pca":
            z = (z - self.pca_mean) @ self.components.T
        elif self.reduction == "pacmap":
            z = self._knn_map(z)
        return z.astype(dtype, copy=False)

    def _knn_map(self, z: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import NearestNeighbors

        if not self._tree:  # built once per InputMap; synthesis maps frames repeatedly
            k = min(self.knn_k, self.knn_points.shape[0])
            self._tree.append(NearestNeighbors(n_neighbors=k).fit(self.knn_points))
        dist, idx = self._tree[0].kneighbors(z)
        # Inverse-distance weights; an exact training point gets (almost) its own embedding.
        w = 1.0 / np.maximum(dist, 1e-9)
        w /= w.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkd->nd", w, self.knn_embedding[idx])

    def to_state(self) -> dict[str, Any]:
        """Plain python data (lists, floats, str, int, None): bundle-safe."""
        d: dict[str, Any] = {
            "format": INPUT_MAP_FORMAT,
            "version": INPUT_MAP_VERSION,
            "reduction": self.reduction,
            "knn_k": int(self.knn_k),
        }
        if self.source != "mfcc":  # an MFCC map stays the version-2 state it always was
            d.update(version=INPUT_MAP_SOURCE_VERSION, source=self.source)
        for name in self._ARRAYS:
            v = getattr(self, name)
            d[name] = None if v is None else np.asarray(v, dtype=np.float64).tolist()
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> InputMap:
        """Rebuild from :meth:`to_state` output.

        Raises:
            BundleError: not an input-map state, another version, missing keys or
                arrays of inconsistent shapes.
        """
        if not isinstance(d, dict) or d.get("format") != INPUT_MAP_FORMAT:
            raise BundleError(f"input map state: not a {INPUT_MAP_FORMAT!r} record")
        version = d.get("version")
        if version not in (INPUT_MAP_VERSION, INPUT_MAP_SOURCE_VERSION):
            raise BundleError(
                f"input map state: version {version!r} is not supported (this wms reads "
                f"versions {INPUT_MAP_VERSION} and {INPUT_MAP_SOURCE_VERSION})"
            )
        if version == INPUT_MAP_SOURCE_VERSION and "source" not in d:
            raise BundleError(f"input map state: version {version} without its timbre source")
        source = d.get("source") if version == INPUT_MAP_SOURCE_VERSION else "mfcc"
        if source not in SOURCES:
            raise BundleError(f"input map state: unknown timbre source {source!r}")
        missing = [k for k in ("reduction", "knn_k", *cls._ARRAYS) if k not in d]
        if missing:
            raise BundleError(f"input map state: missing keys {', '.join(missing)}")
        try:
            arrays = {
                k: None if d[k] is None else np.asarray(d[k], dtype=np.float64) for k in cls._ARRAYS
            }
            imap = cls(
                reduction=str(d["reduction"]), knn_k=int(d["knn_k"]), source=source, **arrays
            )
        except (TypeError, ValueError) as e:
            raise BundleError(f"input map state: malformed values ({e})") from None
        _validate(imap)
        return imap

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InputMap):
            return NotImplemented
        return self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]


def migrate_v1_state(d: dict[str, Any]) -> dict[str, Any]:
    """An input-map state of wms 0.1.0 (version 1) as a version-2 state.

    Version 1 also held the pitch mapping, the control names and ranges and the f0 range;
    those now live in the model interface (see ``wms.bundle``), so they are dropped here.
    The fitted arrays are unchanged.

    Raises:
        BundleError: not a version-1 input-map state.
    """
    if not isinstance(d, dict) or d.get("format") != INPUT_MAP_FORMAT or d.get("version") != 1:
        raise BundleError("input map state: not a version-1 input map")
    out = {k: d.get(k) for k in ("reduction", "knn_k", *InputMap._ARRAYS)}
    return {"format": INPUT_MAP_FORMAT, "version": INPUT_MAP_VERSION, **out}


def _validate(imap: InputMap) -> None:
    n = imap.mfcc_mean.shape
    problems = []
    if imap.mfcc_std.shape != n or len(n) != 1:
        problems.append("mfcc_mean/mfcc_std shapes differ")
    if imap.reduction not in REDUCTIONS:
        problems.append(f"unknown reduction {imap.reduction!r}")
    if imap.reduction == "pca" and (
        imap.components is None
        or imap.pca_mean is None
        or imap.components.ndim != 2
        or imap.components.shape[1:] != n
    ):
        problems.append("pca components missing or not [dims, n_mfcc]")
    if imap.reduction == "pacmap" and (
        imap.knn_points is None
        or imap.knn_embedding is None
        or imap.knn_points.ndim != 2
        or imap.knn_points.shape[1:] != n
        or imap.knn_embedding.ndim != 2
        or imap.knn_embedding.shape[0] != imap.knn_points.shape[0]
    ):
        problems.append("pacmap neighbours missing or of inconsistent shapes")
    for name in InputMap._ARRAYS:
        v = getattr(imap, name)
        if v is not None and not np.all(np.isfinite(v)):
            problems.append(f"{name} holds NaN or infinite values")
    if problems:
        raise BundleError(f"input map state: {'; '.join(problems)}")


def _fit_pacmap(z: np.ndarray, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        import pacmap
    except ImportError:
        raise ConfigError(
            "features.reduction = 'pacmap' needs the pacmap package: "
            "pip install pacmap (or pip install 'wms[pacmap]'), or use reduction = 'pca'"
        ) from None
    rng = np.random.default_rng(seed)
    if z.shape[0] > PACMAP_MAX_POINTS:
        keep = np.sort(rng.choice(z.shape[0], size=PACMAP_MAX_POINTS, replace=False))
        z = z[keep]
    reducer = pacmap.PaCMAP(n_components=dims, random_state=seed)
    emb = np.asarray(reducer.fit_transform(z.astype(np.float32)), dtype=np.float64)
    return z, emb


def fit_input_map(mfcc_train: np.ndarray, cfg: Config) -> InputMap:
    """Fit the input map on training frames only (the caller excludes held-out frames).

    Args:
        mfcc_train: ``[n, n_mfcc]`` MFCC of the training frames (n >= 2).
        cfg: uses ``features.{n_mfcc, reduction, reduction_dims}`` and ``data.seed`` (PaCMAP).

    Raises:
        ValueError: wrong shape, fewer than 2 frames, non-finite values.
        ConfigError: ``reduction = "pacmap"`` without the pacmap package.
    """
    from wms.analysis.features import timbre_width

    fc = cfg.features
    x = np.asarray(mfcc_train, dtype=np.float64)
    width = timbre_width(cfg)
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"mfcc_train has shape {x.shape}, expected [n, {width}]")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 training frames, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("mfcc_train holds NaN or infinite values")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > _STD_FLOOR, std, 1.0)
    z = (x - mean) / std
    dims = fc.reduction_dims
    extra: dict[str, Any] = {}
    if fc.reduction == "pca":
        pca_mean = z.mean(axis=0)
        _, s, vt = np.linalg.svd(z - pca_mean, full_matrices=False)
        var = s**2
        ratio = var / max(var.sum(), 1e-300)
        if dims == 0:  # as many as explain the timbre
            dims = max(1, int(np.count_nonzero(ratio >= MIN_EXPLAINED)))
        comps = vt[:dims]
        # Deterministic signs: raising a control does the positive of what it mostly does
        # to the envelope (louder, brighter or mids up: "component signs" below); one that
        # changes nothing keeps its largest loading positive.
        basis, harmonic = _envelope_basis(fc.timbre, width, cfg)
        thirds = _thirds(harmonic)
        signs = []
        for comp in comps:
            means = _third_means((comp * std) @ basis, thirds)
            size = signed_size(means, _kind(means))
            signs.append(np.sign(size) if size != 0 else np.sign(comp[np.argmax(np.abs(comp))]))
        comps = comps * np.asarray(signs)[:, None]
        extra = dict(components=comps, pca_mean=pca_mean, explained_variance_ratio=ratio[:dims])
    elif fc.reduction == "pacmap":
        points, emb = _fit_pacmap(z, dims or PACMAP_DIMS, cfg.data.seed)
        extra = dict(knn_points=points, knn_embedding=emb, knn_k=PACMAP_NEIGHBOURS)
    elif fc.reduction != "none":
        raise ValueError(f"unknown reduction {fc.reduction!r}; use one of {', '.join(REDUCTIONS)}")
    return InputMap(mfcc_mean=mean, mfcc_std=std, reduction=fc.reduction, source=fc.timbre, **extra)


# --------------------------------------------------------------------------- component signs
# A principal component is signed by what it does to the training sounds' spectral envelope
# (wms.synth.network.control_effects says what the trained model then plays): the envelope's
# bands are cut into three groups of equal width in log harmonic number, and the component
# is signed so that raising it does the positive of what it mostly does: louder (the three
# move one way within a factor LEVEL_RATIO), else brighter (the top group against the
# bottom one moves more than the middle against the two), else mids up.

#: Three groups that move one way, the largest at most this many times the smallest: level.
LEVEL_RATIO = 2.0
#: dB per unit of ``log1p`` magnitude (the envelope features), exact for levels well above 1.
_DB_PER_LOG1P = 20.0 / np.log(10.0)


def _envelope_basis(source: str, n_features: int, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """``(basis, harmonic)``: the dB change over the envelope's bands per unit of each
    timbre feature (``[n_features, n_bands]``) and each band's harmonic number, over the
    bands up to the harmonics the target holds (the model plays no others; all bands when
    fewer than 3 lie there)."""
    fc = cfg.features
    if source == "envelope":
        return _DB_PER_LOG1P * np.eye(n_features), np.arange(1.0, n_features + 1.0)
    import librosa
    import scipy.fft

    sr = cfg.audio.sample_rate
    fmax = fc.mel_fmax or sr / 2.0
    # MFCC = DCT-II (ortho) of the mel dB: unit coefficient k adds the k-th DCT basis vector
    basis = scipy.fft.idct(np.eye(n_features, fc.n_mels), type=2, norm="ortho", axis=1)
    centres = librosa.mel_frequencies(n_mels=fc.n_mels + 2, fmin=fc.mel_fmin, fmax=fmax)[1:-1]
    # the window holds N cycles: nominal frequency F is harmonic F * W / (N * sr)
    harmonic = centres * fc.window_size / (fc.cycles_per_window * sr)
    played = harmonic <= (fc.n_bins - 1) // fc.bins_per_harmonic
    if np.count_nonzero(played) >= 3:
        basis, harmonic = basis[:, played], harmonic[played]
    return basis, harmonic


def _thirds(harmonic: np.ndarray) -> list[np.ndarray]:
    """The bands in three groups of equal width in log harmonic number (harmonics 2-10,
    10-40, 40-152 at the default analysis), of equal counts where one would be empty, or
    all bands three times when there are fewer than 3."""
    if harmonic.size < 3:
        return [np.arange(harmonic.size)] * 3
    cut = np.geomspace(harmonic[0], harmonic[-1], 4)[1:3]
    groups = np.split(np.arange(harmonic.size), np.searchsorted(harmonic, cut))
    if any(g.size == 0 for g in groups):
        groups = np.array_split(np.arange(harmonic.size), 3)
    return groups


def _third_means(change: np.ndarray, thirds: list[np.ndarray]) -> tuple[float, float, float]:
    return tuple(float(change[t].mean()) for t in thirds)  # type: ignore[return-value]


def _kind(means: tuple[float, float, float]) -> str:
    if np.abs(means).max() == 0.0:
        return "none"
    return "level" if moves_as_level(means) else balance_kind(means)


def moves_as_level(parts) -> bool:
    """Every part moves one way (dB), the largest at most :data:`LEVEL_RATIO` times the
    smallest (also wms.synth.network.control_effects, with the noise as a fourth part)."""
    p = np.asarray(parts, dtype=np.float64)
    mags = np.abs(p)
    return bool((np.all(p > 0) or np.all(p < 0)) and mags.max() <= LEVEL_RATIO * mags.min())


def balance_kind(change: tuple[float, float, float]) -> str:
    """``"brightness"`` when the top group against the bottom one moves more than the
    middle against the two, else ``"mids"``."""
    lo, mid, hi = change
    return "brightness" if abs(hi - lo) >= abs(mid - (lo + hi) / 2) else "mids"


def signed_size(change: tuple[float, float, float], kind: str) -> float:
    """How much a change does what its kind names, > 0 for louder, brighter, mids up."""
    lo, mid, hi = change
    return {"level": lo + mid + hi, "brightness": hi - lo, "mids": mid - (lo + hi) / 2}.get(
        kind, 0.0
    )
