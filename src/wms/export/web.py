"""The web instrument: ``wms export BUNDLE --format web --out DIR`` and ``wms play BUNDLE``.

The export is a static folder that plays the model in a browser, from ``file://`` (opened
by double-click) or any static host, without network access::

    index.html     the instrument page (classic <script> tags only: no fetch, no ES modules)
    style.css
    wms_engine.js  the synthesiser (GRU + wms.synth's synthesis) in plain JS, shared by the
                   AudioWorklet and the page (``window.wms.renderOffline``)
    wms_worklet.js the AudioWorklet processor; its module is built from the engine's source
                   text at run time (a data: URL on file://, a Blob URL elsewhere)
    app.js         the page: XY pad over the training map, keyboard, MIDI, views, recorder
    model.js       ``window.WMS_MODEL = {...}``: :func:`web_model_data` of the bundle
    export_summary.json

``wms play`` writes the export to a temporary folder, serves it on ``127.0.0.1`` (a free
port; only that folder, no listings, ``..`` refused) and opens the default browser.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import json
import math
import shutil
import signal
import sys
import tempfile
import threading
import urllib.parse
import webbrowser
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from wms import __version__
from wms.errors import ExportError, PlayError
from wms.export.common import ExportResult, finish, noise_metadata
from wms.io import writable_dir, write_bytes, write_text

#: ``window.WMS_MODEL.format`` / ``.version`` (the engine refuses other values).
WEB_FORMAT, WEB_VERSION = "wms-web", 1
#: Files copied verbatim from the package (``wms/export/web_static/``).
WEB_ASSETS = ("index.html", "style.css", "wms_engine.js", "wms_worklet.js", "app.js")
MODEL_FILE = "model.js"
SUMMARY_FILE = "export_summary.json"
#: Significant digits kept for the training map (drawing and tours only).
MAP_DIGITS = 6


# --------------------------------------------------------------------------- model data


def _weight(t: Any) -> dict[str, Any]:
    a = np.ascontiguousarray(t.detach().cpu().numpy(), dtype="<f4")
    return {"shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def _rounded(a: np.ndarray) -> list:
    a = np.asarray(a, dtype=np.float64)
    return np.vectorize(lambda v: float(f"{v:.{MAP_DIGITS}g}"), otypes=[object])(a).tolist()


def web_model_data(bundle: Any) -> dict[str, Any]:
    """Everything the browser engine needs from a loaded :class:`wms.bundle.Bundle`.

    Plain JSON data (``model.js`` assigns it to ``window.WMS_MODEL``):

    - ``interface``: the bundle's :class:`~wms.interface.ModelInterface` state: control
      names, ranges ``[[lo, hi], ...]`` and defaults, the pitch mapping (``fmin``,
      ``log_eps``, the training ``f0_range`` the clamp uses, ``f0_default``),
      ``include_voicedness``, and the output layout: harmonic ``h`` (1..``n_harmonics``)
      has amplitude ``expm1(y[harmonic_offset + harmonic_stride*(h-1)])``.
    - ``synth``: the bundle's ``SynthConfig`` fields.
    - ``model``: layer sizes and the state_dict, each tensor ``{shape, data}`` with ``data``
      base64 of little-endian float32.
    - ``training_map``: ``controls [M][n_timbre]`` and ``f0 [M]`` (Hz), 6 significant digits.
    - ``noise``: :func:`wms.export.common.noise_metadata`, the record every export carries
      (``None`` for a harmonics-only model).
    - ``controls``: per timbre control ``{name, label, description}``, what it does
      (:func:`wms.synth.network.control_effects`), for the sliders.
    """
    from wms.synth.network import control_effects

    net, tm = bundle.model, bundle.training_map
    effects = control_effects(bundle)
    return {
        "format": WEB_FORMAT,
        "version": WEB_VERSION,
        "wms_version": __version__,
        "name": Path(str(bundle.path)).name,
        "interface": bundle.interface.to_state(),
        "synth": dataclasses.asdict(bundle.config.synth),
        "model": {
            "n_inputs": int(net.n_inputs),
            "n_outputs": int(net.n_outputs),
            "encoder_size": int(net.input_encoder[0].out_features),
            "hidden_size": int(net.hidden_size),
            "num_layers": int(net.num_layers),
            "output_activation": str(net.output_activation),
            "weights": {k: _weight(v) for k, v in net.state_dict().items()},
        },
        "training_map": {"controls": _rounded(tm["controls"]), "f0": _rounded(tm["f0"])},
        "noise": (
            noise_metadata(bundle.interface, bundle.config.synth.noise_stages)
            if bundle.interface.n_noise
            else None
        ),
        "controls": [{"name": e.name, "label": e.label, "description": str(e)} for e in effects],
    }


def model_js(data: dict[str, Any]) -> str:
    """``model.js``: a classic script assigning ``window.WMS_MODEL`` (loads from file://).
    JSON is valid JavaScript; ``ensure_ascii`` keeps U+2028/2029 escaped."""
    return "window.WMS_MODEL = " + json.dumps(data, ensure_ascii=True, allow_nan=False) + ";\n"


def read_model_js(path: str | Path) -> dict[str, Any]:
    """Parse a ``model.js`` written by :func:`model_js` back to its data."""
    text = Path(path).read_text(encoding="ascii")
    head, tail = "window.WMS_MODEL = ", ";\n"
    if not (text.startswith(head) and text.endswith(tail)):
        raise ExportError(f"{path}: not a model.js written by wms export --format web")
    return json.loads(text[len(head) : -len(tail)])


def decode_weight(w: dict[str, Any]) -> np.ndarray:
    """``{shape, data}`` -> float32 array."""
    a = np.frombuffer(base64.b64decode(w["data"]), dtype="<f4")
    return a.reshape(w["shape"]).astype(np.float32)


# --------------------------------------------------------------------------- export


def asset_dir() -> Path:
    """The packaged web files (``wms/export/web_static``)."""
    return Path(str(resources.files("wms.export") / "web_static"))


def export_web(bundle: Any, out_dir: str | Path) -> ExportResult:
    """Write the web instrument of a loaded bundle to ``out_dir``.

    The weights in ``model.js`` are read back and compared with the bundle's (they must be
    bit-identical); the result goes to ``export_summary.json``.

    Raises:
        OutputError: ``out_dir`` cannot be written.
        ExportError: the packaged web files are missing, or the read-back check fails.
    """
    src = asset_dir()
    missing = [name for name in WEB_ASSETS if not (src / name).is_file()]
    if missing:
        raise ExportError(
            f"the web instrument's files {', '.join(missing)} are missing from {src}; "
            "reinstall wms (pip install -e .)"
        )
    out = writable_dir(out_dir)
    data = web_model_data(bundle)
    files = [write_bytes(out / name, (src / name).read_bytes()) for name in WEB_ASSETS]
    files.append(write_text(out / MODEL_FILE, model_js(data)))
    back = read_model_js(out / MODEL_FILE)
    sd = bundle.model.state_dict()
    diff = 0.0
    if set(back["model"]["weights"]) != set(sd):
        diff = math.inf
    else:
        for k, t in sd.items():
            want = t.detach().cpu().numpy().astype(np.float32)
            got = decode_weight(back["model"]["weights"][k])
            diff = max(diff, float(np.max(np.abs(got - want))) if want.size else 0.0)
    index = (out / "index.html").resolve().as_uri()
    return finish("web", out, files, {"weights_read_back": diff}, 0.0, {"open": index})


# --------------------------------------------------------------------------- server


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files of one folder only: no listings, no ``..``, no other hosts."""

    root: Path
    allowed_hosts: frozenset[str]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, directory=str(self.root), **kwargs)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        pass  # quiet: the page makes a few requests, nothing worth a line each

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def _resolve(self) -> Path | None:
        """The file a request path names inside ``root``, or None (then 404)."""
        raw = urllib.parse.urlsplit(self.path).path
        try:
            path = urllib.parse.unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return None
        parts = [p for p in path.split("/") if p]
        if any(p in ("..", ".") or "\\" in p or "\0" in p for p in parts):
            return None
        if not parts:
            parts = ["index.html"]
        target = self.root.joinpath(*parts).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return None
        return target

    def _check(self) -> Path | None:
        host = self.headers.get("Host", "")
        if host not in self.allowed_hosts:
            self.send_error(403, "unknown host")  # DNS rebinding guard: loopback names only
            return None
        target = self._resolve()
        if target is None:
            self.send_error(404)
        return target

    def send_head(self):  # type: ignore[override]
        target = self._check()
        if target is None:
            return None
        self.path = "/" + target.relative_to(self.root).as_posix()
        return super().send_head()

    def list_directory(self, path):  # type: ignore[override]
        self.send_error(404)
        return None

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        self.send_error(405)

    do_PUT = do_DELETE = do_POST


