"""Plots: pure functions, arrays in, a matplotlib Figure out (:func:`save_figure` writes PNGs).

Figures are built with the object API on the Agg canvas, never pyplot, so
plotting works headless and leaves no global state behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


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
    """Train and validation loss per epoch (log scale), learning rate on a second axis.

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
        ax2.set_yscale("log")
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
    """Write ``fig`` as PNG atomically (temp file + rename); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png", dpi=dpi)
    os.replace(tmp, path)
    return path
