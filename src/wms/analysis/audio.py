"""Audio I/O: find, read (mono, resampled) and write audio files.

Reading goes through libsndfile (``soundfile``), so wav, flac, ogg/vorbis,
aiff and — where the installed libsndfile has it — mp3 are read. Resampling is
soxr's "VHQ" band-limited resampler.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from wms.errors import AudioError, OutputError
from wms.io import atomic_target

#: Suffixes searched by default when a folder is given.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3")


def find_audio_files(path: str | Path, extensions=AUDIO_EXTENSIONS) -> list[Path]:
    """A file as a one-element list, or every audio file under a folder (recursive, sorted).

    Files in a folder whose suffix is not in ``extensions`` are ignored.
    Raises :class:`AudioError` when ``path`` does not exist.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise AudioError(path, "no such file or folder")
    exts = {e.lower() for e in extensions}
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in exts)


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


def write_audio(path: str | Path, y: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write a mono (or [n, channels]) signal atomically; ``subtype`` PCM_16, PCM_24 or FLOAT.

    The container follows the suffix (``.wav``, ``.flac``, ``.ogg``, ``.aiff``; WAV for any
    other). The parent folder is created. Raises :class:`OutputError` if it cannot be written.
    """
    path = Path(path)
    container = {".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".aif": "AIFF", ".aiff": "AIFF"}
    try:
        with atomic_target(path) as tmp:
            sf.write(
                str(tmp),
                np.asarray(y, dtype=np.float32),
                int(sample_rate),
                subtype=subtype,
                format=container.get(path.suffix.lower(), "WAV"),
            )
    except (sf.LibsndfileError, ValueError, TypeError) as e:
        raise OutputError(path, f"cannot write audio ({e})") from None
    return path
