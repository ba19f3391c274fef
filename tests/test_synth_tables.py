"""Wavetables from spectra: exact maths (wms.synth.tables)."""

import numpy as np
import pytest

from wms.interface import OutputLayout
from wms.synth import kernels as K
from wms.synth.tables import (
    BAND_EDGE,
    TABLE_RMS,
    band_limit,
    band_limit_gains,
    make_tables,
    normalise_amplitudes,
)
from wms.synth.testing import spectrum_from_harmonics


def test_harmonic_amplitudes_take_bins_n_times_h_with_expm1():
    rng = np.random.default_rng(0)
    spec = rng.uniform(0, 3, (4, 80)).astype(np.float32)
    amps = OutputLayout.spectrum_bins(80, 2).harmonics(spec)
    assert amps.shape == (4, 39)  # bins 2, 4, .., 78
    np.testing.assert_array_equal(amps, np.expm1(spec[:, 2:79:2]))
    # N = 3: bins 3, 6, .., 78
    assert OutputLayout.spectrum_bins(80, 3).harmonics(spec).shape == (4, 26)


def test_table_is_the_zero_phase_inverse_rfft_of_one_cycle():
    amps = np.array([1.0, 0.5, 0.0, 0.25], np.float32)
    size = 64
    table = make_tables(amps, size)
    spec = np.zeros(size // 2 + 1, complex)
    spec[1:5] = amps * size / 2  # irfft scaling of a cosine of amplitude a
    ref = np.fft.irfft(spec, size)
    np.testing.assert_allclose(table[1 : size + 1], ref, atol=1e-6)
    # guard samples wrap around the cycle (measured 7.5e-10: float32 rounding)
    np.testing.assert_allclose(table[0], ref[-1], atol=5e-9)
    np.testing.assert_allclose(table[size + 1 : size + 3], ref[:2], atol=5e-9)


def test_normalised_tables_have_the_stated_rms():
    rng = np.random.default_rng(1)
    amps = normalise_amplitudes(rng.uniform(0, 5, (3, 39)))
    tables = make_tables(amps, 2048)[:, 1:2049]
    np.testing.assert_allclose(np.sqrt(np.mean(tables**2, axis=1)), TABLE_RMS, rtol=1e-5)
    assert not normalise_amplitudes(np.zeros(39)).any()


@pytest.mark.parametrize("sr", [16000, 44100, 48000, 96000])
def test_band_limit_removes_harmonics_at_or_above_nyquist(sr):
    f0 = 3999.7
    g = band_limit_gains(f0, 39, sample_rate=sr)
    f = f0 * np.arange(1, 40)
    assert np.all(g[f >= sr / 2] == 0)
    assert np.all(g[f <= BAND_EDGE * sr / 2] == 1)
    assert np.all(np.diff(g) <= 0)  # a taper, never a boost
    # the numba kernel used by the engine is the same function
    k = np.array([K.band_gain(x, sr / 2, BAND_EDGE) for x in f])
    np.testing.assert_allclose(k, g, atol=1e-7)
    np.testing.assert_allclose(band_limit(np.ones(39), f0, sample_rate=sr), g)


def test_spectrum_helper_round_trips():
    amps = np.linspace(1, 0.1, 39)
    np.testing.assert_allclose(
        OutputLayout.spectrum_bins(80, 2).harmonics(spectrum_from_harmonics(amps)), amps, rtol=1e-6
    )
