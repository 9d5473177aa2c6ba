"""Search the OpenSubtitles API and download what is not cached yet, within the daily quota.

The cache (`scrape_opensubs.cache_dir`, outside the DVC output) keeps every downloaded file with
its metadata, the quota state and the list of files still pending, so a rerun (say the next day,
after the quota resets) fetches only what is missing and never downloads a file twice.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from src.atomic_io import write_bytes_atomic
from src.data.opensubs.api import (
    ApiAuthError,
    ApiError,
    OpenSubtitlesClient,
    QuotaExceeded,
    RateLimited,
    SubtitleFile,
    credential_from_env,
)
from src.data.opensubs.store import FileStore, ManifestRow, Status
from src.paths import resolve


def parse_utc(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


class DownloadCache:
    """`files/<id>.srt` + `files/<id>.json` per downloaded file, `quota.json`, `pending.json`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.files.mkdir(parents=True, exist_ok=True)

    def get(self, file_id: int) -> bytes | None:
        data, meta = self.files / f"{file_id}.srt", self.files / f"{file_id}.json"
        # The sidecar is written last: a file without it is a download cut short, fetch again.
        return data.read_bytes() if meta.exists() and data.exists() else None

    def put(self, file_id: int, data: bytes, meta: Mapping[str, Any]) -> None:
        write_bytes_atomic(self.files / f"{file_id}.srt", data)
        write_bytes_atomic(self.files / f"{file_id}.json",
                      json.dumps(dict(meta), ensure_ascii=False, indent=1).encode())

    @property
    def _quota_path(self) -> Path:
        return self.root / "quota.json"

    def quota_block(self, now: datetime) -> str | None:
        """Why downloads are still blocked by an earlier quota answer, or None (and forget it)."""
        if not self._quota_path.exists():
            return None
        try:
            state = json.loads(self._quota_path.read_text(encoding="utf-8"))
            if not isinstance(state, dict):
                raise ValueError(f"a JSON object was expected, found {type(state).__name__}")
            reset = parse_utc(state.get("reset_time_utc"))
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
            # The file is only our memo of an earlier 406; the API repeats it if the quota is still spent,
            # so a damaged memo is forgotten (and said so) rather than stopping the scrape.
            print(f"warning: ignoring unreadable quota state {self._quota_path}: {exc}", file=sys.stderr)
            self._quota_path.unlink(missing_ok=True)
            return None
        if reset is not None and reset > now:
            return f"daily download quota spent until {state['reset_time_utc']}: {state.get('message')}"
        self._quota_path.unlink()
        return None

    def set_quota(self, reset_time_utc: str | None, message: str) -> None:
        state = {"reset_time_utc": reset_time_utc, "message": message,
                 "recorded_at": datetime.now(timezone.utc).isoformat()}
        write_bytes_atomic(self._quota_path, json.dumps(state, indent=1).encode())

    def write_pending(self, pending: list[dict[str, Any]]) -> None:
        write_bytes_atomic(self.root / "pending.json",
                      json.dumps(pending, ensure_ascii=False, indent=1).encode())


def _searches(api: Any) -> list[tuple[str, dict[str, str]]]:
    runs = [(f"query:{q}", {"query": q}) for q in api.queries]
    runs += [(f"imdb:{i}", {"imdb_id": i}) for i in api.imdb_ids]
    if not runs:
        raise ValueError("scrape_opensubs.api: nothing to search; set api.queries and/or api.imdb_ids")
    return runs


def _row(f: SubtitleFile, status: str, error: str | None = None) -> ManifestRow:
    return ManifestRow(file_id=f"os{f.file_id}", source="api", member=f.file_name, status=status,
                       error=error, language=f.language, title=f.title, imdb_id=f.imdb_id,
                       remote_id=f.subtitle_id)


def _keep(store: FileStore, f: SubtitleFile, data: bytes, cap: int) -> ManifestRow:
    if len(data) > cap:
        row = _row(f, Status.TOO_LARGE, f"{len(data)} bytes > max_member_bytes {cap}")
        row.bytes = len(data)
        return store.record(row)
    return store.add_file(_row(f, Status.OK), data)


