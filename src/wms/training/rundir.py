"""The run folder of ``wms train``: what training writes there, and nothing else lost.

A run folder holds ``model.wms``, ``config.toml``, ``loss_curves.png``, ``checkpoints/``,
``logs/`` and (for large corpora) ``arrays/``. Training records in ``.wms-run.json`` every
one of these it *created*, so that:

- a folder that already holds a run is refused (``--resume`` continues it, ``--force``
  starts over), instead of silently replacing its bundle;
- ``--force`` deletes exactly what an earlier training wrote there, never a file the
  user put in the folder, even inside ``logs/`` or ``arrays/``: in the folders it created
  only the files training writes (:data:`RUN_DIR_FILES`), then those folders if that left
  them empty (a run folder of wms 0.1.0, which kept no record, loses only its fixed-name
  files: ``model.wms``, ``config.toml``, ``loss_curves.png``, ``checkpoints/last.ckpt``);
- the memory-mapped training arrays are removed after the bundle is written without
  touching anything else under ``arrays/``.
"""

from __future__ import annotations

import json
from pathlib import Path

from wms.errors import OutputError
from wms.io import writable_dir, write_text

MANIFEST = ".wms-run.json"
#: What training writes in a run folder (files, then folders).
RUN_FILES = ("model.wms", "config.toml", "loss_curves.png")
RUN_DIRS = ("checkpoints", "logs", "arrays")
#: The files training writes in each of its folders (glob patterns); nothing else there is
#: ever deleted.
RUN_DIR_FILES = {
    "checkpoints": ("last.ckpt", "last-v*.ckpt", "last.ckpt.tmp*"),
    "logs": (
        "lightning.log",
        "tensorboard/version_*/events.out.tfevents.*",
        "tensorboard/version_*/hparams.yaml",
        "csv/version_*/metrics.csv",
        "csv/version_*/hparams.yaml",
    ),
    "arrays": ("rank*/inputs.npy", "rank*/targets.npy"),  # one folder per DDP rank
}
#: What a 0.1.0 run folder (no manifest) is known to hold for sure.
_LEGACY_FILES = (*RUN_FILES, "checkpoints/last.ckpt")


def used_by_a_run(out_dir: Path) -> list[str]:
    """The run entries present in ``out_dir`` (empty for a fresh folder)."""
    return [n for n in (MANIFEST, *RUN_FILES, *RUN_DIRS) if (out_dir / n).exists()]


def _created(out_dir: Path) -> list[str] | None:
    try:
        data = json.loads((out_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise OutputError(
            out_dir / MANIFEST, f"unreadable run record ({e}); remove it by hand"
        ) from None
    names = data.get("created") if isinstance(data, dict) else None
    allowed = {*RUN_FILES, *RUN_DIRS}
    if not isinstance(names, list) or not all(n in allowed for n in names):
        raise OutputError(out_dir / MANIFEST, "not a wms run record; remove it by hand")
    return names


def clear(out_dir: Path) -> list[str]:
    """Delete what training created in ``out_dir`` (see the module docstring); returns it."""
    names = _created(out_dir)
    removed = []
    for name in names if names is not None else _LEGACY_FILES:
        p = out_dir / name
        if name in RUN_DIR_FILES:
            if p.is_dir() and not p.is_symlink() and _clear_dir(p, RUN_DIR_FILES[name]):
                removed.append(name)
        elif p.is_file() or p.is_symlink():
            p.unlink()
            removed.append(name)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    return removed


def _clear_dir(root: Path, patterns: tuple[str, ...]) -> bool:
    """Delete the files under ``root`` that match ``patterns``, then the folders that left
    empty (``root`` included); True when anything was deleted."""
    hits = {p for pat in patterns for p in root.glob(pat) if p.is_file() or p.is_symlink()}
    for p in hits:
        p.unlink()
    for d in sorted({p.parent for p in hits} | {root}, key=lambda q: len(q.parts), reverse=True):
        while d.is_dir() and not any(d.iterdir()):
            d.rmdir()
            if d == root:
                break
            d = d.parent
    return bool(hits)


def open_run_dir(out_dir: str | Path, *, resume: bool, force: bool) -> Path:
    """Make ``out_dir`` ready for a training run and record what the run will create.

    Raises:
        OutputError: the folder holds a run and neither ``resume`` nor ``force`` is set,
            or it cannot be written.
    """
    out_dir = Path(out_dir)
    used = used_by_a_run(out_dir) if out_dir.is_dir() else []
    if used and not resume:
        if not force:
            raise OutputError(
                out_dir,
                f"already holds a training run ({', '.join(used)}); continue it with "
                f"--resume {out_dir / 'checkpoints' / 'last.ckpt'}, choose another --out, "
                "or add --force to replace what training wrote there (other files are kept)",
            )
        removed = clear(out_dir)
        if removed:
            print(f"--force: removed the earlier run's {', '.join(removed)} from {out_dir}")
    writable_dir(out_dir, what="--out run folder")
    created = _created(out_dir) or []
    created += [
        n for n in (*RUN_FILES, *RUN_DIRS) if n not in created and not (out_dir / n).exists()
    ]
    write_text(out_dir / MANIFEST, json.dumps({"created": created}, indent=1) + "\n")
    return out_dir


def remove_arrays(out_dir: Path, files: list[Path]) -> None:
    """Remove the memory-mapped arrays training wrote (``files``) and the folders they leave
    empty under ``out_dir/arrays``; anything else there stays."""
    for f in files:
        f.unlink(missing_ok=True)
    root = out_dir / "arrays"
    for d in sorted({f.parent for f in files}, key=lambda p: len(p.parts), reverse=True):
        while d != root.parent and d.is_dir() and not any(d.iterdir()):
            d.rmdir()
            if d == root:
                break
            d = d.parent
