"""The streaming synthesis engine: one class, used offline and live.

:class:`SynthEngine` keeps every voice's state between blocks (phase, envelope, GRU state,
the two tables of the current control step) and renders with ``process(n)``. Time is cut
into control steps of ``L = round(synth.control_interval * sample_rate)`` samples; at each
step boundary the engine

1. lets the control source (if any) apply its events for this step,
2. runs one batched GRU step for all playing voices (or reads their precomputed spectra),
3. turns the outputs into harmonic amplitudes, normalises them, band-limits them for the
   highest f0 the voice reaches (this step and, predicted, the next) and builds the voice's
   new table (last step's new table becomes this step's previous one),

then renders the step's samples in numba kernels (:mod:`wms.synth.kernels`): both tables are
read at the same phase and crossfaded linearly (see docs/SYNTH.md for why this is click-free
and amplitude-stable). Control changes (``note_on``, ``set_timbre``, ...) made between blocks
take effect at the next step boundary. ``process`` allocates nothing: all buffers are made in
``__init__``.
"""

from __future__ import annotations

import math

import numpy as np

from wms.config import SynthConfig, check_section
from wms.errors import ConfigError, ControlError
from wms.noise import band_filters, noise_seed
from wms.synth import kernels as K
from wms.synth.network import GRUStepper, SynthModel
from wms.synth.tables import BAND_EDGE, TABLE_RMS, cosine_basis

#: Output rates the engine accepts, in Hz (inclusive).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
#: Samples beyond this magnitude are soft-limited (safety only; see kernels.finish_block).
LIMIT_KNEE = 0.9


def check_sample_rate(sample_rate) -> int:
    """An integer output rate in ``[8000, 192000]`` Hz, else ConfigError."""
    ok = isinstance(sample_rate, (int, np.integer, float)) and not isinstance(sample_rate, bool)
    if ok:
        ok = math.isfinite(sample_rate) and float(sample_rate).is_integer()
    if not ok or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ConfigError(
            f"output sample rate {sample_rate!r} is not supported; use a whole number of Hz "
            f"from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} (e.g. 16000, 44100, 48000, 96000)"
        )
    return int(sample_rate)


def midi_to_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


