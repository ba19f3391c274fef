"""Writing files safely: atomic writes, JSON data, output folders.

Every file WMS writes goes through :func:`atomic_target` (or the helpers built on it): the
content is written to a temporary name beside the target and renamed over it in one step,
so a reader never sees a half-written file and a failed write leaves the old file (or
none) in place. Failures raise :class:`~wms.errors.OutputError` naming the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wms.errors import OutputError


@contextlib.contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The caller writes the temporary file (with any library: torch.save, soundfile, ...).
    On an exception the temporary file is removed and ``path`` is untouched; an
    ``OSError`` (or a library's ``RuntimeError`` for a full disk) becomes an
    :class:`OutputError` naming ``path``.

    Raises:
        OutputError: the parent folder cannot be created or the file cannot be written.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        raise OutputError(path, f"cannot write ({getattr(e, 'strerror', None) or e})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def json_data(x: Any) -> Any:
    """``x`` as plain JSON data: numpy arrays and scalars, tensors, paths, tuples converted.

    Raises:
        TypeError: a value with no JSON form.
    """
    if isinstance(x, Mapping):
        return {str(k): json_data(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_data(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, (str, bool, int, float)):
        return x
    if hasattr(x, "detach") and hasattr(x, "tolist"):  # a torch tensor, without importing torch
        return x.detach().cpu().tolist()
    raise TypeError(f"cannot write {type(x).__name__} as JSON")


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` (through :func:`json_data`) as JSON to ``path`` atomically."""
    return write_text(path, json.dumps(json_data(obj), indent=indent) + "\n")


def writable_dir(path: str | Path, *, what: str = "--out") -> Path:
    """Create folder ``path`` (and parents) and check a file can be written in it.

    ``what`` names the folder in messages (e.g. ``"--out"``).

    Raises:
        OutputError: ``path`` is a file, lies under a file, or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, f"exists and is not a folder; choose another {what}")
    probe = path / f".wms-write-test.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(
            path, f"cannot write there ({e.strerror or e}); choose another {what}"
        ) from None
    return path


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same existing file, however they are spelt (symlinks,
    ``./``, ``..``, letter case on case-insensitive file systems, hard links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_to_replace_inputs(outputs, inputs, *, what: str = "--out") -> None:
    """Raise before any work when an output would replace one of the command's inputs.

    ``outputs`` and ``inputs`` are paths; only outputs that already exist can replace
    anything, and they are compared with :func:`same_file`.

    Raises:
        OutputError: naming the output and the input it would replace.
    """
    inputs = [Path(p) for p in inputs if p is not None]
    for out in outputs:
        out = Path(out)
        if not out.exists():
            continue
        for inp in inputs:
            if same_file(out, inp):
                raise OutputError(
                    out,
                    f"writing it would replace the input {inp}; choose another {what} "
                    "(nothing was written)",
                )


def zip_damage(path: str | Path, what: str) -> str | None:
    """Why the torch zip file at ``path`` (a ``what``: bundle, checkpoint) cannot be trusted,
    or ``None`` when every member's CRC checks out (``torch.load`` checks none)."""
    try:
        with zipfile.ZipFile(path) as z:
            damaged = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"truncated or corrupt {what} ({e})"
    if damaged is not None:
        return (
            f"corrupt {what}: {damaged.rsplit('/', 1)[-1]} fails its checksum (the file was "
            "damaged after it was written)"
        )
    return None
