"""WMS — Wavetable Manifold Synthesis.

Train a small recurrent network on your own recordings so that it generates
wavetables from timbre controls; play them offline, from MIDI, from another
recording or live; export the model to RTNeural, ONNX and TorchScript.
"""

from wms.errors import WMSError

__version__ = "0.4.0"

__all__ = ["WMSError", "__version__", "load_bundle"]


def load_bundle(path):
    """Load a model bundle (``model.wms``); see :func:`wms.bundle.load_bundle`."""
    from wms.bundle import load_bundle as _load

    return _load(path)
