"""Wavetable bank export: single-cycle frames along a path through the control space.

``wms_wavetable.wav`` holds 2..256 frames of 2048 samples (Serum, Vital, Bitwig; Surge reads
up to 512 frames of 16-bit PCM or 32-bit float) with Serum's ``clm `` and Surge's ``srge``
chunks, and ``wms_wavetable.json`` what each frame is. Checked by re-reading the WAV and
comparing each frame's spectrum with the harmonic amplitudes the PyTorch model predicts.

The bank is harmonic only: a model's noise part (``features.noise_bands``) has no place in
a single-cycle table. The sidecar and the summary say so, and the export warns.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wms import __version__
from wms.errors import ExportError
from wms.export.common import ExportResult, eval_copy, finish
from wms.io import writable_dir, write_bytes, write_text
from wms.synth.tables import GUARD_BEFORE, make_tables
from wms.training.model import WMSNet

#: Samples per wavetable frame (what Serum, Vital, Surge and Bitwig expect).
WAVETABLE_FRAME_SIZE = 2048
#: Sample rate written into the wavetable WAV (only a label: a frame is one cycle).
WAVETABLE_SAMPLE_RATE = 44100
#: What the bank leaves out of a model with a noise part (sidecar, summary and a warning).
NOISE_NOTE = (
    "the model has a noise part ({n} bands) that a wavetable cannot hold: the bank has only "
    "the harmonic part (the rtneural, onnx and torchscript exports carry the noise outputs; "
    "add the noise in the synth, see docs/EXPORT.md)"
)
#: WAV sample formats for the wavetable and their check tolerances (harmonic amplitude,
#: full scale = 1; 16-bit rounding moves a bin by at most one step, 2**-15 = 3.1e-5).
WAV_FORMATS = {"float": 1e-5, "24": 1e-5, "16": 1e-4}


def wavetable_path(bundle: Any, n_frames: int, *, control: str | None = None) -> np.ndarray:
    """Timbre controls ``[n_frames, n_timbre]`` along a line through the control space.

    ``control=None``: the first principal direction of the training map's
    controls, through their mean, from the 2nd to the
    98th percentile of the training frames' positions along it; the sign is
    chosen so the direction's largest component is positive. ``control=name``:
    that control swept over its range, the others at their training median.
    Points are clipped to the control ranges.

    Raises:
        ExportError: unknown control name, or a training map with no spread.
    """
    interface, name = bundle.interface, str(bundle.path)
    names, ranges = interface.control_names, interface.control_ranges
    c = np.asarray(bundle.training_map["controls"], dtype=np.float64)
    n_timbre = len(names)
    if n_timbre == 0:
        raise ExportError(f"{name}: the model has no timbre controls to move along")
    if control is not None:
        if control not in names:
            raise ExportError(
                f"{name}: unknown control {control!r}; controls are {', '.join(names)}"
            )
        j = names.index(control)
        path = np.repeat(np.median(c, axis=0)[None], n_frames, axis=0)
        path[:, j] = np.linspace(ranges[j, 0], ranges[j, 1], n_frames)
        return path
    # Controls share units (standardised MFCC, their PCA, or one embedding), so no rescaling.
    mean = c.mean(axis=0)
    u = c - mean
    _, s, vt = np.linalg.svd(u, full_matrices=False)
    if len(c) < 2 or s[0] <= 1e-12:
        raise ExportError(
            f"{name}: the training map has no spread in control space; "
            "choose a control to sweep (--control NAME)"
        )
    direction = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    lo, hi = np.percentile(u @ direction, [2.0, 98.0])
    path = mean + np.linspace(lo, hi, n_frames)[:, None] * direction[None, :]
    return np.clip(path, ranges[:, 0], ranges[:, 1])


def cycles_from_amplitudes(amps: np.ndarray, frame_size: int, phases: str = "zero") -> np.ndarray:
    """Single cycles ``[F, frame_size]``: ``sum_h a_h cos(2 pi h n / frame_size + theta_h)``,
    the phases of ``synth.phases`` (:func:`wms.synth.tables.cosine_basis`).

    The synth engine's own tables (:func:`wms.synth.tables.make_tables`) without
    their interpolation guard samples.

    Raises:
        ExportError: more harmonics than the frame can hold.
    """
    amps = np.atleast_2d(np.asarray(amps, dtype=np.float32))
    if amps.shape[1] >= frame_size // 2:
        raise ExportError(f"{amps.shape[1]} harmonics do not fit in a {frame_size}-sample frame")
    tables = make_tables(amps, frame_size, phases)
    return tables[:, GUARD_BEFORE : GUARD_BEFORE + frame_size].astype(np.float64)


@torch.no_grad()
def settled_spectra(model: WMSNet, inputs: np.ndarray, *, settle_steps: int = 32) -> np.ndarray:
    """log1p spectra ``[F, K]``: each input row held for ``settle_steps`` steps from a zero state.

    Each frame is the model's steady output for its controls, so a frame does not
    depend on its neighbours or on the direction the path is read in.
    """
    model = eval_copy(model)
    x = torch.from_numpy(np.asarray(inputs, dtype=np.float32))[:, None, :]
    y, _ = model(x.expand(-1, settle_steps, -1).contiguous())
    return y[:, -1].numpy()


def _wav_bytes(
    frames: np.ndarray, *, sample_rate: int, frame_size: int, sample_format: str
) -> bytes:
    """A mono RIFF/WAVE file: fmt, (fact), ``clm `` (Serum), ``srge`` (Surge), LIST/INFO, data."""
    x = np.asarray(frames, dtype=np.float64).ravel()
    if sample_format == "float":
        tag, bits, data = 3, 32, x.astype("<f4").tobytes()
    elif sample_format in ("16", "24"):
        # Readers divide by 2**(bits - 1); scaling by the same keeps every sample exact
        # to half a step, except a full-scale +1.0, which clips one step down.
        tag, bits = 1, int(sample_format)
        full = 2 ** (bits - 1)
        q = np.clip(np.round(x * full), -full, full - 1).astype("<i4")
        data = q.view(np.uint8).reshape(-1, 4)[:, : bits // 8].tobytes()
    else:
        raise ExportError(
            f"unknown WAV sample format {sample_format!r}; use {', '.join(WAV_FORMATS)}"
        )
    block = bits // 8

    def chunk(cid: bytes, body: bytes) -> bytes:
        return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")

    fmt = struct.pack("<HHIIHH", tag, 1, sample_rate, sample_rate * block, block, bits)
    if tag == 3:
        fmt += struct.pack("<H", 0)  # cbSize: non-PCM fmt chunks are 18 bytes
    # Serum writes "<!>2048 <16 flag digits> <text>"; readers parse the number after "<!>".
    clm = f"<!>{frame_size} 00000000 wavetable (wms {__version__})".encode("ascii")
    body = chunk(b"fmt ", fmt)
    if tag == 3:
        body += chunk(b"fact", struct.pack("<I", len(x)))
    body += chunk(b"clm ", clm)
    body += chunk(b"srge", struct.pack("<ii", 1, frame_size))  # Surge: version 1, frame size
    # INFO/ISFT names the writer, so `wms train` never mistakes a bank for a recording.
    body += chunk(b"LIST", b"INFO" + chunk(b"ISFT", f"wms {__version__} wavetable\0".encode()))
    body += chunk(b"data", data)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def read_wavetable_wav(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a wavetable WAV written by :func:`export_wavetable`.

    Returns ``(frames[F, frame_size] float64, info)`` where ``info`` holds the
    ``clm `` text, the ``srge`` (version, size), the frame size the ``clm `` chunk
    announces, the sample rate and the soundfile subtype. Samples are read by
    soundfile (libsndfile), chunks by a RIFF walk.

    Raises:
        ExportError: not a RIFF/WAVE file, no ``clm `` chunk, or a length that is
        not a whole number of frames.
    """
    import soundfile as sf

    path = Path(path)
    raw = path.read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ExportError(f"{path}: not a RIFF/WAVE file")
    chunks: dict[str, bytes] = {}
    at = 12
    while at + 8 <= len(raw):
        cid = raw[at : at + 4].decode("latin-1")
        (size,) = struct.unpack_from("<I", raw, at + 4)
        chunks.setdefault(cid, raw[at + 8 : at + 8 + size])
        at += 8 + size + (size & 1)
    if "clm " not in chunks:
        raise ExportError(f"{path}: no 'clm ' chunk; synths would not see the frame size")
    clm = chunks["clm "].decode("ascii", errors="replace")
    digits = clm[3:].split(" ", 1)[0] if clm.startswith("<!>") else ""
    if not digits.isdigit():
        raise ExportError(f"{path}: malformed 'clm ' chunk {clm!r}")
    frame_size = int(digits)
    srge = struct.unpack("<ii", chunks["srge"][:8]) if "srge" in chunks else None
    try:
        y, sr = sf.read(str(path), dtype="float64", always_2d=True)
        subtype = sf.info(str(path)).subtype
    except (sf.LibsndfileError, RuntimeError) as e:
        raise ExportError(f"{path}: unreadable WAV ({e})") from None
    if y.shape[1] != 1 or len(y) % frame_size:
        raise ExportError(
            f"{path}: {y.shape[1]} channel(s), {len(y)} samples: not mono whole {frame_size}-sample frames"
        )
    info = {
        "clm": clm,
        "srge": srge,
        "frame_size": frame_size,
        "sample_rate": sr,
        "subtype": subtype,
    }
    return y[:, 0].reshape(-1, frame_size), info


