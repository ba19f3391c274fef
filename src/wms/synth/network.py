"""The model as the synthesiser sees it: the contract + an allocation-free GRU step.

:class:`SynthModel` is what synthesis needs from a trained model: the network, its
:class:`~wms.interface.ModelInterface` (controls, pitch mapping, output layout), the
out-of-range rule and the training map (for tours). Build it from a
:class:`wms.bundle.Bundle` with :meth:`SynthModel.from_bundle`, or from a bare
:class:`~wms.training.model.WMSNet` and an interface for tests.

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

from wms.errors import ControlError
from wms.interface import ModelInterface
from wms.synth import kernels
from wms.training.model import WMSNet

OUT_OF_RANGE = ("clamp", "extrapolate")


@dataclass
class SynthModel:
    """A trained network and the contract it was trained under.

    Attributes:
        net: eval-mode WMSNet.
        interface: its :class:`~wms.interface.ModelInterface`.
        out_of_range: ``"clamp"`` (timbre controls to their training ranges, the model's
            pitch input to the training f0 range; the oscillator still plays the requested
            f0) or ``"extrapolate"`` (``synth.out_of_range``).
        training_map: ``{"controls" [M, n_timbre], "f0" [M], "voicedness" [M]}`` or None.
    """

    net: WMSNet
    interface: ModelInterface
    out_of_range: str = "clamp"
    training_map: dict | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.out_of_range not in OUT_OF_RANGE:
            raise ValueError(f"out_of_range = {self.out_of_range!r} is not one of {OUT_OF_RANGE}")
        i = self.interface
        if self.net.n_inputs != i.n_inputs or self.net.n_outputs != i.n_outputs:
            raise ValueError(
                f"network has {self.net.n_inputs} inputs / {self.net.n_outputs} outputs, the "
                f"interface needs {i.n_inputs} / {i.n_outputs}"
            )

    @property
    def control_names(self) -> tuple[str, ...]:
        return self.interface.control_names

    @property
    def control_ranges(self) -> np.ndarray:
        return self.interface.control_ranges

    @property
    def defaults(self) -> np.ndarray:
        """``[n_timbre]`` default control values (training medians)."""
        return self.interface.control_defaults

    @property
    def f0_default(self) -> float:
        return self.interface.f0_default

    @property
    def n_timbre(self) -> int:
        return self.interface.n_timbre

    @property
    def n_inputs(self) -> int:
        return self.interface.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.interface.n_outputs

    @property
    def n_harmonics(self) -> int:
        return self.interface.n_harmonics

    @property
    def pitch_clamp(self) -> tuple[float, float]:
        """``(lo, hi)`` Hz applied to the model's pitch input (infinite when extrapolating)."""
        if self.out_of_range == "clamp":
            return self.interface.f0_range
        return 0.0, float("inf")

    @classmethod
    def from_bundle(cls, bundle, *, out_of_range: str | None = None) -> SynthModel:
        """Build from a loaded :class:`wms.bundle.Bundle` (``out_of_range`` defaults to the
        bundle config's ``synth.out_of_range``)."""
        tm = bundle.training_map
        return cls(
            net=bundle.model,
            interface=bundle.interface,
            out_of_range=out_of_range or bundle.config.synth.out_of_range,
            training_map={
                k: np.asarray(tm[k], np.float64) for k in ("controls", "f0", "voicedness")
            },
        )

    # ------------------------------------------------------------------ controls
    def control_index(self, name: str) -> int:
        """Column of timbre control ``name``; ControlError listing the valid names."""
        try:
            return self.interface.control_index(name)
        except KeyError:
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
        return self.interface.clamp_controls(t) if self.out_of_range == "clamp" else t

    def inputs(self, timbre: np.ndarray, f0: np.ndarray, voicedness: np.ndarray) -> np.ndarray:
        """Model inputs ``[T, D]`` float32 from ``timbre[T, n]`` (range rule applied),
        ``f0[T]`` Hz (clamped to :attr:`pitch_clamp` for the model only), voicedness ``[T]``
        (clipped to 0..1). Same arithmetic as the engine's per-step path (tested)."""
        lo, hi = self.pitch_clamp
        f = np.clip(np.asarray(f0, dtype=np.float64), lo, hi)
        v = np.clip(np.asarray(voicedness, dtype=np.float64), 0.0, 1.0)
        return self.interface.inputs(self.apply_range(np.atleast_2d(timbre)), f, v)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Offline, vectorised: ``inputs[T, D]`` -> outputs ``[T, K]`` (zero initial state)."""
        with torch.inference_mode():
            y, _ = self.net(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[None])
        return y[0].numpy().astype(np.float32)


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
            raise ValueError(f"GRU step of {b} voices exceeds max_batch {self.max_batch}")
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

    def sequence(self, x: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
        """Offline: ``x[T, D]`` from a zero state -> ``y[T, K]`` (same maths as :meth:`step`
        with the per-step matrix products batched over time, ``chunk`` steps at a time so the
        temporaries stay small for an hour-long render)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty((x.shape[0], self.w2.shape[1]), np.float32)
        h = [np.zeros((1, self.hidden), np.float32) for _ in self.layers]
        for a in range(0, x.shape[0], chunk):
            xs = x[a : a + chunk]
            z = xs @ self.we
            kernels.bias_act(z, self.be, 1)
            for (wih, bih, whh, bhh), hl in zip(self.layers, h, strict=True):
                gi = np.ascontiguousarray(z @ wih)
                z = np.empty((xs.shape[0], self.hidden), np.float32)
                kernels.gru_sequence(gi, whh, bih, bhh, hl, z)  # hl carries on to the next chunk
            d1 = z @ self.w1
            kernels.bias_act(d1, self.b1, 1)
            ys = d1 @ self.w2
            kernels.bias_act(ys, self.b2, self._act_code)
            y[a : a + xs.shape[0]] = ys
        return y


