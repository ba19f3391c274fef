"""One exception hierarchy for everything WMS reports to a user.

Every error raised for bad user input (files, configs, CLI arguments, bundles,
control data) is a :class:`WMSError`; the CLI prints its message and exits with
status 2 instead of a traceback. Messages name the offending input and say how
to fix it.
"""

from __future__ import annotations


class WMSError(Exception):
    """Base class of all user-facing WMS errors."""


class ConfigError(WMSError):
    """An unknown key, a value of the wrong type, or a value out of range."""


class AudioError(WMSError):
    """An audio file that is missing, unreadable, silent, too short or unusable."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class PitchError(WMSError):
    """A pitch tracker that cannot run (unknown method, missing weights)."""


class DataError(WMSError):
    """Prepared data that cannot be used (nothing usable, too little for a split)."""


class BundleError(WMSError):
    """A model bundle that is missing, truncated, of another version or not a bundle."""


class ControlError(WMSError):
    """Bad synthesis controls: malformed control/MIDI files, out-of-range values."""


class ExportError(WMSError):
    """An export that cannot be written or does not match the PyTorch model."""
