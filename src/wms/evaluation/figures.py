"""Figures: pure functions, arrays in, a matplotlib Figure out (:func:`save_figure` writes PNGs).

Figures are built with the object API on the Agg canvas, never pyplot, so
plotting works headless and leaves no global state behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from wms.evaluation.metrics import stft_magnitude
from wms.interface import OutputLayout
from wms.io import atomic_target


def _figure(width: float = 7.0, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def loss_curves(
    epochs: Sequence[float],
    train_loss: Sequence[float],
    val_loss: Sequence[float | None],
    lr: Sequence[float] | None = None,
    *,
    title: str = "training",
) -> Figure:
    """Train and validation loss per epoch (log scale), learning rate on a second, linear
    axis (a cosine schedule ends at 0).

    ``val_loss`` entries may be None (no validation that epoch).
    """
    fig = _figure()
    ax = fig.add_subplot()
    e = np.asarray(epochs, dtype=float)
    ax.plot(e, np.asarray(train_loss, dtype=float), label="train loss")
    v = np.array([np.nan if x is None else x for x in val_loss], dtype=float)
    if np.isfinite(v).any():
        ax.plot(e, v, label="validation loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if lr is not None and len(lr):
        ax2 = ax.twinx()
        ax2.plot(e, np.asarray(lr, dtype=float), color="0.5", linestyle=":", label="learning rate")
        ax2.set_ylim(bottom=0)
        ax2.set_ylabel("learning rate")
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    return fig


def curves_vs_time(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    ylabel: str,
    title: str = "",
    log_y: bool = True,
) -> Figure:
    """Several ``label -> (seconds, values)`` curves on one axis against wall-clock minutes."""
    fig = _figure()
    ax = fig.add_subplot()
    for label, (t, y) in curves.items():
        ax.plot(
            np.asarray(t, dtype=float) / 60.0, np.asarray(y, dtype=float), marker=".", label=label
        )
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("wall-clock time (min)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG atomically (temp file + rename); returns ``path``.

    Raises:
        OutputError: the file cannot be written.
    """
    path = Path(path)
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


TARGET_COLOR, MODEL_COLOR, NEAREST_COLOR = "black", "tab:red", "tab:blue"


def _grid(n: int) -> tuple[int, int]:
    cols = min(2, n)
    return (n + cols - 1) // cols, cols