# --------------------------------------------------------------------------- what controls do

#: A control whose played change is below this in every part (dB) changes nothing.
NO_EFFECT_DB = 0.5
#: Model steps run at each end of a control's range before its output is read (the GRU
#: settles from its zero state within a few steps).
EFFECT_STEPS = 32


@dataclass(frozen=True)
class ControlEffect:
    """What moving one timbre control from the low to the high end of its range does to
    the sound the synth plays, the other controls at their defaults, at the default pitch
    (:func:`control_effects`; docs/DESIGN.md §1.4).

    The synth normalises each table (noise bands included) to one RMS, so a control is heard
    as a change of balance: ``change_db`` is the change of the played power in three groups
    of harmonics of equal width in log harmonic number (``bands``, first and last harmonic
    of each, up to the output's band limit), the noise in their frequencies included;
    ``noise_db`` is that of the whole noise part (``None`` without one). The kind, in this
    order: ``"none"`` when nothing moves by :data:`NO_EFFECT_DB`; ``"level"`` when every
    part moves one way within a factor ``inputmap.LEVEL_RATIO`` (only where the model's output
    falls below the level floor, which the synth keeps quiet); ``"noise"`` when the noise
    moves more than any group of harmonics; ``"brightness"`` when the top group against the
    bottom one moves more than the middle against the two; else ``"mids"``. PaCMAP
    controls: ``"learnt"``.

    Attributes:
        explained: the share of the training frames' timbre variance along the control
            (PCA), or ``None``.
    """

    name: str
    kind: str
    change_db: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bands: tuple[tuple[int, int], ...] = ((1, 1), (1, 1), (1, 1))
    noise_db: float | None = None
    explained: float | None = None

    @property
    def label(self) -> str:
        """A word or two for a slider, what raising the control does: louder, quieter,
        noisier, cleaner, brighter, darker, mids up, mids down or no effect."""
        from wms.analysis.inputmap import signed_size

        if self.kind in ("none", "learnt"):
            return {"none": "no effect", "learnt": "learnt map"}[self.kind]
        if self.kind == "noise":
            return "noisier" if (self.noise_db or 0.0) > 0 else "cleaner"
        words = {
            "level": ("quieter", "louder"),
            "brightness": ("darker", "brighter"),
            "mids": ("mids down", "mids up"),
        }[self.kind]
        return words[signed_size(self.change_db, self.kind) > 0]

    def __str__(self) -> str:
        """E.g. ``brighter: harmonics 1-5 -3 dB, 6-29 +1 dB, 30-160 +12 dB, noise +2 dB
        (30 % of the timbre variance)``: the change from the low to the high end."""
        if self.kind == "learnt":
            return f"axis {self.name[len('pacmap') :]} of the learnt timbre map (PaCMAP)"
        if self.kind == "none":
            what = "no effect across its range"
        else:
            parts = ", ".join(
                f"{a}-{b} {d:+.0f} dB" if b > a else f"{a} {d:+.0f} dB"
                for (a, b), d in zip(self.bands, self.change_db, strict=True)
            )
            noise = "" if self.noise_db is None else f", noise {self.noise_db:+.0f} dB"
            what = f"{self.label}: harmonics {parts}{noise}"
        if self.explained is not None:
            what += f" ({100 * self.explained:.0f} % of the timbre variance)"
        return what


