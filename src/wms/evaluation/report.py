"""Evaluation figures and the report of ``wms evaluate`` (Markdown + HTML).

Figure functions are pure: arrays in, a matplotlib ``Figure`` out (object API on
the Agg canvas, no pyplot), written with :func:`wms.evaluation.plots.save_figure`.
:func:`write_figures_and_report` makes every figure for one evaluation and writes
``report.md`` and ``index.html`` that show the same images.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from wms.errors import WMSError
from wms.evaluation.plots import loss_curves, save_figure

TARGET_COLOR, MODEL_COLOR, NEAREST_COLOR = "black", "tab:red", "tab:blue"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _grid(n: int) -> tuple[int, int]:
    cols = min(2, n)
    return (n + cols - 1) // cols, cols


def spectra_figure(examples: Sequence[dict], *, cycles: int) -> Figure:
    """Target vs predicted log1p magnitude per bin for a few frames, one panel each.

    Args:
        examples: dicts with ``target``, ``model`` (and optionally ``nearest``)
            ``[K]`` log1p spectra, ``label``, ``frame``, ``f0`` (Hz), ``lsd_db``.
        cycles: N, so the x axis reads in harmonics (bin / N; harmonic h at h).
    """
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


def waveforms_figure(examples: Sequence[dict], *, cycles: int, table_size: int = 512) -> Figure:
    """Two cycles of the table each frame's target and predicted harmonics make.

    The table is built as the synth builds it (``synth.tables``: harmonics at bins
    ``N*h``, zero phase, normalised RMS), so shapes compare, not loudness.
    """
    from wms.synth.tables import harmonic_amplitudes, make_tables, normalise_amplitudes

    rows, cols = _grid(len(examples))
    fig = _figure(5.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    phase = np.arange(2 * table_size) / table_size
    for ax, e in zip(axes, examples, strict=False):
        for key, color, label in (
            ("target", TARGET_COLOR, "target"),
            ("model", MODEL_COLOR, "model"),
        ):
            amps = normalise_amplitudes(harmonic_amplitudes(e[key], cycles))
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


def brightness(targets: np.ndarray, cycles: int) -> np.ndarray:
    """Spectral centroid in harmonics, ``sum h a_h / sum a_h``, of log1p spectra ``[n, K]``."""
    from wms.synth.tables import harmonic_amplitudes

    a = harmonic_amplitudes(np.asarray(targets, dtype=np.float32), cycles).astype(np.float64)
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
    from wms.evaluation.evaluate import _stft_mag

    return 20 * np.log10(np.maximum(_stft_mag(y, n_fft, hop), 1e-6)).T


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


# --------------------------------------------------------------------------- report


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def metrics_markdown(m: dict[str, Any]) -> str:
    """The metrics table and the verdict sentence, as Markdown."""
    rows = [
        "| | spectral convergence | LSD (dB) |",
        "|---|---:|---:|",
    ]
    for key, label in (
        ("model", "**model**"),
        ("baseline_mean", "baseline: mean spectrum"),
        ("baseline_nearest", "baseline: nearest training frame"),
    ):
        rows.append(f"| {label} | {m[key]['sc']:.3f} | {m[key]['lsd_db']:.2f} |")
    verdict = (
        "The model **beats both baselines** (lower spectral convergence and LSD than each)."
        if m["beats_both_baselines"]
        else "The model does **not** beat both baselines: "
        + _which_lose(m)
        + ". Train longer or check the data before trusting it."
    )
    r = m["resynthesis"]
    st, fc = r["stft_distance"], r["f0_cents"]
    resyn = (
        f"Resynthesis ({r['seconds']:.1f} s of held-out audio through the synth's timbre-transfer "
        f"path at {r['render_sample_rate']} Hz, compared at {r['compared_at_sample_rate']} Hz, "
        f"level matched by {r['level_match_db']:+.1f} dB): multi-resolution STFT distance "
        f"**{st['total']:.3f}** (spectral convergence {st['sc']:.3f} + log-magnitude L1 "
        f"{st['log_mag_l1']:.3f}, FFT sizes {', '.join(map(str, st['fft_sizes']))}); "
        f"f0 error of the rendered output over {fc['frames']} frames voiced in the input: median "
        f"**{_fmt(fc['median_abs'], '.1f')} cents**, 90th percentile {_fmt(fc['p90_abs'], '.1f')} "
        f"cents, {_fmt(None if fc['gross_fraction'] is None else 100 * fc['gross_fraction'], '.1f')} % "
        f"of frames off by more than 50 cents."
    )
    return "\n".join(rows) + "\n\n" + verdict + "\n\n" + resyn + "\n"


def _which_lose(m: dict[str, Any]) -> str:
    bad = []
    for b, label in (("baseline_mean", "mean spectrum"), ("baseline_nearest", "nearest frame")):
        for k, name in (("sc", "spectral convergence"), ("lsd_db", "LSD")):
            if not m["model"][k] < m[b][k]:
                bad.append(f"{name} vs {label}")
        # keep the sentence short: one entry per metric/baseline pair that loses
    return "it loses on " + ", ".join(bad)


def _data_line(m: dict[str, Any]) -> str:
    d, b = m["data"], m["bundle"]
    files = ", ".join(f"`{Path(f['path']).name}` ({f['seconds']:.1f} s)" for f in d["files"])
    skipped = (
        f" Skipped: {', '.join(s['path'] + ' (' + s['reason'] + ')' for s in d['skipped'])}."
        if d["skipped"]
        else ""
    )
    return (
        f"Bundle `{b['path']}` (wms {b['written_by_wms']}, {b['parameters']:,} parameters, "
        f"{b['epochs']} epochs, config {b['config_sha256']}). Evaluated on {d['frames']} frames "
        f"({d['seconds']:.1f} s, {d['voiced_frames']} voiced): {d['description']}; {files}. "
        f"Baselines from {d['baselines_from']}.{skipped}"
    )


def write_report(
    out: Path,
    metrics: dict[str, Any],
    figures: Sequence[tuple[str, str, str]],
    audio: Sequence[tuple[str, str]],
) -> tuple[Path, Path]:
    """Write ``out/report.md`` and ``out/index.html``.

    Args:
        metrics: the evaluation metrics (``wms.evaluation.evaluate``).
        figures: ``(file name, title, caption)`` of PNGs in ``out``.
        audio: ``(file name, description)`` of WAVs in ``out``.

    Returns:
        ``(report.md, index.html)`` paths.

    Raises:
        WMSError: a file cannot be written.
    """
    md = ["# WMS evaluation report", "", _data_line(metrics), "", "## Metrics", ""]
    md.append(metrics_markdown(metrics))
    md += ["## Figures", ""]
    for name, title, caption in figures:
        md += [f"### {title}", "", f"![{title}]({name})", "", caption, ""]
    md += ["## Audio", ""]
    md += [f"- [{name}]({name}): {desc}" for name, desc in audio]
    md.append("")

    import re

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    table = metrics_markdown(metrics).split("\n\n")
    rows = [r for r in table[0].splitlines() if not r.startswith("|---")]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    thtml = (
        "<table>"
        + "".join(
            "<tr>"
            + "".join(
                f"<{'th' if i == 0 else 'td'}>{inline(c)}</{'th' if i == 0 else 'td'}>" for c in row
            )
            + "</tr>"
            for i, row in enumerate(cells)
        )
        + "</table>"
    )
    body = [
        "<h1>WMS evaluation report</h1>",
        f"<p>{inline(_data_line(metrics))}</p>",
        "<h2>Metrics</h2>",
        thtml,
        *(f"<p>{inline(p)}</p>" for p in table[1:] if p.strip()),
        "<h2>Figures</h2>",
    ]
    for name, title, caption in figures:
        body.append(
            f"<figure><h3>{html.escape(title)}</h3><img src='{html.escape(name)}' "
            f"alt='{html.escape(title)}'><figcaption>{inline(caption)}</figcaption></figure>"
        )
    body.append("<h2>Audio</h2><ul>")
    for name, desc in audio:
        body.append(
            f"<li><a href='{html.escape(name)}'>{html.escape(name)}</a>: {inline(desc)}<br>"
            f"<audio controls preload='none' src='{html.escape(name)}'></audio></li>"
        )
    body.append("</ul>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>WMS evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 10px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "figure{margin:1.5em 0}figcaption{color:#444}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    paths = (out / "report.md", out / "index.html")
    try:
        for p, text in zip(paths, ("\n".join(md), page), strict=True):
            tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, p)
    except OSError as e:
        raise WMSError(f"--out {out}: cannot write the report ({e})") from None
    return paths


def write_figures_and_report(
    out: Path,
    *,
    bundle,
    metrics: dict[str, Any],
    examples: Sequence[dict],
    resyn,
    heldout_inputs: np.ndarray,
    audio_files: dict[str, str],
) -> dict[str, str]:
    """Every evaluation figure, then ``report.md`` / ``index.html``; returns ``{name: file}``."""
    cfg = bundle.config
    n = cfg.features.bins_per_harmonic
    figs: list[tuple[str, str, str]] = []
    files: dict[str, str] = {}

    def save(key: str, fig: Figure, title: str, caption: str) -> None:
        name = f"{key}.png"
        save_figure(fig, out / name)
        figs.append((name, title, caption))
        files[key] = name

    save(
        "spectra",
        spectra_figure(examples, cycles=n),
        "Predicted vs target spectra",
        "log1p magnitude per bin of held-out frames (x in harmonics: harmonic h is bin B·h, B = features.bins_per_harmonic, the "
        "bins between are window leakage). Frames are picked at the 10th/50th/75th/95th "
        "percentile of the model's per-frame LSD among voiced frames; the dashed line is the "
        "nearest-training-frame baseline.",
    )
    save(
        "waveforms",
        waveforms_figure(examples, cycles=n),
        "Wavetables of the same frames",
        "Two cycles of the one-cycle table the synth builds from the target and the predicted "
        "harmonics (zero phase, RMS-normalised), for the frames above.",
    )
    h = bundle.history
    if h:
        fig = loss_curves(
            [x["epoch"] + 1 for x in h],
            [x["train_loss"] for x in h],
            [x.get("val_loss") for x in h],
            [x["lr"] for x in h],
            title=f"training history ({cfg.train.loss} loss)",
        )
        save(
            "loss_curves",
            fig,
            "Loss curves",
            "Training and validation loss per epoch "
            "(from the bundle's history) and the learning rate.",
        )
    tm = bundle.training_map or {}
    if "controls" in tm and len(tm["controls"]):
        if "targets" in tm:
            colour, label = brightness(tm["targets"], n), "brightness (centroid, harmonics)"
        else:
            colour, label = np.asarray(tm["voicedness"]), "voicedness"
        fig = control_map_figure(
            tm["controls"],
            tm["f0"],
            colour,
            names=list(bundle.control_names),
            colour_label=label,
            heldout=heldout_inputs[:, : len(bundle.control_names)],
        )
        save(
            "control_map",
            fig,
            "Training data in control space",
            f"The bundle's training map ({len(tm['controls'])} training frames) on the first two "
            f"timbre controls, coloured by pitch (left) and by {label} (right); crosses are the "
            "evaluated frames.",
        )
    fig = spectrogram_figure(
        resyn.original,
        resyn.resynthesis,
        sample_rate=cfg.audio.sample_rate,
        boundaries=resyn.boundaries,
    )
    from wms.synth.tables import n_harmonics

    n_harm = n_harmonics(cfg.features.n_bins, n)
    save(
        "spectrogram",
        fig,
        "Original vs resynthesis",
        "Spectrograms (first 10 s) of the held-out audio and of its resynthesis by the synth "
        "driven with the audio's own features (timbre transfer), at the analysis rate; dashed "
        f"lines mark where held-out segments join. The model holds {n_harm} harmonics, so the "
        f"resynthesis of a note stops at {n_harm}·f0.",
    )

    audio = [
        (audio_files["original"], "the held-out audio (segments joined by short silences)"),
        (
            audio_files["resynthesis"],
            f"its resynthesis at {resyn.render_rate} Hz (level matched to the original)",
        ),
    ]
    for e in examples:
        audio.append(
            (
                e["wav_target"],
                f"frame {e['frame']} ({e['label']}): target table looped 1 s at {e['f0']:.0f} Hz",
            )
        )
        audio.append(
            (e["wav_model"], f"frame {e['frame']}: predicted table looped 1 s at {e['f0']:.0f} Hz")
        )
    md, page = write_report(out, metrics, figs, audio)
    files["report"], files["html"] = md.name, page.name
    return files
