"""`eproduct serve`: an HTTP JSON API over one index, on the standard library's ThreadingHTTPServer.

Routes (every answer is JSON; an error is `{"error": {"status", "message"}}` with that HTTP status):
  GET  /health            {"status": "ok", "index", "rows", "images": whether image queries work}
  GET  /manifest          the index's manifest.json
  GET  /settings          {"serving": the server's SearchSettings, "tuned": the index's stored defaults or null}
  POST /search            the top results of one query or a batch:
       - application/json      {"vector": [...]} or {"vectors": [[...], ...]}, optional "settings": {field: value}
       - image/* or application/octet-stream   the raw bytes of one photo (needs a run: `--run`)
       - multipart/form-data   a file field named "image" (needs a run)
       URL query parameters mode, cutoff, bits, k, rerank (url_params.py) change the settings of that request.
       Answer: {"settings": {...}, "results": [{"ids": [...], "distances": [...], "distance": "cosine"|
       "code_cosine", "hamming": [...], "candidates": n}, ...]}
Statuses: 400 bad input (bad JSON, wrong vector length, unreadable image, bad setting), 404 unknown path,
405 wrong method, 411 no Content-Length, 413 body over the size limit (read no further), 415 unsupported
content type. One opened index serves every thread; image queries load the model once, on first use,
and run one forward pass at a time. Torch is imported only for image queries (embed.py, lazily).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from .errors import EproductError
from .settings import SearchSettings
from .url_params import settings_from_params

log = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_BYTES = 8 * 1024 * 1024  # largest request body accepted (413 above it)
MAX_QUERIES = 1024  # vectors in one JSON request


class HttpError(Exception):
    """An error answered with `status` and `message` (the handler turns it into JSON)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class SearchService:
    """What the server searches: an opened index, its settings, and (optionally) a run to embed photos."""

    index_dir: Path
    settings: SearchSettings = field(default_factory=SearchSettings)
    run_dir: Path | None = None
    max_bytes: int = MAX_BYTES

    def __post_init__(self) -> None:
        from .index import open_index

        self.index = open_index(self.index_dir).warm()
        self._bundle: Any = None  # embed.RunBundle, loaded on the first photo query
        self._lock = threading.Lock()

    def manifest(self) -> dict:
        return dict(self.index.manifest)

    def tuned(self) -> dict | None:
        stored = self.index.manifest.get("search")
        return dict(stored) if isinstance(stored, dict) else None

    def embed_image(self, data: bytes, name: str) -> np.ndarray:
        """The index kind's embedding of one photo (loads the run's model once, on first use)."""
        if self.run_dir is None:
            raise HttpError(
                400,
                "This server has no model (start it with --run RUN_DIR) so it cannot embed images; "
                "POST a vector as JSON instead.",
            )
        from .images import load_image

        image = load_image(data, name=name)  # EproductError on a bad image
        with self._lock:
            if self._bundle is None:
                from .embed import load_run

                self._bundle = load_run(self.run_dir, device="cpu")
            from .embed import embed_images

            return np.asarray(embed_images(self._bundle, [image], self.index.kind), dtype=np.float32)

    def search(self, vectors: np.ndarray, settings: SearchSettings) -> list[dict]:
        from .search import search

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.index.dim:
            raise HttpError(
                400,
                f"Each vector must have {self.index.dim} numbers (this index's dimension); "
                f"got shape {list(vectors.shape)}.",
            )
        if not np.isfinite(vectors).all():
            raise HttpError(400, "The vectors hold NaN or infinite numbers; send finite numbers.")
        answers = []
        for result in search(self.index, vectors, settings):
            distances = result.cosine if result.cosine is not None else result.code_cosine
            exact = result.cosine is not None
            answers.append(
                {
                    "ids": list(result.ids),
                    "distances": [round(float(d), 6) for d in distances],
                    "distance": "cosine" if exact else "code_cosine",
                    "hamming": [int(h) for h in result.hamming],
                    "candidates": int(result.candidates),
                }
            )
        return answers


def _settings(service: SearchService, query: dict[str, str], body: dict | None) -> SearchSettings:
    settings = service.settings
    if body and body.get("settings") is not None:
        given = body["settings"]
        if not isinstance(given, dict):
            raise HttpError(400, '"settings" must be a JSON object of SearchSettings fields, e.g. {"k": 5}.')
        try:
            settings = settings.replace(**given)
        except TypeError as err:
            raise HttpError(400, f"Unknown search setting in {sorted(given)}: {err}.") from None
    return settings_from_params(query, base=settings)


