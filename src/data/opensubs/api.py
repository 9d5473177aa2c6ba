"""A small client for the OpenSubtitles.com REST API v1 (search, download link, file fetch, login).

Endpoints used (relative to `base_url`, default https://api.opensubtitles.com/api/v1):
- `GET  /subtitles?languages=en,ru&query=...|imdb_id=...&page=N` -> {page, total_pages, data: [...]}
- `POST /download {"file_id": N}` -> {link, file_name, requests, remaining, reset_time_utc, ...};
  406 when the daily download quota is spent.
- `POST /login {"username", "password"}` -> {token, ...}
Every request carries `Api-Key` and an application `User-Agent`. Answers handled here:
429 (wait Retry-After / ratelimit-reset, or the backoff when longer, then retry), 5xx and
connection errors (exponential backoff), 401 (ApiAuthError), 406 (QuotaExceeded); other 4xx raise
ApiError. The retry loop is `src.retry`'s, shared with the lib.ru crawler.
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from src.errors import InputError
from src.retry import Backoff, RetriesExhausted, RetryableFailure, call_with_retries


class ApiError(RuntimeError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiAuthError(InputError, ApiError):
    """401: a bad API key or login; retrying cannot help, so the stage stops."""


class QuotaExceeded(InputError, ApiError):
    """406 on /download: the daily quota is spent until `reset_time_utc`."""

    def __init__(self, message: str, reset_time_utc: str | None) -> None:
        super().__init__(message, 406)
        self.reset_time_utc = reset_time_utc


class RateLimited(ApiError):
    """429 with a wait longer than retry_after_max_s: stop now, resume on a later run."""


class MissingCredentials(InputError, RuntimeError):
    pass


def credential_from_env(var: str, what: str, key: str, env: Mapping[str, str] | None = None) -> str:
    """The value of environment variable `var`, or an error naming it and the config key."""
    value = (os.environ if env is None else env).get(var, "").strip()
    if not value:
        raise MissingCredentials(
            f"OpenSubtitles {what} not found: set the environment variable {var} "
            f"(its name comes from config key scrape_opensubs.api.{key})"
        )
    return value


@dataclass
class SubtitleFile:
    """One downloadable file from a search result."""

    file_id: int
    file_name: str
    subtitle_id: str | None
    language: str | None
    title: str | None
    imdb_id: str | None


@dataclass
class SearchPage:
    page: int
    total_pages: int
    files: list[SubtitleFile]


@dataclass
class DownloadTicket:
    link: str
    file_name: str | None
    remaining: int | None
    reset_time_utc: str | None
    message: str | None


def normalize_imdb_id(text: str) -> str:
    """'tt0133093' or '0133093' -> '133093' (the API wants digits without padding)."""
    digits = text.strip().lower().removeprefix("tt").lstrip("0")
    if not digits.isdigit():
        raise ValueError(f"not an IMDb id: {text!r} (scrape_opensubs.api.imdb_ids)")
    return digits


def _imdb_tag(value: Any) -> str | None:
    return f"tt{int(value):07d}" if isinstance(value, int) or str(value).isdigit() else None


def parse_search_page(payload: Mapping[str, Any]) -> SearchPage:
    files: list[SubtitleFile] = []
    for item in payload.get("data") or []:
        attrs = item.get("attributes") or {}
        feature = attrs.get("feature_details") or {}
        for entry in attrs.get("files") or []:
            if entry.get("file_id") is None:
                continue
            files.append(SubtitleFile(
                file_id=int(entry["file_id"]),
                file_name=str(entry.get("file_name") or f"{entry['file_id']}.srt"),
                subtitle_id=str(attrs.get("subtitle_id") or item.get("id") or "") or None,
                language=attrs.get("language"),
                title=feature.get("title") or feature.get("movie_name"),
                imdb_id=_imdb_tag(feature.get("imdb_id")) if feature.get("imdb_id") else None,
            ))
    return SearchPage(int(payload.get("page") or 1), int(payload.get("total_pages") or 1), files)


def retry_after_seconds(response: httpx.Response, default: float) -> float:
    """How long a 429 asks us to wait: Retry-After (seconds or HTTP date), else ratelimit-reset."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    for header in ("ratelimit-reset", "x-ratelimit-reset"):
        try:
            return max(0.0, float(response.headers[header]))
        except (KeyError, ValueError):
            continue
    return default


def _message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(payload, dict):
        errors = payload.get("errors")
        return str(payload.get("message") or (errors and "; ".join(map(str, errors))) or payload)
    return str(payload)[:200]


