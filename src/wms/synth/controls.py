"""Control sources: what drives the engine, step by step.

A source has ``duration`` (seconds of controls; the render adds the release tail) and
``at_step(engine, k)``, called by :class:`~wms.synth.engine.SynthEngine` at the start of
control step ``k``. Targets set at step ``k`` are reached at the *end* of that step, time
``(k + 1) * L / sr``, when the step's new table has full weight.

- :class:`Trajectory` — one voice following per-step curves (timbre, f0, voicedness,
  level). Built from automation curves (:func:`read_controls_file`, :func:`fixed_curves`),
  from a recording (:func:`audio_trajectory`, timbre transfer) or from generative paths
  (:func:`lorenz_trajectory`, :func:`tour_trajectory`). Its model outputs can be computed
  for the whole render at once (:meth:`Trajectory.precompute`), the offline fast path.
- :class:`MidiSource` — a standard MIDI file: notes, velocity, pitch bend, sustain pedal,
  CCs mapped to timbre controls by ``synth.midi_cc``.

Out-of-range timbre values follow ``synth.out_of_range`` (see SynthModel.apply_range).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wms.config import SynthConfig
from wms.errors import ControlError
from wms.synth.engine import midi_to_hz
from wms.synth.network import SynthModel
from wms.synth.tables import TABLE_RMS

#: Non-timbre control names understood in control files.
SPECIAL_CONTROLS = ("f0", "voicedness", "level")


# --------------------------------------------------------------------------- curves
@dataclass
class Curves:
    """Breakpoint automation: ``name -> (times[s] ascending, values)``, linear in between,
    held before the first and after the last breakpoint.

    ``where`` names the origin (file) for error messages; ``duration`` is the last
    breakpoint time (or the one given)."""

    points: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    where: str = "controls"
    duration: float | None = None

    def end_time(self) -> float:
        if self.duration is not None:
            return self.duration
        ends = [float(t[-1]) for t, _ in self.points.values() if t.size]
        return max(ends) if ends else 0.0

    def check_names(self, model: SynthModel) -> None:
        for name in self.points:
            if name not in SPECIAL_CONTROLS and name not in model.control_names:
                column = "" if self.where == "--control" else "time (the column), "
                raise ControlError(
                    f"{self.where}: unknown control {name!r}; valid names are {column}"
                    f"{', '.join(SPECIAL_CONTROLS)}, {', '.join(model.control_names)}"
                )

    def value(self, name: str, times: np.ndarray, default: float) -> np.ndarray:
        if name not in self.points:
            return np.full(times.shape, float(default))
        t, v = self.points[name]
        return np.interp(times, t, v)


def _breakpoints(where: str, name: str, times: list[float], values: list[float]) -> tuple:
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.size == 0:
        raise ControlError(f"{where}: control {name!r} has no values")
    if np.any(np.diff(t) < 0):
        raise ControlError(f"{where}: times of control {name!r} must not decrease")
    return t, v


def _number(raw, where: str, name: str) -> float:
    if isinstance(raw, bool):
        raise ControlError(f"{where}: field {name!r} = {raw!r} is not a number")
    try:
        x = float(raw)
    except (TypeError, ValueError):
        raise ControlError(f"{where}: field {name!r} = {raw!r} is not a number") from None
    if not math.isfinite(x):
        raise ControlError(f"{where}: field {name!r} = {raw!r} is not finite")
    if name == "time" and x < 0:
        raise ControlError(f"{where}: time = {x} s is negative")
    if name == "f0" and x <= 0:
        raise ControlError(f"{where}: f0 = {x} Hz must be > 0")
    if name == "level" and x < 0:
        raise ControlError(f"{where}: level = {x} must be >= 0")
    return x


def read_controls_file(path: str | Path) -> Curves:
    """Automation curves from CSV or JSON.

    CSV: a header row with ``time`` (seconds) and any of ``f0`` (Hz), ``voicedness``
    (0..1), ``level`` (linear gain) and timbre control names; one breakpoint per row; an
    empty cell means "no breakpoint for this control on this row".

    JSON: either columns ``{"time": [..], "f0": [..] or 220, "mfcc0": [..], ..}`` (a scalar
    is a constant) or rows ``[{"time": 0, "f0": 220}, {"time": 1, "mfcc0": 0.5}, ..]`` (each
    row adds a breakpoint to the controls it names).

    Raises:
        ControlError: missing/unreadable file, malformed content (naming file and line or
            row and field), decreasing times. Unknown names are checked by
            :meth:`Curves.check_names` once the model is known.
    """
    path = Path(path)
    if not path.is_file():
        raise ControlError(f"{path}: controls file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ControlError(f"{path}: cannot read controls file ({e})") from None
    if path.suffix.lower() == ".json":
        return _read_json(path, text)
    return _read_csv(path, text)


def _read_csv(path: Path, text: str) -> Curves:
    rows = list(csv.reader(text.splitlines()))
    if not rows or not any(c.strip() for c in rows[0]):
        raise ControlError(f"{path}:1: empty file; expected a header row such as time,f0,pc0")
    header = [c.strip() for c in rows[0]]
    if "time" not in header:
        raise ControlError(f"{path}:1: header {header} has no 'time' column")
    if len(set(header)) != len(header):
        raise ControlError(f"{path}:1: header {header} repeats a column name")
    cols: dict[str, tuple[list, list]] = {h: ([], []) for h in header if h != "time"}
    ti = header.index("time")
    n_rows = 0
    last_t = -math.inf
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        where = f"{path}:{lineno}"
        if len(row) != len(header):
            raise ControlError(f"{where}: {len(row)} fields, the header has {len(header)}")
        t = _number(row[ti].strip(), where, "time")
        for name, raw in zip(header, row, strict=True):
            if name == "time" or not raw.strip():
                continue
            cols[name][0].append(t)
            cols[name][1].append(_number(raw.strip(), where, name))
        if t < last_t:
            raise ControlError(f"{where}: time {t} is before the previous row's {last_t}")
        last_t = t
        n_rows += 1
    if n_rows == 0:
        raise ControlError(f"{path}: no data rows below the header")
    curves = Curves(where=str(path))
    for name, (t, v) in cols.items():
        if t:
            curves.points[name] = _breakpoints(str(path), name, t, v)
    curves.duration = float(max([t[-1] for t, _ in curves.points.values()], default=0.0))
    return curves


def _read_json(path: Path, text: str) -> Curves:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ControlError(
            f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})"
        ) from None
    curves = Curves(where=str(path))
    if isinstance(data, dict):
        if "time" not in data:
            raise ControlError(f"{path}: the JSON object has no 'time' list")
        times = data["time"]
        if not isinstance(times, list) or not times:
            raise ControlError(f"{path}: 'time' must be a non-empty list of seconds")
        t = [_number(x, f"{path}: time[{i}]", "time") for i, x in enumerate(times)]
        for name, vals in data.items():
            if name == "time":
                continue
            if isinstance(vals, list):
                if len(vals) != len(t):
                    raise ControlError(
                        f"{path}: {name!r} has {len(vals)} values, 'time' has {len(t)}"
                    )
                v = [_number(x, f"{path}: {name}[{i}]", name) for i, x in enumerate(vals)]
                curves.points[name] = _breakpoints(str(path), name, t, v)
            else:
                curves.points[name] = _breakpoints(
                    str(path), name, [t[0]], [_number(vals, f"{path}: {name}", name)]
                )
        curves.duration = float(max(t))
    elif isinstance(data, list):
        cols: dict[str, tuple[list, list]] = {}
        last = -1.0
        for i, row in enumerate(data):
            where = f"{path}: row {i}"
            if not isinstance(row, dict) or "time" not in row:
                raise ControlError(f"{where}: expected an object with a 'time' field")
            t = _number(row["time"], where, "time")
            if t < last:
                raise ControlError(f"{where}: time {t} is before the previous row's {last}")
            last = t
            for name, raw in row.items():
                if name != "time":
                    c = cols.setdefault(name, ([], []))
                    c[0].append(t)
                    c[1].append(_number(raw, where, name))
        if not data:
            raise ControlError(f"{path}: the JSON list holds no rows")
        for name, (t, v) in cols.items():
            curves.points[name] = _breakpoints(str(path), name, t, v)
        curves.duration = last
    else:
        raise ControlError(f"{path}: expected a JSON object of columns or a list of rows")
    return curves


def parse_control_args(items: list[str]) -> dict[str, float]:
    """``["mfcc0=0.5", "f0=220"]`` -> dict; ControlError on malformed items."""
    out = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ControlError(f"--control {item!r}: expected NAME=VALUE, e.g. pc0=0.5")
        out[name.strip()] = _number(raw.strip(), f"--control {item!r}", name.strip())
    return out


def fixed_curves(values: dict[str, float], seconds: float, base: Curves | None = None) -> Curves:
    """Constant controls (over ``base`` curves, if any) lasting ``seconds``."""
    curves = Curves(
        points=dict(base.points) if base else {}, where=base.where if base else "--control"
    )
    for name, v in values.items():
        curves.points[name] = (np.zeros(1), np.array([float(v)]))
    curves.duration = seconds
    return curves


# --------------------------------------------------------------------------- trajectories
@dataclass
class Trajectory:
    """One voice driven by per-step control targets (row ``k`` is reached at the end of
    step ``k``). Arrays: ``timbre[T, n_timbre]``, ``f0[T]`` Hz, ``voicedness[T]``,
    ``level[T]`` (linear gain). ``velocity`` 0..1 of the single note.
    """

    timbre: np.ndarray
    f0: np.ndarray
    voicedness: np.ndarray
    level: np.ndarray
    step_seconds: float
    velocity: float = 1.0
    spectra: np.ndarray | None = None
    voice: int = -1
    _log2_f0: np.ndarray | None = field(default=None, repr=False)
    #: ``(min, max)`` of each timbre control as asked for, before the range rule
    requested: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def n_steps(self) -> int:
        return int(self.f0.shape[0])

    @property
    def duration(self) -> float:
        return self.n_steps * self.step_seconds

    def validate(self, model: SynthModel, sample_rate: int, where: str = "controls") -> None:
        """f0 inside (0, sr/2), finite values; timbre range rule applied in place."""
        nyq = 0.5 * sample_rate
        bad = ~np.isfinite(self.f0) | (self.f0 <= 0) | (self.f0 >= nyq)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ControlError(
                f"{where}: f0 = {self.f0[k]:g} Hz at {(k + 1) * self.step_seconds:.3f} s is out "
                f"of range: need 0 < f0 < {nyq:g} (half the output rate {sample_rate} Hz)"
            )
        for name, a in (("voicedness", self.voicedness), ("level", self.level)):
            if not np.all(np.isfinite(a)):
                raise ControlError(f"{where}: {name} holds NaN or infinite values")
        t = np.asarray(self.timbre, dtype=np.float64)
        if t.size:
            self.requested = (t.min(axis=0), t.max(axis=0))
        self.timbre = model.apply_range(self.timbre)
        self._log2_f0 = np.log2(self.f0)

    def precompute(
        self, model: SynthModel, n_steps: int, glide_coef: float = 0.0, predict=None
    ) -> None:
        """Offline fast path: the model's outputs for ``n_steps`` steps (controls held after
        the end) in one vectorised pass (``predict(x[T, D]) -> y[T, K]``, default
        ``model.predict``); the engine then reads them instead of stepping the GRU. Same
        inputs as the engine's per-step path (tested)."""
        idx = np.minimum(np.arange(n_steps), self.n_steps - 1)
        lf = np.log2(self.f0[idx])
        if glide_coef > 0:
            cur = lf[0]
            for i in range(n_steps):
                cur = lf[i] + (cur - lf[i]) * glide_coef
                lf[i] = cur
        x = model.inputs(self.timbre[idx], 2.0**lf, self.voicedness[idx])
        self.spectra = (predict or model.predict)(x)

    def at_step(self, engine, k: int) -> None:
        if k == 0:
            self._log2_f0 = np.log2(np.asarray(self.f0, dtype=np.float64))
            self.voice = engine.note_on(float(self.f0[0]), self.velocity, spectra=self.spectra)
            engine.set_timbre(self.timbre[0])
        if k < self.n_steps:
            # validated once in validate(); per-step writes stay cheap
            engine.load_voice(self.voice, self._log2_f0[k], self.voicedness[k], self.level[k])
            engine.load_timbre(self.timbre[k])
        elif k == self.n_steps:
            engine.note_off(self.voice)