class SynthEngine:
    """Polyphonic streaming WMS synthesiser.

    Args:
        model: the :class:`SynthModel` (network + control map).
        sample_rate: output rate in Hz (8000..192000, integer), independent of the
            analysis rate (tables are pitch-normalised).
        config: ``synth`` settings (voices, ADSR, glide, pitch_bend_range, gain, ...).
        source: optional control source; ``source.at_step(engine, k)`` is called at the
            start of every control step ``k`` (0, 1, ...).
        max_block: largest ``n`` accepted by :meth:`process`.

    Raises:
        ConfigError: unsupported sample rate or settings.
    """

    def __init__(
        self,
        model: SynthModel,
        *,
        sample_rate: int,
        config: SynthConfig | None = None,
        source=None,
        max_block: int = 8192,
    ):
        cfg = config or SynthConfig()
        check_section("synth", cfg, source="engine")
        self.model, self.config, self.source = model, cfg, source
        self._interface = model.interface
        self.sample_rate = sr = check_sample_rate(sample_rate)
        self.step_len = max(1, round(cfg.control_interval * sr))
        self.n_voices = v = int(cfg.voices)
        self.table_size = s = int(cfg.table_size)
        self.max_block = int(max_block)
        self.n_harm = hm = model.n_harmonics
        self._basis = cosine_basis(hm, s, cfg.phases)
        self._stepper = GRUStepper(model.net, v)
        f32, f64 = np.float32, np.float64
        nl, hid = model.net.num_layers, model.net.hidden_size

        # per voice (slot order); field rows are named in kernels (LOGF, PHASE, STAGE, ...)
        self._h = np.zeros((nl, v, hid), f32)
        self._vf = np.zeros((K.N_FIELDS, v), f64)
        self._vf[K.VOICED] = self._vf[K.LEVEL] = self._vf[K.LEVEL_TARGET] = 1.0
        self._vi = np.zeros((K.N_IFIELDS, v), np.int64)
        self._amps_prev = np.zeros((v, hm), f32)
        self._amps_next = np.zeros((v, hm), f32)
        self._note = np.full(v, -1, np.int64)
        self._age = np.zeros(v, np.int64)  # note_on order (larger = younger)
        self._released_at = np.zeros(v, np.int64)
        self._spectra: list[np.ndarray | None] = [None] * v
        self._spec_pos = [0] * v

        # per step (position q in the playing list)
        self._idx = np.zeros(v, np.int64)
        self._nv = 0
        self._x = np.zeros((v, model.n_inputs), f32)
        self._hb = np.zeros((nl, v, hid), f32)
        self._y = np.zeros((v, model.n_outputs), f32)
        self._gains = np.zeros((2, hm), f32)
        self._tables = np.zeros((v, 2, s + 3), f32)
        self._moments = np.zeros((v, 3), f64)

        # the noise part (wms.noise; zero bands for a harmonics-only model)
        nb = self._interface.n_noise
        if nb:
            self._nb0, self._na1, self._na2, self._ncoef = band_filters(
                np.asarray(self._interface.noise_edges),
                sr,
                stages=cfg.noise_stages,
                band_edge=BAND_EDGE,
            )
        else:
            self._nb0 = self._na1 = self._na2 = self._ncoef = np.zeros(0, f64)
        self._ng_prev = np.zeros((v, nb), f64)
        self._ng_next = np.zeros((v, nb), f64)
        self._nstate = np.zeros((v, nb, 2 * cfg.noise_stages), f64)
        self._nrng = np.array([noise_seed(i) for i in range(v)], np.int64)

        self._timbre = np.asarray(model.defaults, dtype=f64).copy()
        self._bend = 0.0
        self._counter = 0
        self._last_logf: float | None = None
        self._out = np.zeros(self.max_block, f64)
        self._f32 = np.zeros(self.max_block, f32)
        self.step_index = 0  # the control step being played
        self._pos = 0  # samples of it already played
        self.samples_limited = 0
        self.samples_rendered = 0

        self._att_inc = 1.0 if cfg.attack * sr < 1 else 1.0 / (cfg.attack * sr)
        self._dec_inc = 1.0 if cfg.decay * sr < 1 else (1.0 - cfg.sustain) / (cfg.decay * sr)
        self._glide_coef = math.exp(-self.step_len / (cfg.glide * sr)) if cfg.glide > 0 else 0.0
        self._f0_lo, self._f0_hi = model.pitch_clamp
        self._sr = float(sr)
        self._warm_up()

    def _warm_up(self) -> None:
        """Call every kernel once on empty work (nothing changes) so numba loads or compiles
        them now, not inside the first ``process()`` call of a live stream."""
        K.collect_voices(self._vi, self._vf, self._h, self._idx)  # no voice is pending yet
        K.begin_step(
            self._idx,
            0,
            self._vf,
            self._timbre,
            self._interface.include_voicedness,
            1.0,
            1e-4,
            0.0,
            1.0,
            0.0,
            0.0,
            self._sr,
            self._x,
        )
        self._finish_step(0)
        K.render_voices(
            self._out,
            0,
            0,
            self.step_len,
            self._idx,
            0,
            self._tables,
            self._moments,
            self._vi,
            self._vf,
            1.0,
            1.0,
            1.0,
            1.0,
            *self._noise_args(),
        )
        K.finish_block(self._out, 0, 1.0, LIMIT_KNEE)
        K.gather_state(self._h, self._idx, 0, self._hb)
        K.scatter_state(self._hb, self._idx, 0, self._h)
        self._stepper.step(self._x[:1], self._hb[:, :1].copy())

    def _noise_args(self) -> tuple:
        return (
            self._ng_prev, self._ng_next, self._nb0, self._na1, self._na2, self._nstate,
            self._nrng,
        )  # fmt: skip

    # ------------------------------------------------------------------ controls
    def check_f0(self, f0: float, where: str = "f0") -> float:
        """``f0`` in Hz must be finite and inside ``(0, sample_rate / 2)``."""
        f = float(f0)
        if not (math.isfinite(f) and 0.0 < f < 0.5 * self.sample_rate):
            raise ControlError(
                f"{where} = {f0!r} Hz is out of range: need 0 < f0 < {0.5 * self.sample_rate:g} "
                f"(half the output rate {self.sample_rate} Hz)"
            )
        return f

    def set_timbre(self, values) -> None:
        """All timbre controls ``[n_timbre]`` (range rule applied); from the next step."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.shape[0] != self.model.n_timbre:
            raise ControlError(
                f"expected {self.model.n_timbre} timbre controls "
                f"({', '.join(self.model.control_names)}), got {v.shape[0]}"
            )
        self._timbre[:] = self.model.apply_range(v)

    def load_timbre(self, values: np.ndarray) -> None:
        """Like :meth:`set_timbre` for values the caller has already range-checked with
        ``model.apply_range`` (per-step automation; copies, no allocation)."""
        self._timbre[:] = values

    def set_control(self, name: str, value: float) -> None:
        """One timbre control by name (ControlError listing valid names if unknown)."""
        i = self.model.control_index(name)
        t = self._timbre.copy()
        t[i] = value
        self._timbre[:] = self.model.apply_range(t)

    @property
    def glide_coef(self) -> float:
        """Per-step one-pole glide factor ``exp(-L / (glide * sr))`` (0 without glide)."""
        return self._glide_coef

    @property
    def timbre(self) -> np.ndarray:
        return self._timbre.copy()

    def set_pitch_bend(self, semitones: float) -> None:
        """Global pitch bend in semitones (clamped to ``+-synth.pitch_bend_range``)."""
        r = self.config.pitch_bend_range
        self._bend = float(min(max(semitones, -r), r))

    def note_on(
        self,
        f0: float,
        velocity: float = 1.0,
        *,
        note: int = -1,
        spectra: np.ndarray | None = None,
        delay: int = 0,
    ) -> int:
        """Start a voice at ``f0`` Hz with ``velocity`` (0..1, linear gain); returns its slot.

        The voice starts sounding at the next step boundary with a fresh (zero) GRU state.
        When every voice is busy one is stolen: the oldest released voice, else the oldest.
        A stolen voice keeps its phase and envelope level (the attack restarts from there)
        and crossfades from its old table, so stealing does not click.
        ``spectra[T, K]`` (log1p), if given, replaces the model for this voice: row ``t``
        is used at its ``t``-th step (offline fast path and exact-math tests).
        ``delay`` (samples, ``0 <= delay < step_len``) places a new voice's onset inside the
        step that follows (sample-accurate MIDI timing); a stolen voice starts at the step
        boundary.
        """
        f = self.check_f0(f0, "note f0")
        if not (math.isfinite(velocity) and 0.0 <= velocity <= 1.0):
            raise ControlError(f"velocity = {velocity!r} must be in [0, 1]")
        v = self._allocate()
        self._counter += 1
        self._age[v] = self._counter
        lf = math.log2(f)
        vf, vi = self._vf, self._vi
        if vi[K.STAGE, v] == K.IDLE:
            start = lf
            if self.config.glide > 0 and self._last_logf is not None:
                start = self._last_logf
            vf[K.LOGF, v] = start
            vf[K.ENV, v] = 0.0
            vf[K.LEVEL, v] = vf[K.LEVEL_TARGET, v] = 1.0
            vf[K.PHASE, v] = 0.0
            vi[K.FRESH, v] = 1
            self._nstate[v] = 0.0  # the noise filters start at rest (the generator runs on)
            vi[K.DELAY_ON, v] = self._check_delay(delay)
        vi[K.DELAY_OFF, v] = 0
        self._last_logf = lf
        vf[K.LOGF_TARGET, v] = lf
        vf[K.VELOCITY, v] = velocity
        vf[K.VOICED, v] = 1.0
        vi[K.PENDING, v] = 1
        vi[K.HAS_SPEC, v] = spectra is not None
        self._note[v] = note
        self._spectra[v] = (
            None if spectra is None else np.ascontiguousarray(spectra, dtype=np.float32)
        )
        self._spec_pos[v] = 0
        return v

    def note_off(
        self, voice: int | None = None, *, note: int | None = None, delay: int = 0
    ) -> None:
        """Release a voice by slot, or every voice playing MIDI ``note``; at once, or after
        ``delay`` samples (``0 <= delay < step_len``, counted from the next step boundary
        if the voice has not started yet, else from now)."""
        delay = self._check_delay(delay)
        if voice is not None:
            self._release(int(voice), delay)
            return
        for v in range(self.n_voices):
            if self._note[v] == note and (
                self._vi[K.STAGE, v] in (K.ATTACK, K.DECAY, K.SUSTAIN) or self._vi[K.PENDING, v]
            ):
                self._release(v, delay)

    def _check_delay(self, delay: int) -> int:
        if not 0 <= delay < self.step_len:
            raise ValueError(f"delay = {delay} samples: need 0 <= delay < {self.step_len}")
        return int(delay)

    def all_notes_off(self, delay: int = 0) -> None:
        """Release every voice (at once, or after ``delay`` samples as in :meth:`note_off`)."""
        delay = self._check_delay(delay)
        for v in range(self.n_voices):
            self._release(v, delay)

    def set_voice(
        self,
        voice: int,
        *,
        f0: float | None = None,
        voicedness: float | None = None,
        level: float | None = None,
    ) -> None:
        """Per-voice control targets, reached at the end of the next step: ``f0`` Hz (glides
        linearly in phase increment over the step), ``voicedness`` 0..1 (model input),
        ``level`` (linear gain >= 0, ramped over the step)."""
        if f0 is not None:
            self._vf[K.LOGF_TARGET, voice] = math.log2(self.check_f0(f0))
        if voicedness is not None:
            if not math.isfinite(voicedness):
                raise ControlError(f"voicedness = {voicedness!r} must be finite")
            self._vf[K.VOICED, voice] = voicedness
        if level is not None:
            if not (math.isfinite(level) and level >= 0):
                raise ControlError(f"level = {level!r} must be a finite number >= 0")
            self._vf[K.LEVEL_TARGET, voice] = level

    def load_voice(self, voice: int, log2_f0: float, voicedness: float, level: float) -> None:
        """:meth:`set_voice` without checks, for per-step automation whose values were
        validated once up front (f0 given as log2 Hz)."""
        vf = self._vf
        vf[K.LOGF_TARGET, voice] = log2_f0
        vf[K.VOICED, voice] = voicedness
        vf[K.LEVEL_TARGET, voice] = level

    @property
    def active_voices(self) -> int:
        return int(np.count_nonzero((self._vi[K.STAGE] != K.IDLE) | (self._vi[K.PENDING] != 0)))

    def _release(self, v: int, delay: int = 0) -> None:
        vi, vf = self._vi, self._vf
        if delay > 0 and (vi[K.STAGE, v] in (K.ATTACK, K.DECAY, K.SUSTAIN) or vi[K.PENDING, v]):
            # the kernel starts the release after `delay` samples
            vi[K.DELAY_OFF, v] = max(delay, vi[K.DELAY_ON, v] + 1)
            self._released_at[v] = self._counter
            self._counter += 1
            return
        if vi[K.PENDING, v] and vi[K.STAGE, v] == K.IDLE:
            vi[K.PENDING, v] = 0  # released before it ever sounded
            return
        if vi[K.STAGE, v] in (K.ATTACK, K.DECAY, K.SUSTAIN) or vi[K.PENDING, v]:
            vi[K.PENDING, v] = 0
            vi[K.STAGE, v] = K.RELEASE
            r = self.config.release * self.sample_rate
            vf[K.REL_INC, v] = vf[K.ENV, v] / r if r >= 1 else 1.0
            self._released_at[v] = self._counter
            self._counter += 1

    def _allocate(self) -> int:
        stage = self._vi[K.STAGE]
        busy = (stage != K.IDLE) | (self._vi[K.PENDING] != 0)
        free = np.flatnonzero(~busy)
        if free.size:
            return int(free[0])
        released = np.flatnonzero(stage == K.RELEASE)
        if released.size:
            return int(released[np.argmin(self._released_at[released])])
        return int(np.argmin(self._age))

    def predict_sequence(self, inputs: np.ndarray) -> np.ndarray:
        """Offline: model outputs ``[T, K]`` of one voice's inputs ``[T, D]`` from a zero
        state, with the engine's own (NumPy) network code batched over time."""
        return self._stepper.sequence(inputs)

    # ------------------------------------------------------------------ audio
    def _begin_step(self) -> None:
        if self.source is not None:
            self.source.at_step(self, self.step_index)
        nv, n_model = K.collect_voices(self._vi, self._vf, self._h, self._idx)
        self._nv = nv
        if nv == 0:
            return
        m = self._interface
        K.begin_step(
            self._idx,
            nv,
            self._vf,
            self._timbre,
            m.include_voicedness,
            m.fmin,
            m.log_pitch_eps,
            self._f0_lo,
            self._f0_hi,
            self._bend,
            self._glide_coef,
            self._sr,
            self._x,
        )
        if n_model:
            K.gather_state(self._h, self._idx, n_model, self._hb)
            self._y[:n_model] = self._stepper.step(self._x[:n_model], self._hb[:, :n_model])
            K.scatter_state(self._hb, self._idx, n_model, self._h)
        for q in range(n_model, nv):
            v = self._idx[q]
            spec = self._spectra[v]
            self._y[q] = spec[min(self._spec_pos[v], spec.shape[0] - 1)]
            self._spec_pos[v] += 1
        self._finish_step(nv)

    def _finish_step(self, nv: int) -> None:
        """Model outputs ``self._y[:nv]`` -> next tables of the voices ``self._idx[:nv]``."""
        layout = self._interface.outputs
        K.finish_step(
            self._idx,
            nv,
            self._y,
            layout.harmonic_offset,
            layout.harmonic_stride,
            self._vi,
            self._vf,
            self._amps_prev,
            self._amps_next,
            self._sr,
            BAND_EDGE,
            TABLE_RMS,
            self._interface.level_floor,
            self._basis,
            self._tables,
            self._gains,
            self._moments,
            layout.noise_offset,
            self._ncoef,
            self._ng_prev,
            self._ng_next,
        )

    def process(self, n: int) -> np.ndarray:
        """Render the next ``n`` samples (``n <= max_block``) -> float32 view ``[n]``.

        The returned array is an internal buffer, overwritten by the next call (copy it to
        keep it). State carries over between calls, so any block sizes give the same samples.
        """
        if not 0 <= n <= self.max_block:
            raise ValueError(f"block of {n} samples: need 0 <= n <= max_block = {self.max_block}")
        out = self._out
        out[:n] = 0.0
        done = 0
        cfg = self.config
        while done < n:
            if self._pos == 0:
                self._begin_step()
            m = min(n - done, self.step_len - self._pos)
            if self._nv:
                K.render_voices(
                    out[done:],
                    m,
                    self._pos,
                    self.step_len,
                    self._idx,
                    self._nv,
                    self._tables,
                    self._moments,
                    self._vi,
                    self._vf,
                    self._att_inc,
                    self._dec_inc,
                    cfg.sustain,
                    cfg.release * self.sample_rate,
                    *self._noise_args(),
                )
            done += m
            self._pos += m
            if self._pos == self.step_len:
                self._pos = 0
                self.step_index += 1
        self.samples_limited += K.finish_block(out, n, cfg.gain, LIMIT_KNEE)
        self.samples_rendered += n
        f = self._f32
        f[:n] = out[:n]
        return f[:n]