def _kind(change: tuple[float, float, float], noise: float | None) -> str:
    from wms.analysis.inputmap import balance_kind, moves_as_level

    parts = [*change, *([] if noise is None else [noise])]
    if np.abs(parts).max() < NO_EFFECT_DB:
        return "none"
    if moves_as_level(parts):
        return "level"
    if noise is not None and abs(noise) > np.abs(change).max():
        return "noise"
    return balance_kind(change)


def _db(high: float, low: float) -> float:
    return float(10.0 * np.log10(max(high, 1e-30) / max(low, 1e-30)))


def _played_powers(model: SynthModel, y: np.ndarray, gains: np.ndarray, fades: np.ndarray):
    """Per harmonic and per noise band, the power the engine plays for one output row
    (``kernels.finish_step``: the table and the bands normalised together, quiet rows kept
    quiet), band-limited."""
    from wms.synth.tables import TABLE_RMS

    i = model.interface
    a = i.harmonics(y).astype(np.float64)
    v = i.noise(y).astype(np.float64) if i.n_noise else np.zeros(0)
    r = np.sqrt(0.5 * (np.sum(a * a) + np.sum(v * v)))
    scale = TABLE_RMS / max(r, i.level_floor) if r > 0 else 0.0
    return (a * scale * gains) ** 2, (v * scale * fades) ** 2


def control_effects(bundle) -> list[ControlEffect]:
    """What each timbre control of a loaded :class:`wms.bundle.Bundle` does to the sound
    (:class:`ControlEffect`): the model is run at both ends of the control's range (the
    others at their defaults, at the default pitch, voiced) and the powers the synth plays
    are compared."""
    from wms.synth.tables import BAND_EDGE, band_limit_gain_hz

    model = SynthModel.from_bundle(bundle)
    i, imap, sr = model.interface, bundle.input_map, bundle.config.synth.sample_rate
    names = i.control_names
    if imap.reduction == "pacmap":
        return [ControlEffect(name, "learnt") for name in names]
    explained = (
        [float(v) for v in imap.explained_variance_ratio]
        if imap.reduction == "pca"
        else [None] * len(names)
    )
    f0 = float(i.f0_default)
    h = np.arange(1, i.n_harmonics + 1)
    gains = band_limit_gain_hz(h * f0, 0.5 * sr, BAND_EDGE)
    top = max(int(np.count_nonzero(gains > 0)), 1)  # harmonics the synth plays at f0
    cut = np.geomspace(1.0, top, 4)
    edges = np.unique(np.concatenate([[1], np.floor(cut[1:3]).astype(int) + 1, [top + 1]]))
    groups = [(int(a), int(b) - 1) for a, b in zip(edges[:-1], edges[1:], strict=False)]
    if len(groups) < 3:  # too few harmonics for three: one group, read three times
        groups = [(1, top)] * 3
    fades = np.zeros(i.n_noise)  # each noise band's band limit, as the harmonics'
    # the share of each noise band's power in each group's frequencies (harmonics a..b:
    # (a - 1/2) f0 to (b + 1/2) f0, the top group up to Nyquist): a part is heard as the
    # harmonics and the noise in it together
    share = [np.zeros(i.n_noise) for _ in groups]
    if i.n_noise:
        from wms.noise import band_centres

        e = np.asarray(i.noise_edges, dtype=np.float64)
        fades = band_limit_gain_hz(band_centres(e), 0.5 * sr, BAND_EDGE)
        for g, (a, b) in enumerate(groups):
            lo, hi = (a - 0.5) * f0, (0.5 * sr if g == len(groups) - 1 else (b + 0.5) * f0)
            overlap = np.clip(np.minimum(e[1:], hi) - np.maximum(e[:-1], lo), 0.0, None)
            share[g] = overlap / (e[1:] - e[:-1])
    out = []
    for k, name in enumerate(names):
        ends = []
        for value in i.control_ranges[k]:
            timbre = np.array(i.control_defaults, dtype=np.float64)
            timbre[k] = value
            x = model.inputs(
                np.tile(timbre, (EFFECT_STEPS, 1)),
                np.full(EFFECT_STEPS, f0),
                np.ones(EFFECT_STEPS),
            )
            ends.append(_played_powers(model, model.predict(x)[-1], gains, fades))
        (p_lo, n_lo), (p_hi, n_hi) = ends
        change = tuple(
            _db(p_hi[a - 1 : b].sum() + n_hi @ w, p_lo[a - 1 : b].sum() + n_lo @ w)
            for (a, b), w in zip(groups, share, strict=True)
        )
        noise = _db(n_hi.sum(), n_lo.sum()) if i.n_noise else None
        out.append(
            ControlEffect(name, _kind(change, noise), change, tuple(groups), noise, explained[k])
        )
    return out
