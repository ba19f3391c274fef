"""The report of ``wms evaluate`` (Markdown + HTML).

:func:`write_figures_and_report` makes every figure for one evaluation
(:mod:`wms.evaluation.figures`) and writes ``report.md`` and ``index.html`` that show the
same images.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from wms.evaluation.figures import (
    brightness,
    control_map_figure,
    loss_curves,
    save_figure,
    spectra_figure,
    spectrogram_figure,
    waveforms_figure,
)
from wms.io import write_text

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
        OutputError: a file cannot be written.
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
    for p, text in zip(paths, ("\n".join(md), page), strict=True):
        write_text(p, text)
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
    layout = bundle.interface.outputs
    figs: list[tuple[str, str, str]] = []
    files: dict[str, str] = {}

    def save(key: str, fig: Figure, title: str, caption: str) -> None:
        name = f"{key}.png"
        save_figure(fig, out / name)
        figs.append((name, title, caption))
        files[key] = name

    save(
        "spectra",
        spectra_figure(examples, layout=layout),
        "Predicted vs target spectra",
        "log1p magnitude per bin of held-out frames (x in harmonics: harmonic h is bin B·h, B = features.bins_per_harmonic, the "
        "bins between are window leakage). Frames are picked at the 10th/50th/75th/95th "
        "percentile of the model's per-frame LSD among voiced frames; the dashed line is the "
        "nearest-training-frame baseline.",
    )
    save(
        "waveforms",
        waveforms_figure(examples, layout=layout),
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
            colour, label = brightness(tm["targets"], layout), "brightness (centroid, harmonics)"
        else:
            colour, label = np.asarray(tm["voicedness"]), "voicedness"
        fig = control_map_figure(
            tm["controls"],
            tm["f0"],
            colour,
            names=list(bundle.interface.control_names),
            colour_label=label,
            heldout=heldout_inputs[:, : bundle.interface.n_timbre],
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
    n_harm = layout.n_harmonics
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