def export_wavetable(
    bundle: Any,
    out_dir: str | Path,
    *,
    n_frames: int = 256,
    control: str | None = None,
    sample_format: str = "float",
    normalize: str = "frame",
    settle_steps: int = 32,
) -> ExportResult:
    """Write ``wms_wavetable.wav`` (+ ``wms_wavetable.json``) and check it against PyTorch.

    Frames: the controls of :func:`wavetable_path`, at the training map's median
    voiced f0 (voicedness >= ``pitch.voicing_threshold``), voicedness 1, each held
    ``settle_steps`` steps (:func:`settled_spectra`); harmonic amplitudes by
    the interface's output layout; one zero-phase cycle of 2048 samples per frame.
    ``normalize="frame"`` scales each frame to peak 1 (loudness left to the
    synth), ``"bank"`` scales all by one factor (keeps relative loudness).

    Check: the WAV is read back; frame count and size, the ``clm ``/``srge``
    chunks, and for every frame the FFT magnitudes of harmonics 1..H (and the
    absence of anything else) against the predicted amplitudes times the frame's
    gain, in full-scale units.

    Raises:
        ExportError: bad ``n_frames`` / ``sample_format`` / ``normalize`` /
        ``control``, an unwritable folder, or a failed check.
    """
    if not 2 <= n_frames <= 256:
        raise ExportError(f"n_frames = {n_frames}: a wavetable has 2..256 frames (default 256)")
    if sample_format not in WAV_FORMATS:
        raise ExportError(
            f"unknown WAV sample format {sample_format!r}; use {', '.join(WAV_FORMATS)}"
        )
    if normalize not in ("frame", "bank"):
        raise ExportError(f"normalize = {normalize!r}: use 'frame' or 'bank'")
    if settle_steps < 1:
        raise ExportError(f"settle_steps = {settle_steps} must be at least 1")
    out = writable_dir(out_dir)
    frame_size = WAVETABLE_FRAME_SIZE
    tm = {k: np.asarray(bundle.training_map[k], dtype=np.float64) for k in ("f0", "voicedness")}
    voiced = tm["voicedness"] >= bundle.config.pitch.voicing_threshold
    f0_source = (
        "median of voiced training frames"
        if voiced.any()
        else "median of all training frames (none voiced)"
    )
    f0 = float(np.median(tm["f0"][voiced] if voiced.any() else tm["f0"]))
    controls = wavetable_path(bundle, n_frames, control=control)
    inputs = bundle.interface.inputs(controls, np.full(n_frames, f0), np.ones(n_frames))
    spectra = settled_spectra(bundle.model, inputs, settle_steps=settle_steps)
    amps = bundle.interface.harmonics(spectra)
    phases = bundle.config.synth.phases
    cycles = cycles_from_amplitudes(amps, frame_size, phases)
    peaks = np.max(np.abs(cycles), axis=1)
    if normalize == "frame":
        gains = np.where(peaks > 0, 1.0 / np.where(peaks > 0, peaks, 1.0), 0.0)
    else:
        top = peaks.max()
        gains = np.full(n_frames, 1.0 / top if top > 0 else 0.0)
    frames = cycles * gains[:, None]
    wav = write_bytes(
        out / "wms_wavetable.wav",
        _wav_bytes(
            frames,
            sample_rate=WAVETABLE_SAMPLE_RATE,
            frame_size=frame_size,
            sample_format=sample_format,
        ),
    )
    side = {
        "frames": n_frames,
        "frame_size": frame_size,
        "path": "first principal direction of the training map"
        if control is None
        else f"sweep of {control!r}",
        "control_names": list(bundle.interface.control_names),
        "controls": controls.tolist(),
        "f0_hz": f0,
        "f0_source": f0_source,
        "voicedness": 1.0,
        "settle_steps": settle_steps,
        "harmonics": int(amps.shape[1]),
        "phase": "zero (cosine) phase: every harmonic peaks at sample 0"
        if phases == "zero"
        else "Schroeder phases (synth.phases): harmonic h at -pi h (h - 1) / H",
        "normalize": normalize,
        "sample_format": sample_format,
        "silent_frames": int(np.sum(peaks == 0)),
    }
    n_noise = bundle.interface.n_noise
    if n_noise:
        side["noise"] = NOISE_NOTE.format(n=n_noise)
    sidecar = write_text(out / "wms_wavetable.json", json.dumps(side, indent=2) + "\n")

    got, info = read_wavetable_wav(wav)
    if got.shape != (n_frames, frame_size) or info["srge"] != (1, frame_size):
        raise ExportError(
            f"{wav}: read back {got.shape[0]} frames of {info['frame_size']} samples "
            f"(srge {info['srge']}), expected {n_frames} of {frame_size}"
        )
    # Amplitudes in full-scale units (a cosine of amplitude a reads a), so the 16-bit
    # tolerance holds by construction: rounding (<= half a step a sample) moves a bin
    # by at most one step, 2**-15.
    mag = np.abs(np.fft.rfft(got, axis=1)) / (frame_size / 2)
    n_harm = amps.shape[1]
    expected = np.zeros_like(mag)
    expected[:, 1 : n_harm + 1] = amps * gains[:, None]
    diff = np.abs(mag - expected)
    checks = {
        "wav_harmonics_vs_torch": float(np.max(diff[:, 1 : n_harm + 1])),
        "wav_other_bins": float(np.max(np.delete(diff, np.s_[1 : n_harm + 1], axis=1))),
    }
    info_out = {
        k: side[k]
        for k in (
            "frames",
            "frame_size",
            "harmonics",
            "f0_hz",
            "path",
            "normalize",
            "sample_format",
        )
    }
    info_out["clm"] = info["clm"]
    warnings = []
    if n_noise:
        info_out["noise"] = side["noise"]
        warnings.append(NOISE_NOTE.format(n=n_noise))
    if sample_format == "24":
        # Surge XT's loader takes 16-bit PCM or 32-bit float wavetables only (read in its
        # WAVFileSupport.cpp); Serum, Vital and Bitwig read 24-bit.
        warnings.append(
            "Surge XT loads only 16-bit PCM and 32-bit float wavetables: this 24-bit bank "
            "will not open there (use --wav-format float or 16 for Surge)"
        )
    if warnings:
        info_out["warnings"] = warnings
    return finish("wavetable", out, [wav, sidecar], checks, WAV_FORMATS[sample_format], info_out)
