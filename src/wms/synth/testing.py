"""Small synthetic models and bundles for the synth's tests and benchmarks.

Nothing here is used at run time. :func:`known_model` returns a SynthModel whose network
is never asked (pass known spectra to ``note_on(spectra=...)``); :func:`random_bundle`
writes a real, loadable bundle with a seeded random-weight network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wms.config import Config, preset_sections
from wms.interface import ModelInterface, OutputLayout
from wms.synth.network import SynthModel
from wms.training.model import WMSNet


def spectrum_from_harmonics(amps: np.ndarray, n_bins: int = 80, cycles: int = 2) -> np.ndarray:
    """log1p spectrum ``[K]`` whose bins ``N*h`` hold ``amps[h - 1]`` (others 0)."""
    s = np.zeros(n_bins, np.float32)
    h = np.arange(1, len(amps) + 1)
    s[cycles * h] = np.log1p(np.asarray(amps, dtype=np.float32))
    return s


def saw_amplitudes(n_harm: int = 39) -> np.ndarray:
    return 1.0 / np.arange(1, n_harm + 1)


def process_allocation(engine, *, blocks: int, block: int = 4096) -> int:
    """Peak bytes Python allocates while ``engine`` renders ``blocks`` blocks of ``block``
    samples (tracemalloc), after one warm-up block: 0 for an allocation-free ``process``."""
    import tracemalloc

    engine.process(block)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(blocks):
            engine.process(block)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def known_model(
    *,
    n_timbre: int = 3,
    hidden_size: int = 16,
    n_bins: int = 80,
    cycles: int = 2,
    seed: int = 0,
    include_voicedness: bool = True,
    out_of_range: str = "clamp",
    noise_bands: int = 0,
    sample_rate: int = 16000,
) -> SynthModel:
    """A seeded random-weight SynthModel with controls ``c0..`` ranging over [-1, 1] (and a
    noise part of ``noise_bands`` bands at analysis rate ``sample_rate``)."""
    from wms.noise import band_edges

    torch.manual_seed(seed)
    interface = ModelInterface(
        control_names=tuple(f"c{i}" for i in range(n_timbre)),
        control_ranges=np.tile([-1.0, 1.0], (n_timbre, 1)),
        control_defaults=np.zeros(n_timbre),
        fmin=46.0,
        f0_range=(60.0, 1000.0),
        f0_default=220.0,
        include_voicedness=include_voicedness,
        outputs=OutputLayout.spectrum_bins(n_bins, cycles).with_noise(noise_bands),
        sample_rate=sample_rate,
        hop_size=round(sample_rate * 0.016),
        noise_edges=tuple(band_edges(sample_rate, noise_bands)) if noise_bands else (),
    )
    net = WMSNet(
        interface.n_inputs, interface.n_outputs, encoder_size=hidden_size, hidden_size=hidden_size
    ).eval()
    rng = np.random.default_rng(seed)
    controls = rng.uniform(-1, 1, (200, n_timbre))
    f0 = np.exp(rng.uniform(np.log(60), np.log(1000), 200))
    return SynthModel(
        net=net,
        interface=interface,
        out_of_range=out_of_range,
        training_map={"controls": controls, "f0": f0, "voicedness": np.ones(200)},
    )


def random_bundle(
    path: str | Path, *, hidden_size: int = 32, seed: int = 0, config: Config | None = None
) -> Path:
    """Write a loadable bundle with a seeded random network and a synthetic input map; by
    default of the reference's analysis and tables (16 kHz, K = 80 bins, harmonics only:
    small and fast) on WMS's training defaults."""
    from wms.analysis.inputmap import fit_input_map
    from wms.bundle import save_bundle

    cfg = config or Config().replace(
        **preset_sections("reference"),
        model={"hidden_size": hidden_size, "encoder_size": hidden_size},
    )
    rng = np.random.default_rng(seed)
    m = 400
    mfcc = rng.normal(0, 1, (m, cfg.features.n_mfcc)) * np.linspace(20, 1, cfg.features.n_mfcc)
    f0 = np.exp(rng.uniform(np.log(80), np.log(800), m))
    voiced = np.ones(m)
    imap = fit_input_map(mfcc, cfg)
    controls = imap.controls(mfcc, dtype=np.float64)
    interface = ModelInterface.fit_config(
        cfg, controls, f0, voiced, control_names=imap.control_names
    )
    torch.manual_seed(seed)
    net = WMSNet.from_config(interface.n_inputs, interface.n_outputs, cfg.model).eval()
    return save_bundle(
        path,
        model=net,
        config=cfg,
        interface=interface,
        input_map=imap,
        training_map={
            "controls": controls.astype(np.float32),
            "f0": f0.astype(np.float32),
            "voicedness": voiced.astype(np.float32),
            "inputs": interface.inputs(controls, f0, voiced),
            "targets": np.zeros((m, interface.n_outputs), np.float16),
            "frames": np.zeros((m, 2), np.int64),
        },
        data_map={"files": []},
        history=[],
        metrics={},
    )