def spectra_figure(examples: Sequence[dict], *, layout: OutputLayout) -> Figure:
    """Target vs predicted log1p magnitude per output for a few frames, one panel each.

    Args:
        examples: dicts with ``target``, ``model`` (and optionally ``nearest``)
            ``[K]`` log1p spectra, ``label``, ``frame``, ``f0`` (Hz), ``lsd_db``.
        layout: the model's output layout; the x axis reads in harmonics (bin / B).
    """
    cycles = layout.bins_per_harmonic
    rows, cols = _grid(len(examples))
    fig = _figure(5.2 * cols, 3.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, e in zip(axes, examples, strict=False):
        x = np.arange(len(e["target"])) / cycles
        ax.plot(x, e["target"], color=TARGET_COLOR, lw=1.6, label="target")
        ax.plot(x, e["model"], color=MODEL_COLOR, lw=1.2, label="model")
        if e.get("nearest") is not None:
            ax.plot(
                x,
                e["nearest"],
                color=NEAREST_COLOR,
                lw=0.9,
                ls="--",
                alpha=0.7,
                label="nearest training frame",
            )
        ax.set_title(
            f"frame {e['frame']} ({e['label']}), f0 {e['f0']:.0f} Hz, LSD {e['lsd_db']:.1f} dB",
            fontsize=9,
        )
        ax.set_xlabel("harmonic (bin / N)")
        ax.set_ylabel("log1p |magnitude|")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(examples) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.suptitle("Held-out spectra: target vs model", fontsize=11)
    return fig


def waveforms_figure(
    examples: Sequence[dict], *, layout: OutputLayout, table_size: int = 512
) -> Figure:
    """Two cycles of the table each frame's target and predicted harmonics make.

    The table is built as the synth builds it (``synth.tables``: harmonics at bins
    ``N*h``, zero phase, normalised RMS), so shapes compare, not loudness.
    """
    from wms.synth.tables import make_tables, normalise_amplitudes

    rows, cols = _grid(len(examples))
    fig = _figure(5.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    phase = np.arange(2 * table_size) / table_size
    for ax, e in zip(axes, examples, strict=False):
        for key, color, label in (
            ("target", TARGET_COLOR, "target"),
            ("model", MODEL_COLOR, "model"),
        ):
            amps = normalise_amplitudes(layout.harmonics(e[key]))
            table = make_tables(amps, table_size)[1 : table_size + 1]
            ax.plot(
                phase,
                np.tile(table, 2),
                color=color,
                lw=1.4 if key == "target" else 1.1,
                label=label,
            )
        ax.set_title(f"frame {e['frame']} ({e['label']}), f0 {e['f0']:.0f} Hz", fontsize=9)
        ax.set_xlabel("phase (cycles)")
        ax.set_ylabel("amplitude")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(examples) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.suptitle("Wavetables from target vs predicted harmonics (2 cycles)", fontsize=11)
    return fig


def brightness(targets: np.ndarray, layout: OutputLayout) -> np.ndarray:
    """Spectral centroid in harmonics, ``sum h a_h / sum a_h``, of log1p spectra ``[n, K]``."""
    a = layout.harmonics(np.asarray(targets, dtype=np.float32)).astype(np.float64)
    h = np.arange(1, a.shape[1] + 1)
    return (a @ h) / np.maximum(a.sum(axis=1), 1e-12)


def control_map_figure(
    controls: np.ndarray,
    f0: np.ndarray,
    colour: np.ndarray,
    *,
    names: Sequence[str],
    colour_label: str,
    heldout: np.ndarray | None = None,
) -> Figure:
    """The training data in control space, coloured by pitch and by a timbre feature.

    Args:
        controls: ``[M, n_timbre]`` training-map timbre controls (first two plotted;
            with one control, it is plotted against f0).
        f0: ``[M]`` Hz. colour: ``[M]`` the timbre feature (e.g. :func:`brightness`).
        names: control names. colour_label: what ``colour`` is.
        heldout: optional ``[n, >= 2]`` held-out model inputs, drawn as small crosses.
    """
    fig = _figure(11.0, 4.6)
    axes = fig.subplots(1, 2)
    c = np.asarray(controls, dtype=np.float64)
    f0 = np.asarray(f0, dtype=np.float64)
    one = c.shape[1] < 2
    x = c[:, 0]
    y = f0 if one else c[:, 1]
    for ax, values, label, norm, cmap in (
        (axes[0], f0, "f0 (Hz)", LogNorm(max(f0.min(), 1.0), max(f0.max(), 2.0)), "viridis"),
        (axes[1], colour, colour_label, None, "magma"),
    ):
        sc = ax.scatter(
            x, y, c=values, s=5, cmap=cmap, norm=norm, alpha=0.8, linewidths=0, rasterized=True
        )
        fig.colorbar(sc, ax=ax, label=label)
        if heldout is not None and len(heldout):
            h = np.asarray(heldout, dtype=np.float64)
            if not one:
                ax.scatter(
                    h[:, 0],
                    h[:, 1],
                    marker="x",
                    s=8,
                    c="tab:cyan",
                    linewidths=0.6,
                    alpha=0.6,
                    label="held-out frames",
                )
                ax.legend(fontsize=8, loc="best")
        ax.set_xlabel(names[0])
        ax.set_ylabel("f0 (Hz)" if one else names[1])
        if one:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].set_title("training map, coloured by pitch", fontsize=10)
    axes[1].set_title(f"training map, coloured by {colour_label}", fontsize=10)
    return fig


def _spec_db(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    return 20 * np.log10(np.maximum(stft_magnitude(y, n_fft, hop), 1e-6)).T


def spectrogram_figure(
    original: np.ndarray,
    resynthesis: np.ndarray,
    *,
    sample_rate: int,
    max_seconds: float = 10.0,
    n_fft: int = 1024,
    boundaries: Sequence[float] = (),
) -> Figure:
    """Spectrograms (dB, one shared 80 dB colour range) of the original and the resynthesis.

    Both signals at ``sample_rate`` Hz; the first ``max_seconds`` are shown;
    ``boundaries`` (seconds) are drawn as dashed lines (where held-out segments join).
    """
    n = int(min(len(original), len(resynthesis), max_seconds * sample_rate))
    hop = n_fft // 4
    a, b = _spec_db(original[:n], n_fft, hop), _spec_db(resynthesis[:n], n_fft, hop)
    top = max(a.max(), b.max())
    fig = _figure(10.0, 6.4)
    axes = fig.subplots(2, 1, sharex=True)
    extent = (0.0, a.shape[1] * hop / sample_rate, 0.0, sample_rate / 2 / 1000)
    for ax, s, title in ((axes[0], a, "original (held-out audio)"), (axes[1], b, "resynthesis")):
        im = ax.imshow(
            s,
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap="magma",
            vmin=top - 80,
            vmax=top,
            interpolation="nearest",
        )
        for t in boundaries:
            if t < extent[1]:
                ax.axvline(t, color="tab:cyan", ls="--", lw=0.8)
        ax.set_ylabel("frequency (kHz)")
        ax.set_title(title, fontsize=10)
    axes[1].set_xlabel("time (s)")
    fig.colorbar(im, ax=axes, label="dB")
    return fig