def search_all(client: OpenSubtitlesClient, api: Any, store: FileStore,
               on_row: Callable[[ManifestRow], None]) -> list[SubtitleFile]:
    """Every file the configured searches find, once each; a failed search becomes a manifest row."""
    found: dict[int, SubtitleFile] = {}
    for label, kwargs in _searches(api):
        try:
            for f in client.iter_search(list(api.languages), max_pages=api.max_pages,
                                        extra=dict(api.search_params), **kwargs):
                found.setdefault(f.file_id, f)
        except ApiAuthError:
            raise
        except ApiError as exc:
            on_row(store.record(ManifestRow(file_id=f"search-{label}", source="api", member=label,
                                            status=Status.API_ERROR, error=str(exc))))
    return list(found.values())


def scrape_api(
    section: Any,
    store: FileStore,
    on_row: Callable[[ManifestRow], None] = lambda row: None,
    env: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> list[str]:
    """Search, then store cached or freshly downloaded files; returns notes for the summary."""
    api = section.api
    api_key = credential_from_env(api.api_key_env, "API key", "api_key_env", env)
    cache = DownloadCache(resolve(section.cache_dir))
    cap = section.archives.limits.max_member_bytes
    notes: list[str] = []
    with OpenSubtitlesClient(api, api_key, sleep=sleep, transport=transport) as client:
        if api.login:
            client.login(credential_from_env(api.username_env, "username", "username_env", env),
                         credential_from_env(api.password_env, "password", "password_env", env))
        files = search_all(client, api, store, on_row)
        stop: tuple[str, str] | None = None
        blocked = cache.quota_block(datetime.now(timezone.utc))
        if blocked:
            stop = (Status.QUOTA, blocked)
        pending: list[dict[str, Any]] = []
        downloads = 0

        def defer(f: SubtitleFile, status: str, reason: str) -> None:
            on_row(store.record(_row(f, status, reason)))
            pending.append({"file_id": f.file_id, "file_name": f.file_name, "reason": reason})

        for f in files:
            cached = cache.get(f.file_id)
            if cached is not None:
                on_row(_keep(store, f, cached, cap))
                continue
            if stop is None and downloads >= api.max_downloads:
                stop = (Status.QUOTA, f"max_downloads={api.max_downloads} reached in this run")
            if stop is not None:
                defer(f, *stop)
                continue
            try:
                downloads += 1
                ticket = client.request_download(f.file_id)
                data = client.fetch(ticket.link)
            except QuotaExceeded as exc:
                cache.set_quota(exc.reset_time_utc, str(exc))
                stop = (Status.QUOTA, f"{exc} (resets {exc.reset_time_utc})")
            except RateLimited as exc:
                stop = (Status.RATE_LIMITED, str(exc))
            except ApiAuthError:
                raise
            except ApiError as exc:
                on_row(store.record(_row(f, Status.API_ERROR, str(exc))))
                continue
            if stop is not None:
                defer(f, *stop)
                continue
            # Cached whatever its size: the download is spent either way, never repeat it.
            cache.put(f.file_id, data, {"file_id": f.file_id, "file_name": f.file_name,
                                        "subtitle_id": f.subtitle_id, "language": f.language,
                                        "title": f.title, "imdb_id": f.imdb_id})
            on_row(_keep(store, f, data, cap))
            if ticket.remaining is not None and ticket.remaining <= 0:
                message = f"daily download quota used up (remaining 0): {ticket.message or ''}".strip()
                cache.set_quota(ticket.reset_time_utc, message)
                stop = (Status.QUOTA, f"{message} (resets {ticket.reset_time_utc})")
        cache.write_pending(pending)
    if pending:
        notes.append(f"{len(pending)} API files not fetched ({stop[1] if stop else '?'}); "
                     f"rerun later to resume (list in {cache.root / 'pending.json'})")
    return notes
