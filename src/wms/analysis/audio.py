"""Audio I/O: find, read (mono, resampled) and write audio files.

Reading goes through libsndfile (``soundfile``), so wav, flac, ogg/vorbis,
aiff and — where the installed libsndfile has it — mp3 are read. Resampling is
soxr's "VHQ" band-limited resampler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from wms import __version__
from wms.errors import AudioError, OutputError
from wms.io import atomic_target

#: Every audio file WMS writes is tagged ``wms <version> <what>`` in its software field.
WMS_TAG_PREFIX = "wms "
#: Suffixes searched by default when a folder is given.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3")


@dataclass(frozen=True)
class AudioScan:
    """What :func:`find_audio_files` found: ``files`` to use (sorted) and ``skipped``
    ``(path, reason)`` pairs (symlink loops, broken links, audio written by wms itself)."""

    files: list[Path]
    skipped: list[tuple[Path, str]]


def wms_tag(path: str | Path) -> str | None:
    """The ``wms <version> <what>`` tag WMS writes into every audio file it makes
    (:func:`write_audio`; the WAV INFO/ISFT field), or None for other files."""
    try:
        with sf.SoundFile(str(path)) as f:
            software = f.software or ""
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError):
        return None  # unreadable files are reported when they are read
    return software.split(" (libsndfile")[0] if software.startswith(WMS_TAG_PREFIX) else None


def find_audio_files(path: str | Path, extensions=AUDIO_EXTENSIONS) -> AudioScan:
    """A file, or every audio file under a folder (recursive, symlinked folders followed).

    Files whose suffix is not in ``extensions`` are ignored. Reported in ``skipped`` rather
    than used: symlinks that loop back to a folder already searched, broken links, and audio
    files WMS wrote itself (renders, evaluation audio, wavetable banks: they carry a
    ``wms ...`` tag), so a render or export saved into a training folder is never learnt.

    Raises:
        AudioError: ``path`` does not exist.
    """
    path = Path(path)
    if path.is_file():
        return AudioScan([path], [])
    if not path.exists():
        raise AudioError(path, "no such file or folder")
    exts = {e.lower() for e in extensions}
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen = {os.path.realpath(path)}
    for root, dirs, names in os.walk(path, followlinks=True):
        dirs.sort()  # a deterministic order: which of two links to one folder is searched
        here = os.path.realpath(root)
        for d in list(dirs):
            full = Path(root) / d
            real = os.path.realpath(full)
            if real in seen:
                dirs.remove(d)
                loop = here == real or here.startswith(real + os.sep)
                why = (
                    f"symbolic link loop (points back to {real}); not searched"
                    if loop
                    else f"another link to {real}, already searched"
                )
                skipped.append((full, why))
            else:
                seen.add(real)
        for name in names:
            full = Path(root) / name
            if full.suffix.lower() not in exts:
                continue
            if not full.exists():
                skipped.append((full, "broken symbolic link"))
                continue
            tag = wms_tag(full)
            if tag is not None:
                skipped.append((full, f"written by {tag}, not a recording; not used"))
                continue
            files.append(full)
    return AudioScan(sorted(files), sorted(skipped))


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate`` Hz.

    Channels are averaged; the signal is resampled with soxr (very high
    quality) when the file's rate differs. Raises :class:`AudioError` naming
    the file when it is missing, unreadable or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioError(path, f"unreadable or corrupt audio ({e})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "the file holds no samples")
    y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(y)):
        raise AudioError(path, "the file holds NaN or infinite samples")
    return resample(y, sr, sample_rate)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling of a mono signal (soxr VHQ); float32 out."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    if sr_in == sr_out:
        return y
    return soxr.resample(y, sr_in, sr_out, quality="VHQ").astype(np.float32, copy=False)


def write_audio(
    path: str | Path,
    y: np.ndarray,
    sample_rate: int,
    subtype: str = "PCM_16",
    *,
    what: str | None = None,
) -> Path:
    """Write a mono (or [n, channels]) signal atomically; ``subtype`` PCM_16, PCM_24 or FLOAT.

    The container follows the suffix (``.wav``, ``.flac``, ``.ogg``, ``.aiff``; WAV for any
    other). Outputs pass ``what`` (``"render"``, ``"evaluation audio"``): the file is then
    tagged ``wms <version> <what>`` (see :func:`wms_tag`), so WMS never mistakes its own
    output for a recording to train on. The parent folder is created.

    Raises:
        OutputError: the file cannot be written.
    """
    path = Path(path)
    container = {".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".aif": "AIFF", ".aiff": "AIFF"}
    try:
        y = np.asarray(y, dtype=np.float32)
        fmt = container.get(path.suffix.lower(), "WAV")
        with atomic_target(path) as tmp:
            channels = 1 if y.ndim == 1 else y.shape[1]
            with sf.SoundFile(str(tmp), "w", int(sample_rate), channels, subtype, format=fmt) as f:
                if what is not None:
                    f.software = f"{WMS_TAG_PREFIX}{__version__} {what}"
                f.write(y)
    except (sf.LibsndfileError, ValueError, TypeError) as e:
        raise OutputError(path, f"cannot write audio ({e})") from None
    return path