class WebServer:
    """A loopback HTTP server for one folder (``serve_forever`` in the calling thread).

    Args:
        root: the folder to serve.
        port: TCP port on 127.0.0.1 (0: a free one).
    """

    def __init__(self, root: str | Path, port: int = 0):
        self.root = Path(root).resolve()
        handler = type("Handler", (_Handler,), {"root": self.root, "allowed_hosts": frozenset()})
        try:
            self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as e:
            raise PlayError(f"cannot listen on 127.0.0.1:{port} ({e.strerror or e})") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        handler.allowed_hosts = frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        self.httpd.server_close()


class _Stop(Exception):
    """Raised in the main thread by the SIGTERM handler."""


def run_play(args: Any) -> int:
    """``wms play BUNDLE [--no-browser]``: export to a temporary folder, serve it on
    127.0.0.1 until Ctrl-C or SIGTERM, then remove the folder."""
    from wms.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    tmp = Path(tempfile.mkdtemp(prefix="wms-play-"))
    previous = signal.getsignal(signal.SIGTERM)
    server = None
    try:
        export_web(bundle, tmp)
        server = WebServer(tmp)

        def stop(signum, frame):
            raise _Stop

        signal.signal(signal.SIGTERM, stop)
        print(f"wms play: serving {server.url} (from {tmp}; Ctrl-C to stop)", flush=True)
        if not args.no_browser:
            # a console browser may block: open from a thread, the server is already bound
            threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        print("wms play: stopped", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


# --------------------------------------------------------------------------- headless use

#: Chromium flags for headless use on a closed network: no background connections (they are
#: refused and logged), no sandbox (containers), audio allowed to start without a gesture.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)


def headless_chromium(
    profile_dir: str | Path,
    *,
    binary: str = "/usr/bin/chromium",
    driver: str = "/usr/bin/chromedriver",
    window_size: tuple[int, int] = (1360, 1200),
):
    """A Selenium driver of headless Chromium with a fresh profile in ``profile_dir`` and the
    browser console log enabled (``driver.get_log("browser")``). Default file:// security
    (no ``--allow-file-access-from-files``). Needs ``selenium`` (the ``dev`` extra).

    Raises:
        PlayError: Chromium or chromedriver is missing.
    """
    for path in (binary, driver):
        if not Path(path).is_file():
            raise PlayError(
                f"{path} not found; install Chromium (Debian: apt-get install chromium "
                "chromium-driver; ./dev test does this)"
            )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


_RENDER_JS = """
const [opts, direct, done] = arguments;
const t0 = performance.now();
Promise.resolve(direct ? wms.renderDirect(opts) : wms.renderOffline(opts)).then((y) => {
  const ms = performance.now() - t0;
  const b = new Uint8Array(y.buffer, y.byteOffset, y.byteLength);
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
  done({ ms, data: btoa(s) });
}).catch((e) => done({ error: String(e && e.message ? e.message : e) }));
"""


def render_in_browser(
    driver, options: dict[str, Any], *, direct: bool = False
) -> tuple[np.ndarray, float]:
    """Call ``window.wms.renderOffline(options)`` on the page ``driver`` shows (or
    ``renderDirect`` with ``direct``); returns ``(samples float32, milliseconds in the page)``.

    Raises:
        PlayError: the page rejected the render (its message).
    """
    r = driver.execute_async_script(_RENDER_JS, options, direct)
    if "error" in r:
        raise PlayError(f"renderOffline({json.dumps(options)}): {r['error']}")
    return np.frombuffer(base64.b64decode(r["data"]), dtype="<f4").astype(np.float32), r["ms"]