class OpenSubtitlesClient:
    """Synchronous client; `sleep` and `transport` are injectable for tests."""

    def __init__(
        self,
        cfg: Any,
        api_key: str,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.cfg = cfg
        self.retry = cfg.retry
        self.backoff = Backoff(self.retry.backoff_base_s, self.retry.backoff_max_s)
        self.sleep = sleep
        self._last_request = 0.0
        common = {"User-Agent": cfg.user_agent}
        self.http = httpx.Client(
            base_url=cfg.base_url.rstrip("/") + "/",
            headers={**common, "Api-Key": api_key, "Accept": "application/json"},
            timeout=cfg.timeout_s, follow_redirects=True, transport=transport,
        )
        # Temporary download links live on another host: do not send the API key there.
        self.links = httpx.Client(headers=common, timeout=cfg.timeout_s, follow_redirects=True,
                                  transport=transport)

    def __enter__(self) -> OpenSubtitlesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()
        self.links.close()

    # -- endpoints -------------------------------------------------------------------------------
    def login(self, username: str, password: str) -> None:
        response = self._send(self.http, "POST", "login",
                              json={"username": username, "password": password})
        token = response.json().get("token")
        if not token:
            raise ApiAuthError(f"login answered without a token: {_message(response)}")
        self.http.headers["Authorization"] = f"Bearer {token}"

    def search(self, languages: list[str], query: str | None = None, imdb_id: str | None = None,
               page: int = 1, extra: Mapping[str, str] | None = None) -> SearchPage:
        params: dict[str, str] = {k: str(v).lower() for k, v in (extra or {}).items()}
        params["languages"] = ",".join(sorted(lang.lower() for lang in languages))
        if query:
            params["query"] = query.lower()
        if imdb_id:
            params["imdb_id"] = normalize_imdb_id(imdb_id)
        if page > 1:
            params["page"] = str(page)
        # The API redirects requests whose parameters are not sorted and lower-cased.
        response = self._send(self.http, "GET", "subtitles", params=dict(sorted(params.items())))
        return parse_search_page(self._json(response))

    def iter_search(self, languages: list[str], query: str | None = None,
                    imdb_id: str | None = None, max_pages: int = 1,
                    extra: Mapping[str, str] | None = None) -> Iterator[SubtitleFile]:
        page, total = 1, 1
        while page <= min(total, max_pages):
            result = self.search(languages, query, imdb_id, page, extra)
            yield from result.files
            total = result.total_pages
            page += 1

    def request_download(self, file_id: int) -> DownloadTicket:
        body = {"file_id": file_id, "sub_format": self.cfg.sub_format}
        payload = self._json(self._send(self.http, "POST", "download", json=body))
        link = payload.get("link")
        if not link:
            raise ApiError(f"download of file {file_id} answered without a link: {payload}")
        remaining = payload.get("remaining")
        return DownloadTicket(link=str(link), file_name=payload.get("file_name"),
                              remaining=int(remaining) if remaining is not None else None,
                              reset_time_utc=payload.get("reset_time_utc"),
                              message=payload.get("message"))

    def fetch(self, link: str) -> bytes:
        return self._send(self.links, "GET", link).content

    # -- transport -------------------------------------------------------------------------------
    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            payload = response.json()
        except ValueError:
            raise ApiError(f"{response.request.url}: not JSON: {response.text[:200]!r}",
                           response.status_code) from None
        if not isinstance(payload, dict):
            raise ApiError(f"{response.request.url}: unexpected JSON {str(payload)[:200]}")
        return payload

    def _throttle(self) -> None:
        wait = self._last_request + self.cfg.min_interval_s - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self._last_request = time.monotonic()

    def _send(self, client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with the retry policy; returns a 2xx response or raises an ApiError."""

        def attempt(n: int) -> httpx.Response:
            self._throttle()
            try:
                response = client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                raise RetryableFailure(f"{type(exc).__name__}: {exc}") from None
            return self._check(method, url, response)

        try:
            return call_with_retries(attempt, self.retry.max_attempts,
                                     self.backoff, self.sleep)
        except RetriesExhausted as exc:
            raise ApiError(f"{method} {url}: gave up after {exc.attempts} attempts "
                           f"(last: {exc.last.reason})", exc.last.status) from None

    def _check(self, method: str, url: str, response: httpx.Response) -> httpx.Response:
        """A 2xx response as it is; 429 and 5xx as RetryableFailure; other answers as errors."""
        status = response.status_code
        if status == 429:
            wait = retry_after_seconds(response, self.retry.retry_after_default_s)
            if wait > self.retry.retry_after_max_s:
                raise RateLimited(f"{method} {url}: server asks to wait {wait:g}s, more than "
                                  f"retry_after_max_s={self.retry.retry_after_max_s:g}", 429)
            raise RetryableFailure(f"429 rate limited (wait {wait:g}s)", retry_after_s=wait,
                                   status=429)
        if status >= 500:
            raise RetryableFailure(f"{status} {_message(response)}", status=status)
        if status == 401:
            raise ApiAuthError(
                f"OpenSubtitles answered 401 Unauthorized to {method} {url}: the API key in "
                f"${self.cfg.api_key_env} (or the login from ${self.cfg.username_env}/"
                f"${self.cfg.password_env}) was rejected: {_message(response)}", 401)
        if status == 406:
            try:
                reset = response.json().get("reset_time_utc")
            except (ValueError, AttributeError):
                reset = None
            raise QuotaExceeded(f"download quota spent: {_message(response)}", reset)
        if status >= 400:
            raise ApiError(f"{method} {url}: {status} {_message(response)}", status)
        return response