def step_times(duration: float, step_seconds: float) -> np.ndarray:
    """End times ``(k + 1) * step`` of the ``ceil(duration / step)`` control steps."""
    n = max(1, math.ceil(duration / step_seconds - 1e-9))
    return (np.arange(n) + 1.0) * step_seconds


def curves_trajectory(
    curves: Curves,
    model: SynthModel,
    *,
    sample_rate: int,
    step_seconds: float,
    f0: float | None = None,
) -> Trajectory:
    """Sample automation curves at the control steps; missing controls take their default
    (timbre: training-map median; f0: ``f0`` or the median training f0; voicedness 1;
    level 1)."""
    curves.check_names(model)
    dur = curves.end_time()
    if not dur > 0:
        raise ControlError(f"{curves.where}: duration is {dur} s; give --seconds or later times")
    t = step_times(dur, step_seconds)
    timbre = np.stack(
        [curves.value(n, t, model.defaults[i]) for i, n in enumerate(model.control_names)], axis=1
    )
    traj = Trajectory(
        timbre=timbre,
        f0=curves.value("f0", t, f0 or model.f0_default),
        voicedness=curves.value("voicedness", t, 1.0),
        level=curves.value("level", t, 1.0),
        step_seconds=step_seconds,
    )
    traj.validate(model, sample_rate, curves.where)
    return traj


