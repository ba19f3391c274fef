"""One exception hierarchy for everything WMS reports to a user.

Classes follow the *kind* of failure, not the command it happens in:

- bad user input, one class per domain: :class:`ConfigError` (config keys and values,
  command-line arguments), :class:`AudioError` (an input audio file), :class:`DataError`
  (analysed data that cannot be used: too little for a split, a stale cache entry),
  :class:`ControlError` (control files, MIDI files, control values), :class:`BundleError`
  (a model bundle or checkpoint that is missing, corrupt or of another version);
- :class:`PitchError`: a pitch tracker that cannot run here (missing weights);
- :class:`TrainingError`: training that diverged (no bundle is written);
- :class:`ExportError`: an export that does not reproduce the PyTorch model;
- :class:`PlayError`: ``wms play`` cannot serve (no free port);
- :class:`OutputError`: an output that cannot be written, or would replace an input.

The CLI prints a :class:`WMSError`'s message and exits with status 2; messages name the
input and say how to fix it. Programming errors (a function called with arrays of the
wrong shape, an unknown option name from code) raise ``ValueError`` / ``TypeError``.
"""

from __future__ import annotations

from pathlib import Path


class WMSError(Exception):
    """Base class of all user-facing WMS errors."""


class _PathError(WMSError):
    """An error about one file or folder: the message starts with its path."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.reason))


class ConfigError(WMSError):
    """An unknown key, a value of the wrong type or out of range, a bad CLI argument."""


class AudioError(_PathError):
    """An input audio file that is missing, unreadable, silent, too short or unusable."""


class PitchError(WMSError):
    """A pitch tracker that cannot run (missing weights)."""


class DataError(WMSError):
    """Analysed data that cannot be used (nothing usable, too little for a split)."""


class BundleError(WMSError):
    """A model bundle that is missing, corrupt, of another version or not a bundle."""


class ControlError(WMSError):
    """Bad synthesis controls: malformed control/MIDI files, out-of-range values."""


class TrainingError(WMSError):
    """Training that cannot go on (the loss diverged); no bundle is written."""


class ExportError(WMSError):
    """An export that does not match the PyTorch model, or an export option that cannot work."""


class PlayError(WMSError):
    """``wms play`` cannot serve the web instrument (no free port, no browser for tests)."""


class OutputError(_PathError):
    """An output that cannot be written (or that would replace one of the command's inputs)."""