def _vectors_of(body: Any) -> np.ndarray:
    if not isinstance(body, dict) or ("vector" not in body and "vectors" not in body):
        raise HttpError(400, 'The JSON body must be an object with "vector": [numbers] or "vectors": [[numbers], ...].')
    rows = [body["vector"]] if "vector" in body else body["vectors"]
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_QUERIES or not all(isinstance(r, list) for r in rows):
        raise HttpError(400, f'"vectors" must be a list of 1 to {MAX_QUERIES} vectors, each a list of numbers.')
    try:
        return np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise HttpError(400, "Every vector must be a list of numbers, all of the same length.") from None


def _multipart_image(content_type: str, body: bytes) -> tuple[bytes, str]:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1") + body
    )
    if not message.is_multipart():
        raise HttpError(400, "The multipart body could not be read (check its boundary).")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "image":
            payload = part.get_payload(decode=True)
            return (payload if isinstance(payload, bytes) else b""), part.get_filename() or "upload"
    raise HttpError(400, 'The multipart body has no file field named "image".')


class Handler(BaseHTTPRequestHandler):
    """One request: route it, answer JSON."""

    service: SearchService  # set on the subclass make_server builds
    server_version = "eproduct-serve"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, document: Any) -> None:
        data = (json.dumps(document) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"status": status, "message": message}})

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        routes = {"/health": "GET", "/manifest": "GET", "/settings": "GET", "/search": "POST"}
        try:
            if url.path not in routes:
                raise HttpError(
                    404, f"No route {url.path}. Routes: {', '.join(f'{m} {p}' for p, m in routes.items())}."
                )
            if routes[url.path] != method:
                raise HttpError(405, f"{url.path} answers {routes[url.path]}, not {method}.")
            self._send(200, self._answer(url.path, query))
        except HttpError as err:
            self._error(err.status, err.message)
        except EproductError as err:
            self._error(400, str(err))
        except Exception as err:  # a bug: log it, answer briefly, keep serving
            log.exception("request failed")
            self._error(500, f"Internal error ({type(err).__name__}); see the server log.")

    def _answer(self, path: str, query: dict[str, str]) -> Any:
        service = self.service
        if path == "/health":
            return {
                "status": "ok",
                "index": str(service.index_dir),
                "rows": service.index.size,
                "images": service.run_dir is not None,
            }
        if path == "/manifest":
            return service.manifest()
        if path == "/settings":
            return {"serving": service.settings.to_dict(), "tuned": service.tuned()}
        body = self._body()
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                document = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as err:
                raise HttpError(400, f"The body is not valid JSON ({err}).") from None
            settings = _settings(service, query, document if isinstance(document, dict) else None)
            vectors = _vectors_of(document)
        elif kind.startswith("image/") or kind == "application/octet-stream":
            settings = _settings(service, query, None)
            vectors = service.embed_image(body, query.get("name", "upload"))
        elif kind == "multipart/form-data":
            settings = _settings(service, query, None)
            data, name = _multipart_image(self.headers["Content-Type"], body)
            vectors = service.embed_image(data, name)
        else:
            raise HttpError(
                415,
                f"Content-Type {kind or '(none)'} is not supported. Send application/json "
                "(a vector), image/* or application/octet-stream (a photo), or multipart/form-data.",
            )
        return {"settings": settings.to_dict(), "results": service.search(vectors, settings)}

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise HttpError(411, "Send a Content-Length header with the request body.")
        try:
            size = int(length)
        except ValueError:
            raise HttpError(400, f"Content-Length {length!r} is not a number.") from None
        if size > self.service.max_bytes:
            raise HttpError(
                413, f"The body has {size:,} bytes; this server accepts at most {self.service.max_bytes:,}."
            )
        return self.rfile.read(size)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


def make_server(service: SearchService, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A ThreadingHTTPServer bound to host:port (port 0: a free one) answering for `service`; call serve_forever()."""
    handler = type("BoundHandler", (Handler,), {"service": service})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as err:
        raise EproductError(f"Cannot listen on {host}:{port} ({err.strerror}). Pick another --port.") from err
    server.daemon_threads = True
    return server