def audio_trajectory(
    bundle,
    y: np.ndarray,
    *,
    audio_rate: int,
    model: SynthModel,
    sample_rate: int,
    step_seconds: float,
    where: str = "audio",
    voicing_threshold: float = 0.5,
) -> Trajectory:
    """Timbre transfer: analyse ``y`` (mono, ``audio_rate`` Hz) with
    ``bundle.inputs_from_audio`` and follow its timbre, f0 and loudness.

    Level follows the input's RMS over a window centred on each control time
    (:func:`level_half_window`: whole cycles of the step's f0, 20 ms at least), divided by
    ``TABLE_RMS``, so the output RMS
    matches the input's times envelope, velocity and ``synth.gain``. A harmonics-only model
    is gated by voicedness, ``clip((v - (threshold - 0.15)) / 0.3, 0, 1)``: it could play an
    unvoiced frame only as a tone at a held pitch. A model with a noise part is not: it was
    trained on the unvoiced frames (consonants, breath, a noise floor) with their voicedness
    as an input, and plays them as noise (docs/DESIGN.md §1.7). Frames (centred at
    ``i * hop``) are linearly interpolated to the control steps.
    """
    inputs, f0, voiced = bundle.inputs_from_audio(y, audio_rate)
    inputs, f0, voiced = (np.asarray(a, dtype=np.float64) for a in (inputs, f0, voiced))
    cfg = bundle.config
    frame_t = np.arange(inputs.shape[0]) * (cfg.features.hop_size / cfg.audio.sample_rate)
    dur = len(y) / audio_rate
    t = step_times(dur, step_seconds)
    nt = model.n_timbre
    timbre = np.stack([np.interp(t, frame_t, inputs[:, i]) for i in range(nt)], axis=1)
    v = np.interp(t, frame_t, voiced)
    if model.interface.outputs.n_noise:
        gate = np.ones_like(v)
    else:
        gate = np.clip((v - (voicing_threshold - 0.15)) / 0.3, 0.0, 1.0)
    nyq = 0.5 * sample_rate
    f = np.clip(np.interp(t, frame_t, f0), 1.0, nyq * 0.999)
    level = window_rms(y, audio_rate, t, level_half_window(f, cfg)) / TABLE_RMS * gate
    traj = Trajectory(timbre, f, v, level, step_seconds)
    traj.validate(model, sample_rate, where)
    return traj


