"""The model as the synthesiser sees it: control mapping + an allocation-free GRU step.

:class:`SynthModel` bundles what synthesis needs from a trained model (the network, the
control names/ranges/defaults, the pitch mapping, N and K). It is built from a
:class:`wms.bundle.Bundle` with :meth:`SynthModel.from_bundle`, or from a bare
:class:`~wms.training.model.WMSNet` for tests.

:class:`GRUStepper` runs one recurrent step of :class:`~wms.training.model.WMSNet` for a batch of
voices in NumPy with preallocated buffers (``np.dot(..., out=)`` and in-place ufuncs): a
streaming block allocates nothing, and a hidden-256 step costs about half of a PyTorch
``WMSNet.step`` call; element-wise work is fused in numba kernels. :meth:`GRUStepper.sequence`
runs a whole control sequence (offline fast path), batching the input and output layers
over time. Both match ``WMSNet`` to float32 rounding (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from wms.analysis.features import log_pitch
from wms.errors import ControlError
from wms.synth import kernels
from wms.synth.tables import n_harmonics
from wms.training.model import WMSNet


@dataclass
class SynthModel:
    """A trained network plus the control-space facts synthesis needs.

    Attributes:
        net: eval-mode WMSNet, inputs ``[timbre..., log_pitch, (voicedness)]``.
        control_names: timbre control names, e.g. ``("mfcc0", ..)`` or ``("pc0", ..)``.
        control_ranges: ``[n_timbre, 2]`` training range (1st/99th percentile).
        defaults: ``[n_timbre]`` default control values (training-map median).
        fmin: Hz, the pitch mapping's floor (``pitch.fmin``).
        include_voicedness: the last model input is voicedness.
        cycles: N, cycles per analysis window; n_bins: K, model outputs.
        f0_default: Hz, default pitch (median voiced training f0).
        f0_range: ``(lo, hi)`` Hz of training pitches; under ``out_of_range = "clamp"``
            the model's pitch *input* is clamped to it (the oscillator still plays the
            requested f0).
        out_of_range: ``"clamp"`` or ``"extrapolate"`` (``synth.out_of_range``).
        training_map: dict with ``controls [M, n_timbre]``, ``f0 [M]``, ``voicedness [M]``
            (or None).
    """

    net: WMSNet
    control_names: tuple[str, ...]
    control_ranges: np.ndarray
    defaults: np.ndarray
    fmin: float
    include_voicedness: bool
    cycles: int
    n_bins: int
    f0_default: float = 220.0
    f0_range: tuple[float, float] | None = None
    out_of_range: str = "clamp"
    training_map: dict | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.control_names = tuple(self.control_names)
        self.control_ranges = np.asarray(self.control_ranges, dtype=np.float64).reshape(-1, 2)
        self.defaults = np.asarray(self.defaults, dtype=np.float64).reshape(-1)
        n = len(self.control_names)
        if self.control_ranges.shape[0] != n or self.defaults.shape[0] != n:
            raise ControlError(
                f"control ranges {self.control_ranges.shape} / defaults {self.defaults.shape} "
                f"do not match {n} control names"
            )
        if self.out_of_range not in ("clamp", "extrapolate"):
            raise ControlError(
                f"synth.out_of_range = {self.out_of_range!r} is not one of clamp, extrapolate"
            )
        d = n + 1 + int(self.include_voicedness)
        if self.net.n_inputs != d or self.net.n_outputs != self.n_bins:
            raise ControlError(
                f"network has {self.net.n_inputs} inputs / {self.net.n_outputs} outputs, the "
                f"control map needs {d} inputs / {self.n_bins} outputs"
            )
        self.n_harmonics = n_harmonics(self.n_bins, self.cycles)

    @property
    def n_timbre(self) -> int:
        return len(self.control_names)

    @property
    def n_inputs(self) -> int:
        return self.n_timbre + 1 + int(self.include_voicedness)

    @property
    def pitch_clamp(self) -> tuple[float, float]:
        """``(lo, hi)`` Hz applied to the model's pitch input (infinite when extrapolating)."""
        if self.out_of_range == "clamp" and self.f0_range is not None:
            return float(self.f0_range[0]), float(self.f0_range[1])
        return 0.0, float("inf")

    @classmethod
    def from_bundle(cls, bundle, *, out_of_range: str | None = None) -> SynthModel:
        """Build from a loaded :class:`wms.bundle.Bundle` (``out_of_range`` defaults to the
        bundle config's ``synth.out_of_range``)."""
        imap, cfg = bundle.input_map, bundle.config
        names = tuple(bundle.control_names)
        ranges = np.asarray(bundle.control_ranges, dtype=np.float64)
        tm = dict(bundle.training_map or {})
        controls = _training_controls(tm, names)
        defaults = np.median(controls, axis=0) if controls is not None else ranges.mean(axis=1)
        f0 = np.asarray(tm.get("f0", []), dtype=np.float64).reshape(-1)
        v = np.asarray(tm.get("voicedness", np.ones_like(f0)), dtype=np.float64).reshape(-1)
        voiced = f0[(v >= cfg.pitch.voicing_threshold) & np.isfinite(f0)] if f0.size else f0
        f0_default = float(np.median(voiced)) if voiced.size else 220.0
        f0_range = getattr(imap, "f0_range", None)
        if f0_range is None and voiced.size:
            f0_range = np.percentile(voiced, [1.0, 99.0])
        if f0_range is None:
            f0_range = (cfg.pitch.fmin, cfg.pitch.fmax)
        return cls(
            net=bundle.model,
            control_names=names,
            control_ranges=ranges,
            defaults=defaults,
            fmin=float(imap.fmin),
            include_voicedness=bool(imap.include_voicedness),
            cycles=int(cfg.features.bins_per_harmonic),
            n_bins=int(cfg.features.n_bins),
            f0_default=f0_default,
            f0_range=(float(f0_range[0]), float(f0_range[1])),
            out_of_range=out_of_range or cfg.synth.out_of_range,
            training_map={"controls": controls, "f0": f0, "voicedness": v}
            if controls is not None
            else None,
        )

    # ------------------------------------------------------------------ controls
    def control_index(self, name: str) -> int:
        """Column of timbre control ``name``; ControlError listing the valid names."""
        try:
            return self.control_names.index(name)
        except ValueError:
            raise ControlError(
                f"unknown control {name!r}; valid controls are {', '.join(self.control_names)} "
                "(plus f0 and voicedness)"
            ) from None

    def apply_range(self, timbre: np.ndarray) -> np.ndarray:
        """The out-of-range rule on ``timbre[..., n_timbre]``: clamp to ``control_ranges``
        (``"clamp"``) or pass through (``"extrapolate"``). Non-finite values raise."""
        t = np.asarray(timbre, dtype=np.float64)
        if not np.all(np.isfinite(t)):
            raise ControlError("timbre controls hold NaN or infinite values")
        if self.out_of_range == "clamp":
            t = np.clip(t, self.control_ranges[:, 0], self.control_ranges[:, 1])
        return t

    def inputs(self, timbre: np.ndarray, f0: np.ndarray, voicedness: np.ndarray) -> np.ndarray:
        """Model inputs ``[T, D]`` float32 from ``timbre[T, n]`` (range rule applied),
        ``f0[T]`` Hz (clamped to :attr:`pitch_clamp` for the model only), voicedness ``[T]``.
        Same arithmetic as the engine's per-step path."""
        t = self.apply_range(np.atleast_2d(timbre))
        lo, hi = self.pitch_clamp
        f = np.clip(np.asarray(f0, dtype=np.float64), lo, hi)
        cols = [t, log_pitch(f, self.fmin)[:, None]]
        if self.include_voicedness:
            cols.append(np.clip(np.asarray(voicedness, dtype=np.float64), 0.0, 1.0)[:, None])
        return np.concatenate(cols, axis=1).astype(np.float32)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Offline, vectorised: ``inputs[T, D]`` -> log1p spectra ``[T, K]`` (zero initial state)."""
        with torch.inference_mode():
            y, _ = self.net(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[None])
        return y[0].numpy().astype(np.float32)


def _training_controls(tm: dict, names: tuple[str, ...]) -> np.ndarray | None:
    """``[M, n_timbre]`` training-map controls, stored either as one array or per name."""
    for key in ("controls", "timbre"):
        if key in tm:
            c = np.asarray(tm[key], dtype=np.float64)
            return c.reshape(c.shape[0], -1) if c.size else None
    if names and all(n in tm for n in names):
        return np.stack([np.asarray(tm[n], dtype=np.float64) for n in names], axis=1)
    return None


class GRUStepper:
    """Allocation-free batched ``WMSNet.step`` in NumPy (float32).

    Args:
        net: the network (weights are copied; later changes to ``net`` are not seen).
        max_batch: largest batch (voices) a step will be asked for.

    ``step(x[B, D], h[L, B, H]) -> y[B, K]`` updates ``h`` in place and returns a view of
    an internal buffer (valid until the next call). ``x`` and ``h[l]`` must be C-contiguous
    float32 (views of the first ``B`` rows of a buffer are).
    """

    def __init__(self, net: WMSNet, max_batch: int):
        sd = {k: v.detach().cpu().to(torch.float32).numpy() for k, v in net.state_dict().items()}

        def t(w: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(w.T)

        self.n_layers, self.hidden = net.num_layers, net.hidden_size
        self._act_code = {"none": 0, "relu": 1, "softplus": 2}[net.output_activation]
        self.we, self.be = t(sd["input_encoder.0.weight"]), sd["input_encoder.0.bias"].copy()
        self.layers = [
            (
                t(sd[f"gru.weight_ih_l{i}"]),
                sd[f"gru.bias_ih_l{i}"].copy(),
                t(sd[f"gru.weight_hh_l{i}"]),
                sd[f"gru.bias_hh_l{i}"].copy(),
            )
            for i in range(self.n_layers)
        ]
        self.w1, self.b1 = t(sd["dense_layers.0.weight"]), sd["dense_layers.0.bias"].copy()
        self.w2, self.b2 = t(sd["dense_layers.2.weight"]), sd["dense_layers.2.bias"].copy()
        b, hs = max_batch, self.hidden
        f32 = np.float32
        self.max_batch = max_batch
        self._enc = np.zeros((b, self.we.shape[1]), f32)
        self._gi = np.zeros((b, 3 * hs), f32)
        self._gh = np.zeros((b, 3 * hs), f32)
        self._d1 = np.zeros((b, hs), f32)
        self._y = np.zeros((b, self.w2.shape[1]), f32)

    def step(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        b = x.shape[0]
        if b > self.max_batch:
            raise ControlError(f"GRU step of {b} voices exceeds max_batch {self.max_batch}")
        enc = self._enc[:b]
        np.dot(x, self.we, out=enc)
        kernels.bias_act(enc, self.be, 1)
        inp = enc
        gi, gh = self._gi[:b], self._gh[:b]
        for layer, (wih, bih, whh, bhh) in enumerate(self.layers):
            hl = h[layer]
            np.dot(inp, wih, out=gi)
            np.dot(hl, whh, out=gh)
            kernels.gru_gates(gi, gh, bih, bhh, hl)
            inp = hl
        d1, y = self._d1[:b], self._y[:b]
        np.dot(inp, self.w1, out=d1)
        kernels.bias_act(d1, self.b1, 1)
        np.dot(d1, self.w2, out=y)
        kernels.bias_act(y, self.b2, self._act_code)
        return y

    def sequence(self, x: np.ndarray) -> np.ndarray:
        """Offline: ``x[T, D]`` from a zero state -> ``y[T, K]`` (allocates; same maths as
        :meth:`step` with the per-step matrix products batched over time)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        t = x.shape[0]
        z = x @ self.we
        kernels.bias_act(z, self.be, 1)
        for wih, bih, whh, bhh in self.layers:
            gi = np.ascontiguousarray(z @ wih)
            z = np.empty((t, self.hidden), np.float32)
            kernels.gru_sequence(gi, whh, bih, bhh, np.zeros((1, self.hidden), np.float32), z)
        d1 = z @ self.w1
        kernels.bias_act(d1, self.b1, 1)
        y = d1 @ self.w2
        kernels.bias_act(y, self.b2, self._act_code)
        return y
