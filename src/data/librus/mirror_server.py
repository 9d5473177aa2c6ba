"""Serve one host of the embedded lib.ru-format mirror on 127.0.0.1, the way the real site would.

The sample run crawls these servers with the same crawler it uses for lib.ru, so the offline default
exercises the real code path. Pages go out byte-exact with the Content-Type charset lib.ru would send
(the mirror's `charsets.json`, which may lie on purpose). Tests subclass `MirrorSite` and override
`respond` to inject faults; `requests` counts what each path was asked for.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

INDEX_FILES = ("index.html", "index.shtml")
# How often the serving loop checks for shutdown; the default 0.5 s would be paid on every stop.
SHUTDOWN_POLL_S = 0.05


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Fault injection: wait before answering; send only this many body bytes then close.
    delay_s: float = 0.0
    send_bytes: int | None = None


def load_charsets(mirror_dir: Path, table: str) -> dict[str, str | None]:
    """`charsets.json` of a mirror: "<host>/<path>" -> the charset its header names (or null)."""
    path = mirror_dir / table
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of \"host/path\": charset")
    return data


class MirrorSite:
    """One host's folder (`<mirror_dir>/<host>/`) served over HTTP on an ephemeral port."""

    def __init__(self, mirror_dir: Path, host: str, charsets: dict[str, str | None]) -> None:
        self.root = mirror_dir / host
        self.host = host
        self.charsets = charsets
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the site first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def file_for(self, path: str) -> Path | None:
        rel = unquote(urlsplit(path).path).lstrip("/")
        if ".." in Path(rel).parts:
            return None
        target = self.root / rel
        if path.split("?")[0].endswith("/") or target.is_dir():
            return next((target / n for n in INDEX_FILES if (target / n).is_file()), None)
        return target if target.is_file() else None

    def respond(self, path: str) -> Response:
        """The page at `path` as lib.ru would serve it (override to inject faults)."""
        target = self.file_for(path)
        if target is None:
            return Response(404, b"Not found\n", {"Content-Type": "text/plain"})
        rel = target.relative_to(self.root.parent).as_posix()
        kind = "text/plain" if target.name == "robots.txt" else "text/html"
        charset = self.charsets.get(rel)
        content_type = f"{kind}; charset={charset}" if charset else kind
        return Response(200, target.read_bytes(), {"Content-Type": content_type})

    def start(self) -> MirrorSite:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in separate writes; with Nagle on, each keep-alive response
            # waits ~40 ms for the client's delayed ACK.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                with site._lock:
                    site.requests[urlsplit(self.path).path] += 1
                response = site.respond(self.path)
                if response.delay_s:
                    time.sleep(response.delay_s)
                self.send_response(response.status)
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.body)))
                if response.send_bytes is not None:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                body = response.body
                if response.send_bytes is not None:
                    body = body[: response.send_bytes]
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout); nothing left to do

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # quiet: the crawler's manifest is the record

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": SHUTDOWN_POLL_S}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> MirrorSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