#: The level follower's shortest window, in seconds (20 ms: a control step and a bit).
LEVEL_MIN_WINDOW = 0.020


def level_half_window(f0: np.ndarray, cfg) -> np.ndarray:
    """Half the window (seconds) over which timbre transfer reads the input's level at each
    step: the fewest multiples of ``N`` cycles of the step's f0 that last
    :data:`LEVEL_MIN_WINDOW` (a whole number of periods: no ripple on a steady tone), at most
    the analysis window. An onset is then heard at most that half window early, where the
    analysis window (93 ms at 44.1 kHz) had put a quiet passage's level 26 dB up at a loud
    note's onset."""
    longest = cfg.features.window_size / cfg.audio.sample_rate
    f0 = np.asarray(f0, dtype=np.float64)
    n = cfg.features.cycles_per_window
    cycles = n * np.maximum(1.0, np.ceil(LEVEL_MIN_WINDOW * f0 / n))
    return 0.5 * np.minimum(cycles / f0, longest)


def window_rms(
    y: np.ndarray, sample_rate: int, times: np.ndarray, half: float | np.ndarray
) -> np.ndarray:
    """RMS of ``y`` over ``[t - half, t + half]`` seconds for each ``t`` in ``times`` (``half``
    one value or one per time; zero-padded outside the signal). Sample ``i`` holds
    ``[i, i + 1)``, and a window's ends cut samples in proportion, so the window lasts
    exactly ``2 half`` (whole periods of a tone then hold no ripple)."""
    y2 = np.square(np.asarray(y, dtype=np.float64))
    c = np.concatenate([[0.0], np.cumsum(y2)])

    def energy_before(x: np.ndarray) -> np.ndarray:  # the integral of y^2 over [0, x)
        x = np.clip(x, 0.0, float(y2.size))
        i = np.minimum(np.floor(x).astype(np.int64), max(y2.size - 1, 0))
        return c[i] + (x - i) * (y2[i] if y2.size else 0.0)

    half = np.asarray(half, dtype=np.float64)
    e = energy_before((times + half) * sample_rate) - energy_before((times - half) * sample_rate)
    return np.sqrt(np.maximum(e, 0.0) / np.maximum(1.0, 2 * half * sample_rate))


