"""The model contract: what the network takes and gives, in one versioned object.

Training builds a :class:`ModelInterface` from its training frames; the bundle stores it;
the synth, the evaluation and every export read it back. Nothing else knows the width of
the model input, the log-pitch formula or where the harmonics are in the output.

Inputs (docs/DESIGN.md §1.5), one row per frame / control step::

    x = [timbre controls (n_timbre)..., log_pitch(f0), voicedness (if included)]
    log_pitch(f0) = log(max(f0, fmin) - fmin + eps)            f0 in Hz, eps = 1e-4

Outputs (:class:`OutputLayout`): ``n_outputs`` log1p magnitudes; harmonic ``h`` (1-based)
is output ``harmonic_offset + harmonic_stride * (h - 1)``. The reference layout predicts
``K`` spectrum bins of an N-cycle window, where bin ``B * h`` is harmonic ``h`` (``B =
bins_per_harmonic``), so offset = stride = B and ``H = (K - 1) // B``. A model with a noise
part (``features.noise_bands > 0``) has ``n_noise`` more outputs after the K bins: the
log1p levels of the noise in the bands of :attr:`ModelInterface.noise_edges`
(:mod:`wms.noise`, docs/DESIGN.md §1.7).

The state (:meth:`ModelInterface.to_state`) is plain data with a format name and version;
:meth:`ModelInterface.from_state` refuses other versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wms.errors import BundleError

INTERFACE_FORMAT = "wms-interface"
INTERFACE_VERSION = 2  # 2: the noise part (version 1 records read as harmonics only)
#: The constant in ``log_pitch = log(max(f0, fmin) - fmin + eps)`` (reference and plugin).
LOG_PITCH_EPS = 1e-4
#: Percentiles of the training frames that bound each control's range (and the f0 range).
RANGE_PERCENTILES = (1.0, 99.0)
#: A prediction this far (dB) below the voiced training frames' median level is not
#: normalised up to the table level (see ``ModelInterface.level_floor``).
LEVEL_FLOOR_DB = 60.0


def log_pitch(f0: np.ndarray, fmin: float, eps: float = LOG_PITCH_EPS) -> np.ndarray:
    """Model pitch input ``log(max(f0, fmin) - fmin + eps)``, float32; ``f0``, ``fmin`` in Hz."""
    f0 = np.asarray(f0, dtype=np.float64)
    return np.log(np.maximum(f0, fmin) - fmin + eps).astype(np.float32)


@dataclass(frozen=True)
class OutputLayout:
    """Where the harmonics are in the model's output vector.

    Attributes:
        n_outputs: width of the output (K).
        harmonic_offset: index of harmonic 1.
        harmonic_stride: outputs between consecutive harmonics.
        n_harmonics: H, harmonics the output holds.
        bins_per_harmonic: B for the spectrum-bin layout (bin ``B*h`` is harmonic h),
            the spacing a loss or a plot reads the bins with.
        n_noise: outputs of the noise part, the last ``n_noise`` of the vector (0: none).
    """

    n_outputs: int
    harmonic_offset: int
    harmonic_stride: int
    n_harmonics: int
    bins_per_harmonic: int
    n_noise: int = 0

    @property
    def n_bins(self) -> int:
        """Outputs of the harmonic part (the K spectrum bins), before the noise part."""
        return self.n_outputs - self.n_noise

    @property
    def noise_offset(self) -> int:
        """Index of the first noise output (``n_bins``)."""
        return self.n_outputs - self.n_noise

    def noise(self, outputs: np.ndarray) -> np.ndarray:
        """Linear noise band levels ``[..., n_noise]`` float32 (``expm1``, negatives set to 0);
        a band of level ``v`` has the power of a harmonic of amplitude ``v``."""
        y = np.asarray(outputs, dtype=np.float32)
        if y.shape[-1] != self.n_outputs:
            raise ValueError(f"outputs have {y.shape[-1]} values, the layout {self.n_outputs}")
        v = np.expm1(y[..., self.noise_offset :])
        return np.maximum(v, 0.0, out=v)

    @classmethod
    def spectrum_bins(cls, n_bins: int, bins_per_harmonic: int) -> OutputLayout:
        """The reference layout: ``K`` rfft bins of an N-cycle window, bin ``B*h`` = harmonic h.

        Raises:
            ValueError: fewer than one harmonic (``K <= B``) or ``B < 1``.
        """
        if bins_per_harmonic < 1 or n_bins <= bins_per_harmonic:
            raise ValueError(
                f"a spectrum of {n_bins} bins with harmonics every {bins_per_harmonic} bins "
                "holds no harmonic"
            )
        h = (n_bins - 1) // bins_per_harmonic
        return cls(n_bins, bins_per_harmonic, bins_per_harmonic, h, bins_per_harmonic)

    def with_noise(self, n_noise: int) -> OutputLayout:
        """This layout with ``n_noise`` noise outputs appended (0: unchanged)."""
        if n_noise < 0:
            raise ValueError(f"n_noise = {n_noise}")
        k = self.n_bins
        return OutputLayout(
            k + n_noise, self.harmonic_offset, self.harmonic_stride, self.n_harmonics,
            self.bins_per_harmonic, n_noise,
        )  # fmt: skip

    @property
    def harmonic_index(self) -> np.ndarray:
        """``[H]`` int64: the output index of each harmonic."""
        return self.harmonic_offset + self.harmonic_stride * np.arange(self.n_harmonics)

    def harmonics(self, outputs: np.ndarray) -> np.ndarray:
        """Linear harmonic amplitudes ``[..., H]`` float32 from model outputs ``[..., n_outputs]``.

        ``expm1`` of the harmonic outputs; negative values (possible without a Softplus
        output) are set to 0.

        Raises:
            ValueError: the last axis is not ``n_outputs`` wide.
        """
        y = np.asarray(outputs, dtype=np.float32)
        if y.shape[-1] != self.n_outputs:
            raise ValueError(f"outputs have {y.shape[-1]} values, the layout {self.n_outputs}")
        stop = self.harmonic_offset + self.harmonic_stride * (self.n_harmonics - 1) + 1
        amps = np.expm1(y[..., self.harmonic_offset : stop : self.harmonic_stride])
        return np.maximum(amps, 0.0, out=amps)

    def to_state(self) -> dict[str, int]:
        return {
            "n_outputs": self.n_outputs,
            "harmonic_offset": self.harmonic_offset,
            "harmonic_stride": self.harmonic_stride,
            "n_harmonics": self.n_harmonics,
            "bins_per_harmonic": self.bins_per_harmonic,
            "n_noise": self.n_noise,
        }


def output_layout(cfg: Any) -> OutputLayout:
    """The output layout a config trains: ``features.n_bins`` spectrum bins with harmonics every
    ``features.bins_per_harmonic`` bins, then ``features.noise_bands`` noise outputs."""
    layout = OutputLayout.spectrum_bins(cfg.features.n_bins, cfg.features.bins_per_harmonic)
    return layout.with_noise(cfg.features.noise_bands)


@dataclass(frozen=True, eq=False)
class ModelInterface:
    """Everything a stage needs to feed the model and read its output.

    Attributes:
        control_names: the ``n_timbre`` timbre controls, in input order.
        control_ranges: ``[n_timbre, 2]`` (low, high): 1st/99th percentile on training frames.
        control_defaults: ``[n_timbre]`` median on training frames (a render's default).
        fmin: Hz, the floor of the log-pitch mapping.
        log_pitch_eps: the ``eps`` of the log-pitch mapping.
        f0_range: ``(low, high)`` Hz, 1st/99th percentile of voiced training f0; the synth
            clamps the model's pitch input to it unless told to extrapolate.
        f0_default: Hz, median voiced training f0 (a render's default pitch).
        include_voicedness: the last input is voicedness (0..1).
        outputs: the :class:`OutputLayout`.
        sample_rate: analysis rate in Hz; ``hop_size``: samples between frames, so one
            model step stands for ``frame_seconds = hop_size / sample_rate`` of audio.
        level_floor: waveform RMS (of the linear harmonic amplitudes, ``sqrt(sum a^2 / 2)``)
            below which the synth plays a prediction at its own, quiet level instead of
            normalising it up to the table level: :data:`LEVEL_FLOOR_DB` under the median of
            the voiced training frames, so a near-silent (or dead) model is never amplified
            into a buzz. 0 normalises every prediction (wms 0.1.0's rule). With a noise part
            the level counts the noise bands too (``sqrt((sum a^2 + sum v^2) / 2)``).
        noise_edges: ``n_noise + 1`` band edges in Hz (increasing, from 0 to at most the
            analysis Nyquist frequency) of the noise part; empty without one.
    """

    control_names: tuple[str, ...]
    control_ranges: np.ndarray
    control_defaults: np.ndarray
    fmin: float
    f0_range: tuple[float, float]
    f0_default: float
    include_voicedness: bool
    outputs: OutputLayout
    sample_rate: int
    hop_size: int
    log_pitch_eps: float = LOG_PITCH_EPS
    level_floor: float = 0.0
    noise_edges: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.control_names)
        ranges = np.asarray(self.control_ranges, dtype=np.float64).reshape(-1, 2)
        defaults = np.asarray(self.control_defaults, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "control_names", names)
        object.__setattr__(self, "control_ranges", ranges)
        object.__setattr__(self, "control_defaults", defaults)
        object.__setattr__(self, "f0_range", (float(self.f0_range[0]), float(self.f0_range[1])))
        problems = []
        if ranges.shape[0] != len(names) or defaults.shape[0] != len(names):
            problems.append(
                f"{len(names)} control names but ranges {ranges.shape} and defaults "
                f"{defaults.shape}"
            )
        if len(set(names)) != len(names):
            problems.append(f"control names repeat: {list(names)}")
        if not (np.all(np.isfinite(ranges)) and np.all(np.isfinite(defaults))):
            problems.append("control ranges or defaults are not finite")
        lo, hi = self.f0_range
        if not (0 < lo <= hi and np.isfinite(hi)) or not (
            np.isfinite(self.f0_default) and self.f0_default > 0
        ):
            problems.append(f"f0 range {self.f0_range} / default {self.f0_default} Hz")
        if not (np.isfinite(self.fmin) and self.fmin > 0):
            problems.append(f"fmin = {self.fmin}")
        if not (np.isfinite(self.level_floor) and self.level_floor >= 0):
            problems.append(f"level_floor = {self.level_floor}")
        edges = tuple(float(e) for e in self.noise_edges)
        object.__setattr__(self, "noise_edges", edges)
        n_noise = self.outputs.n_noise
        if n_noise and (
            len(edges) != n_noise + 1
            or not all(np.isfinite(edges))
            or edges[0] < 0
            or any(b <= a for a, b in zip(edges[:-1], edges[1:], strict=True))
            or edges[-1] > 0.5 * self.sample_rate
        ):
            problems.append(
                f"{n_noise} noise outputs need {n_noise + 1} increasing band edges from 0 to at "
                f"most {0.5 * self.sample_rate:g} Hz, got {len(edges)}"
            )
        if not n_noise and edges:
            problems.append(f"noise band edges {len(edges)} without noise outputs")
        if problems:
            raise ValueError(f"inconsistent model interface: {'; '.join(problems)}")

    # ------------------------------------------------------------------ shapes
    @property
    def n_timbre(self) -> int:
        return len(self.control_names)

    @property
    def n_inputs(self) -> int:
        """D = timbre controls + log-pitch (+ voicedness)."""
        return self.n_timbre + 1 + int(self.include_voicedness)

    @property
    def n_outputs(self) -> int:
        return self.outputs.n_outputs

    @property
    def n_harmonics(self) -> int:
        return self.outputs.n_harmonics

    @property
    def n_noise(self) -> int:
        """Noise bands the model predicts (0: harmonics only)."""
        return self.outputs.n_noise

    @property
    def input_names(self) -> list[str]:
        """Names of the input columns: controls, ``log_pitch`` [, ``voicedness``]."""
        return [*self.control_names, "log_pitch"] + (
            ["voicedness"] if self.include_voicedness else []
        )

    @property
    def frame_seconds(self) -> float:
        """Seconds of audio one model step stands for (the analysis hop)."""
        return self.hop_size / self.sample_rate

    # ------------------------------------------------------------------ mapping
    def control_index(self, name: str) -> int:
        """Column of timbre control ``name``; ``KeyError`` listing the names if unknown."""
        try:
            return self.control_names.index(name)
        except ValueError:
            raise KeyError(name) from None

    def log_pitch(self, f0: np.ndarray) -> np.ndarray:
        """The pitch input of ``f0`` (Hz), float32."""
        return log_pitch(f0, self.fmin, self.log_pitch_eps)

    def inputs(
        self, controls: np.ndarray, f0: np.ndarray, voicedness: np.ndarray | None = None
    ) -> np.ndarray:
        """Model input rows ``[T, D]`` float32 from ``controls[T, n_timbre]``, ``f0[T]`` (Hz)
        and ``voicedness[T]`` (0..1; required when the interface includes it).

        No clamping: the caller applies :meth:`clamp_controls` / :meth:`clamp_f0` when it
        wants the training range (the synth does, unless told to extrapolate).

        Raises:
            ValueError: wrong shapes, missing voicedness, non-finite values.
        """
        c = np.asarray(controls, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != self.n_timbre:
            raise ValueError(f"controls have shape {c.shape}, expected [T, {self.n_timbre}]")
        n = c.shape[0]
        f = np.asarray(f0, dtype=np.float64).reshape(-1)
        if f.shape[0] != n:
            raise ValueError(f"f0 has {f.shape[0]} rows, controls {n}")
        cols = [c, self.log_pitch(f)[:, None]]
        if self.include_voicedness:
            if voicedness is None:
                raise ValueError("this model takes voicedness, but none was given")
            v = np.asarray(voicedness, dtype=np.float64).reshape(-1)
            if v.shape[0] != n:
                raise ValueError(f"voicedness has {v.shape[0]} rows, controls {n}")
            cols.append(v.astype(np.float32)[:, None])
        x = np.concatenate(cols, axis=1).astype(np.float32, copy=False)
        if not np.all(np.isfinite(x)):
            raise ValueError("model inputs hold NaN or infinite values")
        return x

    def clamp_controls(self, controls: np.ndarray) -> np.ndarray:
        """``controls[..., n_timbre]`` clipped to :attr:`control_ranges` (float64)."""
        c = np.asarray(controls, dtype=np.float64)
        return np.clip(c, self.control_ranges[:, 0], self.control_ranges[:, 1])

    def clamp_f0(self, f0: np.ndarray) -> np.ndarray:
        """``f0`` (Hz) clipped to :attr:`f0_range` (float64)."""
        return np.clip(np.asarray(f0, dtype=np.float64), *self.f0_range)

    def harmonics(self, outputs: np.ndarray) -> np.ndarray:
        """Linear harmonic amplitudes ``[..., H]`` of model outputs (see :class:`OutputLayout`)."""
        return self.outputs.harmonics(outputs)

    def noise(self, outputs: np.ndarray) -> np.ndarray:
        """Linear noise band levels ``[..., n_noise]`` of model outputs (see :class:`OutputLayout`)."""
        return self.outputs.noise(outputs)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        controls: np.ndarray,
        f0: np.ndarray,
        voiced: np.ndarray,
        *,
        control_names: tuple[str, ...],
        fmin: float,
        include_voicedness: bool,
        outputs: OutputLayout,
        sample_rate: int,
        hop_size: int,
        targets: np.ndarray | None = None,
        noise_edges: tuple[float, ...] = (),
    ) -> ModelInterface:
        """The interface of a model trained on these frames.

        Args:
            controls: ``[n, n_timbre]`` timbre controls of the training frames.
            f0: ``[n]`` Hz. voiced: ``[n]`` bool, the frames counted as voiced.
            targets: ``[n, n_outputs]`` their training targets; when given, the level
                floor is :data:`LEVEL_FLOOR_DB` under the voiced frames' median level
                (else 0: every prediction normalised).

        Control ranges and the f0 range are the 1st/99th percentiles, the defaults the
        medians (f0 over voiced frames only).

        Raises:
            ValueError: no frame, or no voiced frame.
        """
        c = np.asarray(controls, dtype=np.float64)
        f = np.asarray(f0, dtype=np.float64)
        v = np.asarray(voiced, dtype=bool) & np.isfinite(f)
        if c.ndim != 2 or c.shape[0] == 0 or f.shape != (c.shape[0],) or v.shape != f.shape:
            raise ValueError(
                f"fit needs [n, d] controls and [n] f0/voiced, got {c.shape}, {f.shape}"
            )
        if not v.any():
            raise ValueError("no voiced training frame: the f0 range is undefined")
        floor = 0.0
        if targets is not None:
            t = np.asarray(targets)[v]
            amps = outputs.harmonics(t).astype(np.float64)
            noise = outputs.noise(t).astype(np.float64)
            level = np.sqrt(0.5 * (np.sum(amps * amps, axis=1) + np.sum(noise * noise, axis=1)))
            floor = float(np.median(level)) * 10 ** (-LEVEL_FLOOR_DB / 20)
        return cls(
            control_names=tuple(control_names),
            control_ranges=np.percentile(c, RANGE_PERCENTILES, axis=0).T.copy(),
            control_defaults=np.median(c, axis=0),
            fmin=float(fmin),
            f0_range=tuple(np.percentile(f[v], RANGE_PERCENTILES)),
            f0_default=float(np.median(f[v])),
            include_voicedness=bool(include_voicedness),
            outputs=outputs,
            sample_rate=int(sample_rate),
            hop_size=int(hop_size),
            level_floor=floor,
            noise_edges=tuple(noise_edges),
        )

    @classmethod
    def fit_config(
        cls,
        cfg: Any,
        controls: np.ndarray,
        f0: np.ndarray,
        voicedness: np.ndarray,
        *,
        control_names: tuple[str, ...],
        targets: np.ndarray | None = None,
    ) -> ModelInterface:
        """:meth:`fit` with everything else from a :class:`wms.config.Config`: frames with
        voicedness >= ``pitch.voicing_threshold`` count as voiced; ``pitch.fmin``,
        ``features.include_voicedness``, the output layout of :func:`output_layout`, the
        analysis rate and hop, the noise bands of ``features.noise_bands``."""
        from wms.noise import band_edges

        n_noise = cfg.features.noise_bands
        return cls.fit(
            controls,
            f0,
            np.asarray(voicedness) >= cfg.pitch.voicing_threshold,
            control_names=control_names,
            fmin=cfg.pitch.fmin,
            include_voicedness=cfg.features.include_voicedness,
            outputs=output_layout(cfg),
            sample_rate=cfg.audio.sample_rate,
            hop_size=cfg.features.hop_size,
            targets=targets,
            noise_edges=tuple(band_edges(cfg.audio.sample_rate, n_noise)) if n_noise else (),
        )

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        """Plain data (lists, floats, str, int, bool): bundle- and JSON-safe."""
        return {
            "format": INTERFACE_FORMAT,
            "version": INTERFACE_VERSION,
            "control_names": list(self.control_names),
            "control_ranges": self.control_ranges.tolist(),
            "control_defaults": self.control_defaults.tolist(),
            "pitch": {
                "fmin": float(self.fmin),
                "log_eps": float(self.log_pitch_eps),
                "f0_range": list(self.f0_range),
                "f0_default": float(self.f0_default),
            },
            "include_voicedness": bool(self.include_voicedness),
            "outputs": self.outputs.to_state(),
            "sample_rate": int(self.sample_rate),
            "hop_size": int(self.hop_size),
            "level_floor": float(self.level_floor),
            "noise_edges": list(self.noise_edges),
        }

    @classmethod
    def from_state(cls, d: Any, *, where: str = "model interface") -> ModelInterface:
        """Rebuild from :meth:`to_state` output.

        Raises:
            BundleError: not an interface state, another version, missing or bad fields.
        """
        if not isinstance(d, dict) or d.get("format") != INTERFACE_FORMAT:
            raise BundleError(f"{where}: not a {INTERFACE_FORMAT!r} record")
        if d.get("version") not in (1, INTERFACE_VERSION):
            raise BundleError(
                f"{where}: version {d.get('version')!r} is not supported (this wms reads "
                f"versions 1 to {INTERFACE_VERSION})"
            )
        names = d.get("control_names")
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise BundleError(f"{where}: control_names is not a list of names")
        try:
            p, o = d["pitch"], d["outputs"]
            return cls(
                control_names=tuple(names),
                control_ranges=np.asarray(d["control_ranges"], dtype=np.float64),
                control_defaults=np.asarray(d["control_defaults"], dtype=np.float64),
                fmin=float(p["fmin"]),
                log_pitch_eps=float(p["log_eps"]),
                f0_range=(float(p["f0_range"][0]), float(p["f0_range"][1])),
                f0_default=float(p["f0_default"]),
                include_voicedness=bool(d["include_voicedness"]),
                outputs=OutputLayout(
                    **{k: int(o[k]) for k in OutputLayout.__dataclass_fields__ if k != "n_noise"},
                    n_noise=int(o.get("n_noise", 0)),
                ),
                sample_rate=int(d["sample_rate"]),
                hop_size=int(d["hop_size"]),
                level_floor=float(d["level_floor"]),
                noise_edges=tuple(float(e) for e in d.get("noise_edges", ())),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise BundleError(
                f"{where}: missing or malformed field ({type(e).__name__}: {e})"
            ) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelInterface):
            return NotImplemented
        return self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]
