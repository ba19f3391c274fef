"""Spectrograms of held-out audio and its resynthesis by two models, side by side.

    python benchmarks/fullband_spectrograms.py EVAL_A EVAL_B OUT.png [--labels A B]

``EVAL_A`` and ``EVAL_B`` are ``wms evaluate`` output folders of two bundles trained on the
same audio (for example ``--preset reference``'s 16 kHz analysis and the default); each holds
``original.wav`` and ``resynthesis_model.wav`` at the audio's own rate. The figure shows the
original (from ``EVAL_A``) and both resyntheses over 0 Hz to Nyquist, log magnitude, same
colour scale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from scipy.signal import stft  # noqa: E402


def spectrogram_db(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, t, z = stft(y, fs=sr, nperseg=2048, noverlap=1024, window="hann")
    return f, t, 20 * np.log10(np.abs(z) + 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("eval_a", type=Path)
    ap.add_argument("eval_b", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--labels", nargs=2, default=["default (16 kHz, 39 harmonics)", "fullband"])
    ap.add_argument("--seconds", type=float, default=6.0, help="how much of the audio to show")
    args = ap.parse_args()
    panels = [("original", args.eval_a / "original.wav")]
    panels += [
        (f"resynthesis: {label}", d / "resynthesis_model.wav")
        for label, d in zip(args.labels, (args.eval_a, args.eval_b), strict=True)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.2), sharey=True)
    top = None
    for ax, (title, path) in zip(axes, panels, strict=True):
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
        y = y[: int(args.seconds * sr), 0]
        f, t, db = spectrogram_db(y, sr)
        top = db.max() if top is None else top
        ax.pcolormesh(t, f / 1000, db, vmin=top - 90, vmax=top, shading="auto", cmap="magma")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("s")
    axes[0].set_ylabel("kHz")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=64)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