def _map_unit(u: np.ndarray, model: SynthModel) -> np.ndarray:
    lo, hi = model.control_ranges[:, 0], model.control_ranges[:, 1]
    return lo + np.clip(u, 0.0, 1.0) * (hi - lo)


def lorenz_trajectory(
    model: SynthModel,
    *,
    seconds: float,
    f0: float | None,
    sample_rate: int,
    step_seconds: float,
    seed: int = 0,
    rate: float = 0.5,
) -> Trajectory:
    """Timbre following the Lorenz attractor (sigma 10, rho 28, beta 8/3).

    ``rate`` attractor time units per second of audio (0.5: a loop around one lobe takes
    about 1.5 s), integrated with RK4 in sub-steps of at most 0.005 units; the start point
    is seeded and moved onto the attractor first. Coordinates are mapped into the control
    ranges with the attractor's bounds (x, y in [-22, 22], z in [2, 50]); with more than 3
    controls, control ``i`` uses coordinate ``i % 3`` delayed by ``i // 3`` seconds.
    """
    t = step_times(seconds, step_seconds)
    rng = np.random.default_rng(seed)
    delay_steps = int(round(1.0 / step_seconds))
    n_timbre = model.n_timbre
    n = t.size + delay_steps * ((n_timbre - 1) // 3)
    dt_step = rate * step_seconds
    sub = max(1, math.ceil(dt_step / 0.005))
    dt = dt_step / sub

    def deriv(p):
        x, y, z = p
        return np.array([10.0 * (y - x), x * (28.0 - z) - y, x * y - 8.0 / 3.0 * z])

    def rk4(s):
        k1 = deriv(s)
        k2 = deriv(s + 0.5 * dt * k1)
        k3 = deriv(s + 0.5 * dt * k2)
        k4 = deriv(s + dt * k3)
        return s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

    s = np.array([1.0, 1.0, 20.0]) + rng.normal(0, 1.0, 3)
    for _ in range(2000):  # 10 time units: onto the attractor
        s = rk4(s)
    path = np.empty((n, 3))
    for i in range(n):
        for _ in range(sub):
            s = rk4(s)
        path[i] = s
    unit = np.stack([(path[:, 0] + 22) / 44, (path[:, 1] + 22) / 44, (path[:, 2] - 2) / 48], axis=1)
    cols = []
    for i in range(n_timbre):
        d = delay_steps * (i // 3)
        cols.append(unit[d : d + t.size, i % 3])
    timbre = _map_unit(np.stack(cols, axis=1), model)
    traj = Trajectory(
        timbre,
        np.full(t.size, f0 or model.f0_default),
        np.ones(t.size),
        np.ones(t.size),
        step_seconds,
    )
    traj.validate(model, sample_rate, "--path lorenz")
    return traj


def farthest_points(points: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` farthest-point samples of ``points[M, d]`` (seeded first point),
    reordered into a greedy nearest-neighbour tour so successive stops are close."""
    m = points.shape[0]
    k = min(k, m)
    rng = np.random.default_rng(seed)
    scale = points.std(axis=0) + 1e-12
    p = points / scale
    chosen = [int(rng.integers(m))]
    d = np.linalg.norm(p - p[chosen[0]], axis=1)
    for _ in range(k - 1):
        j = int(np.argmax(d))
        chosen.append(j)
        d = np.minimum(d, np.linalg.norm(p - p[j], axis=1))
    order = [chosen[0]]
    rest = chosen[1:]
    while rest:
        last = p[order[-1]]
        j = min(range(len(rest)), key=lambda i: float(np.linalg.norm(p[rest[i]] - last)))
        order.append(rest.pop(j))
    return np.asarray(order)


def tour_trajectory(
    model: SynthModel,
    *,
    seconds: float,
    f0: float | None,
    sample_rate: int,
    step_seconds: float,
    seed: int = 0,
    seconds_per_stop: float = 2.0,
) -> Trajectory:
    """A tour of the training data: stops chosen by farthest-point sampling of the
    training map's controls (one per ``seconds_per_stop``), visited in nearest-neighbour
    order. Each leg holds the stop for 40 % of its time and moves to the next with a
    smoothstep ease (C1, no jumps). Pitch is ``f0`` if given, else each stop's own
    training f0 (interpolated in log frequency).
    """
    tm = model.training_map
    if tm is None or tm.get("controls") is None or len(tm["controls"]) == 0:
        raise ControlError("--path tour: this bundle holds no training map to tour")
    pts = np.asarray(tm["controls"], dtype=np.float64)
    n_stops = max(2, int(round(seconds / seconds_per_stop)))
    order = farthest_points(pts, n_stops, seed)
    stops = pts[order]
    stop_f0 = (
        np.asarray(tm["f0"], dtype=np.float64)[order] if f0 is None else np.full(len(order), f0)
    )
    t = step_times(seconds, step_seconds)
    leg = seconds / len(order)
    pos = np.clip(t / leg, 0, len(order) - 1e-9)
    i = np.minimum(pos.astype(int), len(order) - 1)
    j = np.minimum(i + 1, len(order) - 1)
    u = np.clip((pos - i - 0.4) / 0.6, 0.0, 1.0)
    w = (u * u * (3 - 2 * u))[:, None]
    timbre = stops[i] * (1 - w) + stops[j] * w
    lf = np.log(stop_f0[i]) * (1 - w[:, 0]) + np.log(stop_f0[j]) * w[:, 0]
    traj = Trajectory(timbre, np.exp(lf), np.ones(t.size), np.ones(t.size), step_seconds)
    traj.validate(model, sample_rate, "--path tour")
    return traj


# --------------------------------------------------------------------------- MIDI
@dataclass
class MidiEvent:
    time: float  # seconds
    kind: str  # "on", "off", "bend", "cc", "pedal"
    a: float = 0.0
    b: float = 0.0


class MidiSource:
    """Plays a standard MIDI file (all channels merged).

    Note on/off (velocity / 127 as linear gain), pitch bend (+-``synth.pitch_bend_range``
    semitones, global), sustain pedal (CC 64: note-offs wait while it is down), CCs mapped to
    timbre controls by ``synth.midi_cc`` (``{"1" = "mfcc0"}``; value 0..127 ->
    ``control_ranges`` linearly). Note on/off events are sample-accurate (a new voice's onset
    and a release start at the event's own sample); bend, CC and pedal changes apply at the
    start of the control step that contains them (control rate, ``synth.control_interval``).
    Notes still held at the
    end of the file (or at ``seconds``, if given and earlier) are released there.

    Raises:
        ControlError: missing or malformed file, type-2 file, no notes, a ``midi_cc`` entry
            naming an unknown control or a CC number outside 0..127.
    """

    def __init__(
        self,
        path: str | Path,
        model: SynthModel,
        config: SynthConfig,
        *,
        seconds: float | None = None,
    ):
        import mido

        path = Path(path)
        self.where = str(path)
        if not path.is_file():
            raise ControlError(f"{path}: MIDI file not found")
        self.cc_map: dict[int, int] = {}
        for cc, name in config.midi_cc.items():
            try:
                num = int(cc)
            except ValueError:
                raise ControlError(f"synth.midi_cc: key {cc!r} is not a CC number") from None
            if not 0 <= num <= 127:
                raise ControlError(f"synth.midi_cc: CC {num} is outside 0..127")
            self.cc_map[num] = model.control_index(name)
        if path.stat().st_size == 0:
            raise ControlError(f"{path}: an empty file (0 bytes), not a standard MIDI file")
        try:
            mid = mido.MidiFile(str(path))
            msgs = list(mid)  # merged tracks, times in seconds (tempo applied)
        except EOFError:
            raise ControlError(
                f"{path}: not a readable standard MIDI file (it ends in the middle of a track: "
                "truncated?)"
            ) from None
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            why = str(e) or type(e).__name__
            raise ControlError(f"{path}: not a readable standard MIDI file ({why})") from None
        events: list[MidiEvent] = []
        now = 0.0
        for msg in msgs:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                events.append(MidiEvent(now, "on", msg.note, msg.velocity / 127.0))
            elif msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0):
                events.append(MidiEvent(now, "off", msg.note))
            elif msg.type == "pitchwheel":
                events.append(
                    MidiEvent(now, "bend", msg.pitch / (8192.0 if msg.pitch < 0 else 8191.0))
                )
            elif msg.type == "control_change":
                if msg.control == 64:
                    events.append(MidiEvent(now, "pedal", float(msg.value >= 64)))
                elif msg.control in (120, 123):
                    events.append(MidiEvent(now, "alloff"))
                elif msg.control in self.cc_map:
                    events.append(MidiEvent(now, "cc", self.cc_map[msg.control], msg.value / 127.0))
        if not any(e.kind == "on" for e in events):
            raise ControlError(f"{path}: the file holds no notes")
        self.events = events
        # ``seconds`` cuts the file short: notes still held then are released
        self.duration = now if seconds is None else min(now, float(seconds))
        self.model = model
        self._ptr = 0
        self._pedal = False
        self._held: set[int] = set()
        self._down: set[int] = set()  # notes between their on and off (bend check)
        self._bend_warned = False
        self._ended = False

    def _check_bend(self, semis: float, time: float, sr: int) -> None:
        """Warn once when a bend takes a held note to or above half the output rate (the
        synth then plays nothing of it: no harmonic fits)."""
        if self._bend_warned or not self._down:
            return
        note = max(self._down | self._held)
        f = midi_to_hz(note + semis)
        if f >= 0.5 * sr:
            self._bend_warned = True
            print(
                f"warning: {self.where}: the pitch bend at {time:.3f} s takes note {note} to "
                f"{f:.0f} Hz, at or above half the output rate ({0.5 * sr:g} Hz): it is silent "
                "while bent; use a higher --sr or a smaller synth.pitch_bend_range",
                file=sys.stderr,
            )

    def at_step(self, engine, k: int) -> None:
        sr, step_len = engine.sample_rate, engine.step_len
        end = (k + 1) * step_len / sr
        ev = self.events
        while (
            self._ptr < len(ev) and ev[self._ptr].time < end and ev[self._ptr].time <= self.duration
        ):
            e = ev[self._ptr]
            self._ptr += 1
            # notes start and stop at their own sample inside the step; the rest is control-rate
            offset = min(max(round(e.time * sr) - k * step_len, 0), step_len - 1)
            if e.kind == "on":
                self._held.discard(int(e.a))
                f = midi_to_hz(e.a)
                if f >= 0.5 * sr:
                    raise ControlError(
                        f"{self.where}: note {int(e.a)} at {e.time:.3f} s plays {f:.0f} Hz, at or "
                        f"above half the output rate ({0.5 * sr:g} Hz); use a higher --sr"
                    )
                engine.note_on(f, e.b, note=int(e.a), delay=offset)
                self._down.add(int(e.a))
            elif e.kind == "off":
                self._down.discard(int(e.a))
                if self._pedal:
                    self._held.add(int(e.a))
                else:
                    engine.note_off(note=int(e.a), delay=offset)
            elif e.kind == "bend":
                semis = e.a * engine.config.pitch_bend_range
                engine.set_pitch_bend(semis)
                self._check_bend(semis, e.time, sr)
            elif e.kind == "cc":
                i = int(e.a)
                lo, hi = self.model.control_ranges[i]
                engine.set_control(self.model.control_names[i], lo + e.b * (hi - lo))
            elif e.kind == "pedal":
                self._pedal = bool(e.a)
                if not self._pedal:
                    for note in sorted(self._held):
                        engine.note_off(note=note, delay=offset)
                    self._held.clear()
            elif e.kind == "alloff":
                engine.all_notes_off()
        if end >= self.duration and not self._ended:
            self._ended = True
            engine.all_notes_off(
                delay=min(max(round(self.duration * sr) - k * step_len, 0), step_len - 1)
            )
