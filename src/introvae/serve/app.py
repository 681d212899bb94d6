"""The explorer page's HTTP layer: a Flask app over an `Explorer`, and the local server `introvae serve` runs.

Flask (with Werkzeug's threaded server) rather than an ASGI stack: the work per request is one small batch through
PyTorch under a lock, so an async server would buy nothing, and Flask brings its own test client and multipart
parsing without further packages.

Requests from other origins are refused: the Host header must name this machine (a loopback name, or the --host
given), so that a web page cannot reach the server through a DNS name that points at 127.0.0.1 (DNS rebinding);
a request that carries an Origin header must come from this server's own origin; and a state-changing request
that a browser marks as cross-site (Sec-Fetch-Site) is refused too. Every answer of /api is JSON, errors included
(`{"error": "one sentence"}`), so that the page can show the message; a bad upload is a 400 or 413, never a 500.
"""

from __future__ import annotations

import base64
import io
import logging
import socket
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory
from PIL import Image
from torch import Tensor
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, make_server

from ..errors import UserError
from ..images import to_uint8
from . import LOOPBACK_HOSTS
from .explorer import MAX_UPLOAD_BYTES, Explorer

__all__ = ["create_app", "make_explorer_server", "LOOPBACK_NAMES", "png_data_url"]

STATIC = Path(__file__).with_name("static")
# The same hosts as Host header values (an IPv6 address in brackets).
LOOPBACK_NAMES = frozenset(f"[{host}]" if ":" in host else host for host in LOOPBACK_HOSTS)
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

log = logging.getLogger(__name__)


def png_data_url(image: Tensor) -> str:
    """A float image (C, H, W) in [0, 1] as a data: URL of a PNG, which an <img> shows as it is."""
    array = to_uint8(image).cpu().numpy()
    picture = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _host_name(host: str) -> str:
    """The name part of a Host header ("127.0.0.1:8000" -> "127.0.0.1", "[::1]:8000" -> "[::1]"), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_host_names(bind_host: str) -> frozenset[str] | None:
    """Host names the server answers to when bound to `bind_host`; None (any) for a wildcard address."""
    if bind_host in _WILDCARD_HOSTS:
        return None
    name = f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host
    return LOOPBACK_NAMES | {name.lower()}


def create_app(explorer: Explorer, bind_host: str = "127.0.0.1") -> Flask:
    """The Flask app of the page for `explorer`, answering to the host names that `bind_host` allows."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    # Multipart framing adds a little to the file itself; the file's own size is checked with a clear message.
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES + 2**16
    _refuse_other_origins(app, allowed_host_names(bind_host))
    _answer_errors_in_json(app)
    _add_routes(app, explorer)
    return app


def _refuse_other_origins(app: Flask, hosts: frozenset[str] | None) -> None:
    """403 for requests to another host name (DNS rebinding), from another origin, or marked cross-site."""

    def refuse(message: str) -> Response:
        response = jsonify(error=message)
        response.status_code = 403
        return response

    @app.before_request
    def same_origin_only() -> Response | None:
        host = request.host
        if hosts is not None and _host_name(host) not in hosts:
            return refuse(f"this server answers only to {', '.join(sorted(hosts))}, not to the host {host!r}: "
                          f"open the address `introvae serve` printed.")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{host}":
            return refuse(f"requests from the origin {origin!r} are refused: use the page this server serves.")
        if request.method not in _SAFE_METHODS and request.headers.get("Sec-Fetch-Site") not in (None, "same-origin",
                                                                                                  "none"):
            return refuse("cross-site requests are refused: use the page this server serves.")
        return None

    @app.after_request
    def no_framing(response: Response) -> Response:
        # The page is not to be embedded by other sites (clickjacking) nor sniffed into another content type.
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def _answer_errors_in_json(app: Flask) -> None:
    """Every error as {"error": "one sentence"}: 400 for bad input, 413 for a large upload, never a bare 500 page."""

    @app.errorhandler(UserError)
    def user_error(error: UserError) -> tuple[Response, int]:
        return jsonify(error=str(error)), 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> tuple[Response, int]:
        return jsonify(error=f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MiB: choose a smaller image."), 413

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify(error=f"{error.name}: {error.description}"), error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response, int]:
        log.exception("the explorer failed on %s %s", request.method, request.path)
        return jsonify(error=f"the server failed ({type(error).__name__}); its terminal shows the details."), 500


def _add_routes(app: Flask, explorer: Explorer) -> None:
    """The page and its JSON API, each route one call of the explorer."""

    def json_body() -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise UserError("send a JSON object (Content-Type: application/json).")
        return body

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html")

    @app.get("/api/info")
    def info() -> Response:
        return jsonify(explorer.info())

    @app.get("/api/samples")
    def samples() -> Response:
        seed, count = request.args.get("seed", "0"), request.args.get("count", "16")
        images = explorer.samples(seed, count)
        seed = int(seed)
        return jsonify(seed=seed, images=[{"seed": seed, "index": i, "image": png_data_url(image)}
                                          for i, image in enumerate(images)])

    @app.post("/api/upload")
    def upload() -> Response:
        file = request.files.get("image")
        if file is None:
            raise UserError("the upload holds no file under the field 'image': choose an image file.")
        name = Path(file.filename or "the upload").name
        result = explorer.analyse_upload(file.read(MAX_UPLOAD_BYTES + 1), name)
        result["image"] = png_data_url(result["image"])
        result["reconstruction"] = png_data_url(result["reconstruction"])
        return jsonify(result)

    @app.post("/api/decode")
    def decode() -> Response:
        body = json_body()
        offsets = body.get("offsets") or {}
        if not isinstance(offsets, dict):
            raise UserError('offsets must be a JSON object such as {"pc1": 1.5}.')
        return jsonify(image=png_data_url(explorer.decode(body.get("endpoint"), offsets)))

    @app.post("/api/interpolate")
    def interpolate() -> Response:
        body = json_body()
        frames = explorer.interpolate(body.get("a"), body.get("b"), body.get("steps", 17), body.get("method", "lerp"))
        return jsonify(frames=[png_data_url(frame) for frame in frames])

    @app.get("/api/dynamics.png")
    def dynamics() -> Response:
        picture = explorer.dynamics_png()
        if picture is None:
            response = jsonify(error="this run has no training log to plot yet.")
            response.status_code = 404
            return response
        return Response(picture, mimetype="image/png")


def make_explorer_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8000) -> BaseWSGIServer:
    """A threaded local server for the page, bound but not yet serving (call `serve_forever`); port 0 picks a free
    port, which the server's `port` attribute then holds."""
    app = create_app(explorer, host)
    # The socket is bound here rather than by Werkzeug, which answers a port in use with sys.exit(1).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listening = socket.create_server((host, port), family=family)
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port} ({error.strerror or error}): pass another --port "
                        f"(0 picks a free one) or --host.") from None
    with listening:  # the server works on its own duplicate of the socket
        return make_server(host, listening.getsockname()[1], app, threaded=True, fd=listening.fileno())
