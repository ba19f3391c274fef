"""Wavetables from harmonic amplitudes (docs/DESIGN.md §3): pure functions, no state.

The model predicts ``K`` log1p magnitudes of a window holding ``N`` cycles, so bin
``N * h`` is harmonic ``h`` and the bins between are Hann leakage (about -6 dB of the
neighbouring harmonics), not sub-harmonics of the sound. WMS therefore keeps only bins
``N * h``, ``h = 1 .. H`` with ``H = (K - 1) // N``, as harmonic amplitudes
(:meth:`wms.interface.ModelInterface.harmonics`), and builds a *one-cycle* table from them. Playing all ``K`` bins as an ``N``-cycle period (the
reference) would add a strong tone an octave (``N = 2``) below f0.

Tables are sums of cosines (zero phase, as the reference's zero-phase inverse rfft),
normalised by a fixed rule (:func:`normalise_amplitudes`) before band-limiting, so that
loudness does not depend on timbre and high notes lose their top harmonics instead of
being boosted to make up for them.

Shapes: ``[..., K]`` spectra, ``[..., H]`` harmonic amplitudes (linear), ``[..., S + 3]``
guarded tables (``S = table_size`` samples per cycle plus 1 sample before and 2 after the
cycle, so a 4-point interpolator never wraps).
"""

from __future__ import annotations

import numpy as np

#: RMS of every normalised table before band-limiting (-12 dBFS; a pure sine then peaks
#: at 0.354, a zero-phase sawtooth of 39 harmonics at about 1.2).
TABLE_RMS = 0.25
#: Harmonics fade out (raised cosine, in frequency) from this fraction of the output
#: Nyquist frequency to Nyquist itself, where their gain is exactly 0. The taper keeps
#: band-limit changes small from one control step to the next during pitch glides.
BAND_EDGE = 0.9
#: Guard samples stored before / after each cycle for 4-point interpolation.
GUARD_BEFORE, GUARD_AFTER = 1, 2


def normalise_amplitudes(
    amps: np.ndarray, *, rms: float = TABLE_RMS, floor: float = 0.0
) -> np.ndarray:
    """Scale harmonic amplitudes so the (full-band) waveform has RMS ``rms``.

    The RMS of ``sum_h a_h cos(2 pi h t)`` is ``sqrt(sum a_h^2 / 2)``. Rows quieter than
    ``floor`` (``ModelInterface.level_floor``) are scaled by ``rms / floor`` instead: they stay
    proportionally quiet rather than being amplified. All-zero rows stay zero.

    Args:
        amps: ``[..., H]`` linear amplitudes (>= 0).

    Returns:
        ``[..., H]`` float32.
    """
    amps = np.asarray(amps, dtype=np.float32)
    r = np.sqrt(0.5 * np.sum(np.square(amps, dtype=np.float64), axis=-1, keepdims=True))
    scale = np.where(r > 0, rms / np.maximum(r, max(floor, 1e-30)), 0.0)
    return (amps * scale).astype(np.float32)


def band_limit_gains(
    f0: float | np.ndarray, n_harm: int, *, sample_rate: float, out: np.ndarray | None = None
) -> np.ndarray:
    """Per-harmonic gains that remove harmonics at or above the output Nyquist frequency.

    Harmonic ``h`` of ``f0`` (frequency ``h * f0``) has gain 1 up to ``BAND_EDGE *
    sample_rate / 2``, a raised-cosine fade above it, and exactly 0 at and above
    ``sample_rate / 2``.

    Args:
        f0: Hz, scalar or ``[...]`` (use the highest f0 a table will be played at).
        n_harm: H.
        sample_rate: output rate in Hz.
        out: optional ``[..., H]`` float32 buffer.

    Returns:
        ``[..., H]`` float32 gains in [0, 1].
    """
    f = np.multiply.outer(np.asarray(f0, dtype=np.float64), np.arange(1, n_harm + 1))
    g = band_limit_gain_hz(f, 0.5 * sample_rate)
    if out is None:
        return g.astype(np.float32)
    out[...] = g
    return out


def band_limit_gain_hz(f: np.ndarray, nyquist: float, edge: float = BAND_EDGE) -> np.ndarray:
    """The band-limit gain of components at ``f`` Hz (float64, same shape): 1 up to ``edge *
    nyquist``, a raised-cosine fade above, 0 at and above ``nyquist`` (the engine's
    ``kernels.band_gain``; the noise bands fade the same way)."""
    f = np.asarray(f, dtype=np.float64)
    x = np.clip((f - edge * nyquist) / ((1.0 - edge) * nyquist), 0.0, 1.0)
    return np.where(f >= nyquist, 0.0, 0.5 + 0.5 * np.cos(np.pi * x))


def band_limit(amps: np.ndarray, f0: float | np.ndarray, *, sample_rate: float) -> np.ndarray:
    """``amps[..., H] * band_limit_gains(f0[...], H)``: harmonics that would alias removed."""
    amps = np.asarray(amps, dtype=np.float32)
    return amps * band_limit_gains(f0, amps.shape[-1], sample_rate=sample_rate)


#: ``synth.phases``: the fixed phase law of the harmonics in every table.
PHASES = ("zero", "schroeder")


def cosine_basis(n_harm: int, table_size: int, phases: str = "zero") -> np.ndarray:
    """``[H, S + 3]`` float32: row ``h - 1`` is ``cos(2 pi h j / S + theta_h)`` for
    ``j = -1 .. S + 1``; ``theta_h = 0`` (``"zero"``) or Schroeder's ``-pi h (h - 1) / H``
    (``"schroeder"``), which spreads the harmonics' peaks over the cycle.

    ``amps[B, H] @ basis`` gives ``B`` guarded tables with no FFT and no allocation
    (``np.dot(amps, basis, out=tables)``), which is what the streaming engine does. Phases
    are reduced in integers: with ``m_h = h (h - 1) mod 2H`` the argument is
    ``2 pi n / (2 H S)``, ``n = (2 H (h j mod S) - m_h S) mod 2 H S`` (the browser engine
    computes the same ``n``).
    """
    if table_size < 4:
        raise ValueError(f"table_size = {table_size} must be at least 4")
    if phases not in PHASES:
        raise ValueError(f"phases = {phases!r} is not one of {', '.join(PHASES)}")
    j = np.arange(-GUARD_BEFORE, table_size + GUARD_AFTER, dtype=np.int64)
    h = np.arange(1, n_harm + 1, dtype=np.int64)
    # Reduce h * j modulo S in integers so the phase is exact for large tables.
    k = np.mod(np.outer(h, j), table_size)
    if phases == "zero":
        return np.cos(2.0 * np.pi * k.astype(np.float64) / table_size).astype(np.float32)
    two_h = 2 * n_harm
    m = np.mod(h * (h - 1), two_h)
    n = np.mod(two_h * k - (m * table_size)[:, None], two_h * table_size)
    return np.cos(2.0 * np.pi * n.astype(np.float64) / (two_h * table_size)).astype(np.float32)


def make_tables(amps: np.ndarray, table_size: int, phases: str = "zero") -> np.ndarray:
    """One-cycle guarded wavetables ``[..., S + 3]`` from harmonic amplitudes ``[..., H]``.

    Sample ``i`` holds the waveform at phase ``(i - 1) / S`` cycles.
    """
    amps = np.asarray(amps, dtype=np.float32)
    return amps @ cosine_basis(amps.shape[-1], table_size, phases)
