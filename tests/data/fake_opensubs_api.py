"""A local stand-in for the OpenSubtitles REST API v1, for tests (127.0.0.1, random port).

Implements GET /api/v1/subtitles (paginated), POST /api/v1/download (daily quota, 406 when spent),
POST /api/v1/login, and the temporary download links (GET /dl/<file_id>). Tests can queue forced
answers per path (429 with headers, 5xx, ...) and read back every call made.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/api/v1"


@dataclass
class FakeSubtitle:
    subtitle_id: int
    file_id: int
    language: str
    title: str
    imdb_id: int
    body: bytes
    file_name: str = ""


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None


@dataclass
class FakeOpenSubtitles:
    subtitles: list[FakeSubtitle]
    api_key: str = "test-key"
    per_page: int = 2
    quota: int = 100
    reset_time_utc: str = "2099-01-01T00:00:00.000Z"
    users: dict[str, str] = field(default_factory=lambda: {"alice": "secret"})
    token: str = "tok-123"
    # path -> queue of (status, headers, json body) answered before the real handler.
    forced: dict[str, list[tuple[int, dict[str, str], dict[str, Any]]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    downloaded: list[int] = field(default_factory=list)
    base: str = ""

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> FakeOpenSubtitles:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        return self.base + API

    def force(self, path: str, status: int, headers: dict[str, str] | None = None,
              body: dict[str, Any] | None = None, times: int = 1) -> None:
        for _ in range(times):
            self.forced.setdefault(path, []).append((status, headers or {}, body or {"message": "forced"}))

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    # -- requests --------------------------------------------------------------------------------
    def _reply(self, h: BaseHTTPRequestHandler, status: int, payload: Any,
               headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream" if raw is not None
                      else "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else None
        self.calls.append(Call(method, url.path, query, dict(h.headers.items()), body))
        queue = self.forced.get(url.path)
        if queue:
            status, headers, payload = queue.pop(0)
            return self._reply(h, status, payload, headers)
        if url.path.startswith("/dl/"):
            return self._link(h, int(url.path.rsplit("/", 1)[-1]))
        if h.headers.get("Api-Key") != self.api_key:
            return self._reply(h, 401, {"message": "You cannot consume this service", "status": 401})
        if not h.headers.get("User-Agent"):
            return self._reply(h, 400, {"message": "missing User-Agent"})
        route = (method, url.path)
        if route == ("GET", f"{API}/subtitles"):
            return self._search(h, query)
        if route == ("POST", f"{API}/download"):
            return self._download(h, body or {})
        if route == ("POST", f"{API}/login"):
            return self._login(h, body or {})
        return self._reply(h, 404, {"message": f"no route {method} {url.path}"})

    def _search(self, h: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        languages = set(query.get("languages", "").split(","))
        hits = [s for s in self.subtitles if s.language in languages]
        if "query" in query:
            hits = [s for s in hits if query["query"] in s.title.lower()]
        if "imdb_id" in query:
            hits = [s for s in hits if str(s.imdb_id) == query["imdb_id"]]
        page = int(query.get("page", "1"))
        total_pages = max(1, -(-len(hits) // self.per_page))
        chunk = hits[(page - 1) * self.per_page: page * self.per_page]
        data = [{
            "id": str(s.subtitle_id), "type": "subtitle",
            "attributes": {
                "subtitle_id": str(s.subtitle_id), "language": s.language, "download_count": 7,
                "feature_details": {"title": s.title, "imdb_id": s.imdb_id, "year": 1999},
                "files": [{"file_id": s.file_id, "cd_number": 1,
                           "file_name": s.file_name or f"{s.title}.{s.language}.srt"}],
            },
        } for s in chunk]
        self._reply(h, 200, {"total_pages": total_pages, "total_count": len(hits),
                             "per_page": self.per_page, "page": page, "data": data})

    def _download(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        file_id = int(body.get("file_id", -1))
        known = {s.file_id: s for s in self.subtitles}
        if self.quota <= 0:
            return self._reply(h, 406, {
                "requests": len(self.downloaded), "remaining": 0, "reset_time": "23 hours",
                "reset_time_utc": self.reset_time_utc,
                "message": "You have downloaded your allowed subtitles for 24h",
            })
        if file_id not in known:
            return self._reply(h, 404, {"message": f"file {file_id} not found"})
        self.quota -= 1
        self.downloaded.append(file_id)
        self._reply(h, 200, {
            "link": f"{self.base}/dl/{file_id}", "file_name": f"{file_id}.srt",
            "requests": len(self.downloaded), "remaining": self.quota,
            "message": "Your quota will be renewed later", "reset_time": "23 hours",
            "reset_time_utc": self.reset_time_utc,
        })

    def _login(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if self.users.get(body.get("username")) != body.get("password"):
            return self._reply(h, 401, {"message": "Error, invalid username/password", "status": 401})
        self._reply(h, 200, {"user": {"allowed_downloads": self.quota}, "token": self.token,
                             "status": 200})

    def _link(self, h: BaseHTTPRequestHandler, file_id: int) -> None:
        for s in self.subtitles:
            if s.file_id == file_id:
                return self._reply(h, 200, None, raw=s.body)
        self._reply(h, 404, {"message": "gone"})
