"""A small polite HTTP crawler: per-host rate limit, retries with backoff, robots.txt, host fence,
and a resumable on-disk cache.

Thread-safe: one `Crawler` is shared by a thread pool (the pool size is the concurrency cap).
URLs are always *canonical* (the site's own, e.g. http://lib.ru/...); `transport` may map a
canonical origin to where it is really served (the loopback mirror), so manifests and the cache
never depend on an ephemeral port.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import urllib.robotparser
from collections import Counter
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from src.atomic_io import write_bytes_atomic
from src.config.sections.scrape_librus import CrawlPolicy
from src.retry import Backoff, RetriesExhausted, RetryableFailure, call_with_retries

# Statuses of a FetchResult (the manifest's `status` column uses the same words).
OK = "ok"
HTTP_ERROR = "http_error"
NETWORK_ERROR = "error"
SKIPPED_ROBOTS = "skipped_robots"
OFF_HOST = "off_host"
TOO_MANY_REDIRECTS = "too_many_redirects"
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


@dataclass
class FetchResult:
    url: str  # canonical URL asked for
    final_url: str  # canonical URL after redirects
    status: str
    http_status: int | None = None
    content_type: str | None = None
    body: bytes | None = None
    error: str | None = None
    requests: int = 0  # HTTP requests made for it in this run (0 = answered by the cache)
    from_cache: bool = False
    location: str | None = None  # a redirect's Location, while redirects are being followed

    @property
    def header_charset(self) -> str | None:
        if not self.content_type:
            return None
        msg = Message()
        msg["content-type"] = self.content_type
        return msg.get_param("charset")  # type: ignore[return-value]


def url_key(url: str) -> str:
    return hashlib.sha1(url.encode("utf-8")).hexdigest()


class PageCache:
    """Responses on disk: `<key>.body` then `<key>.json`; the JSON (written last) marks it done.

    A body without its JSON, or whose sha256 differs from the JSON's, is a leftover of a killed
    run and counts as missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = url_key(url)
        folder = self.root / key[:2]
        return folder / f"{key}.body", folder / f"{key}.json"

    def get(self, url: str) -> FetchResult | None:
        body_path, meta_path = self._paths(url)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            body = body_path.read_bytes()
        except (OSError, ValueError):
            return None
        if meta.get("url") != url or hashlib.sha256(body).hexdigest() != meta.get("sha256"):
            return None
        status, http_status = meta["status"], meta.get("http_status")
        return FetchResult(
            url=url, final_url=meta["final_url"], status=status, http_status=http_status,
            content_type=meta.get("content_type"), body=body, from_cache=True,
            # The same words as when it was fetched: a manifest must not depend on the cache.
            error=None if status == OK else f"HTTP {http_status}",
        )

    def put(self, result: FetchResult) -> None:
        body = result.body or b""
        body_path, meta_path = self._paths(result.url)
        write_bytes_atomic(body_path, body)
        meta = {
            "url": result.url, "final_url": result.final_url, "status": result.status,
            "http_status": result.http_status, "content_type": result.content_type,
            "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body),
        }
        write_bytes_atomic(meta_path, json.dumps(meta, ensure_ascii=False).encode("utf-8"))


def crawl_delay(lines: list[str], user_agent: str) -> float | None:
    """The Crawl-delay (seconds, fractions allowed) of the robots.txt group that applies to us.

    urllib.robotparser reads only whole seconds; a group naming our agent beats the `*` group.
    """
    agent = user_agent.split("/")[0].lower()
    delays: dict[str, float] = {}
    group: list[str] = []
    in_rules = False
    for raw in lines:
        key, _, value = raw.split("#", 1)[0].partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "user-agent":
            if in_rules:
                group, in_rules = [], False
            group.append(value.lower())
        elif key:
            in_rules = True
            if key == "crawl-delay":
                try:
                    for name in group:
                        delays[name] = float(value)
                except ValueError:
                    continue
    named = [d for name, d in delays.items() if name != "*" and name in agent]
    return named[0] if named else delays.get("*")


class HostThrottle:
    """At most `rate` request starts per second per host, shared by all threads."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._host_interval: dict[str, float] = {}
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def slow_down(self, host: str, interval: float) -> None:
        """A longer interval for one host (its robots.txt Crawl-delay); never a shorter one."""
        with self._lock:
            self._host_interval[host] = max(interval, self._host_interval.get(host, 0.0))

    def wait(self, host: str) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next.get(host, now))
            self._next[host] = slot + max(self.interval, self._host_interval.get(host, 0.0))
        if slot > now:
            time.sleep(slot - now)


class Transport:
    """Canonical origin <-> where it is actually served (identity when no mapping)."""

    def __init__(self, mapping: dict[str, str] | None = None) -> None:
        self.mapping = {k.rstrip("/"): v.rstrip("/") for k, v in (mapping or {}).items()}

    def outward(self, url: str) -> str:
        for origin, served in self.mapping.items():
            if url == origin or url.startswith(origin + "/"):
                return served + url[len(origin):]
        return url

    def inward(self, url: str) -> str:
        for origin, served in self.mapping.items():
            if url == served or url.startswith(served + "/"):
                return origin + url[len(served):]
        return url


class Crawler:
    """Fetch canonical URLs politely; every call returns a FetchResult, never raises for HTTP."""

    def __init__(
        self,
        policy: CrawlPolicy,
        allowed_hosts: set[str],
        cache: PageCache | None = None,
        transport: Transport | None = None,
        seed: int = 0,
    ) -> None:
        self.policy = policy
        self.allowed_hosts = {h.lower() for h in allowed_hosts} | {
            h.lower() for h in policy.extra_hosts}
        self.cache = cache
        self.transport = transport or Transport()
        self.throttle = HostThrottle(policy.requests_per_second)
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}
        self._robots_lock = threading.Lock()
        self.backoff = Backoff(policy.backoff_base_s, policy.backoff_max_s,
                               policy.backoff_jitter, random.Random(seed))
        self.client = httpx.Client(
            headers={"User-Agent": policy.user_agent},
            timeout=httpx.Timeout(policy.timeout_s, connect=policy.connect_timeout_s),
            limits=httpx.Limits(max_connections=max(1, policy.concurrency)),
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Crawler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def on_host(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and (parts.hostname or "") in self.allowed_hosts

    # -- public -------------------------------------------------------------------------------
    def fetch(self, url: str) -> FetchResult:
        if not self.on_host(url):
            return FetchResult(url, url, OFF_HOST, error=f"host of {url} is not a crawled host")
        if self.cache is not None:
            cached = self.cache.get(url)
            if cached is not None:
                self._count("cached")
                return cached
        if self.policy.respect_robots and not self.robots_allows(url):
            return FetchResult(url, url, SKIPPED_ROBOTS, error="disallowed by robots.txt")
        result = self._fetch_following_redirects(url)
        if result.status == OK:
            self._count("fetched")
            self._count("bytes", len(result.body or b""))
        if self.cache is not None and self._cacheable(result):
            self.cache.put(result)
        return result

    def robots_allows(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._robots_lock:
            if origin not in self._robots:
                self._robots[origin] = self._load_robots(origin)
            parser = self._robots[origin]
        # None: robots.txt unreachable (5xx / network). RFC 9309 says assume full disallow.
        return parser is not None and parser.can_fetch(self.policy.user_agent, url)

    # -- internals ----------------------------------------------------------------------------
    def _cacheable(self, result: FetchResult) -> bool:
        return result.status == OK or (
            result.status == HTTP_ERROR and result.http_status in self.policy.cache_statuses)

    def _load_robots(self, origin: str) -> urllib.robotparser.RobotFileParser | None:
        url = origin + "/robots.txt"
        result = self.cache.get(url) if self.cache is not None else None
        if result is None:
            # No robots check on its own redirects: robots.txt is always fetchable, and asking
            # would re-enter the lock we hold.
            result = self._fetch_following_redirects(url, check_robots=False)
            if self.cache is not None and (result.status == OK or (
                    result.http_status is not None and 400 <= result.http_status < 500)):
                self.cache.put(result)
        self._count("robots_files")
        parser = urllib.robotparser.RobotFileParser(url)
        if result.status == OK:
            lines = (result.body or b"").decode("utf-8", "replace").splitlines()
            parser.parse(lines)
            delay = crawl_delay(lines, self.policy.user_agent)
            if delay:
                self.throttle.slow_down(urlsplit(origin).hostname or "", float(delay))
        elif result.http_status is not None and 400 <= result.http_status < 500:
            parser.allow_all = True  # no robots.txt: everything is allowed
        else:
            return None
        return parser

    def _fetch_following_redirects(self, url: str, check_robots: bool = True) -> FetchResult:
        current, requests = url, 0
        for _ in range(self.policy.max_redirects + 1):
            result = self._request_with_retries(current)
            requests += result.requests
            result.url, result.requests = url, requests
            if result.http_status not in REDIRECT_STATUSES or result.status != OK:
                result.final_url = current
                if result.status == OK and not 200 <= (result.http_status or 0) < 300:
                    result.status = HTTP_ERROR
                    result.error = f"HTTP {result.http_status}"
                    result.body = None
                return result
            if not result.location:
                return FetchResult(url, current, HTTP_ERROR, http_status=result.http_status,
                                   error="redirect without a Location header", requests=requests)
            location = result.location
            target = self.transport.inward(urljoin(self.transport.outward(current), location))
            if not self.on_host(target):
                self._count("off_host_redirects")
                return FetchResult(url, target, OFF_HOST, http_status=result.http_status,
                                   error=f"redirect to {target} leaves the crawled hosts",
                                   requests=requests)
            if check_robots and self.policy.respect_robots and not self.robots_allows(target):
                return FetchResult(url, target, SKIPPED_ROBOTS, http_status=result.http_status,
                                   error=f"redirect to {target} disallowed by robots.txt",
                                   requests=requests)
            current = target
        return FetchResult(url, current, TOO_MANY_REDIRECTS, requests=requests,
                           error=f"more than {self.policy.max_redirects} redirects")

    def _request_with_retries(self, url: str) -> FetchResult:
        """One URL, no redirect following; a redirect comes back as OK with its `location`."""
        host = urlsplit(url).hostname or ""
        attempts = 0

        def attempt(n: int) -> FetchResult:
            nonlocal attempts
            if n:
                self._count("retries")
            self.throttle.wait(host)
            attempts += 1
            self._count("requests")
            return self._request_once(url, attempts)

        try:
            return call_with_retries(attempt, self.policy.max_retries + 1, self.backoff)
        except RetriesExhausted as exc:
            last = exc.last
            status = HTTP_ERROR if last.status is not None and not last.reason.startswith(
                "truncated") else NETWORK_ERROR
            return FetchResult(url, url, status, http_status=last.status, requests=attempts,
                               error=str(exc))

    def _request_once(self, url: str, attempts: int) -> FetchResult:
        """One GET; a failure worth retrying raises RetryableFailure."""
        try:
            response = self.client.get(self.transport.outward(url))
            body = response.content
        except httpx.TimeoutException as exc:
            raise RetryableFailure(f"timeout: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            # Connection refused/reset, or a body cut short of its Content-Length.
            raise RetryableFailure(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        declared = response.headers.get("content-length")
        encoded = response.headers.get("content-encoding")
        if declared and declared.isdigit() and not encoded and int(declared) != len(body):
            raise RetryableFailure(f"truncated body: {len(body)} of {declared} bytes",
                                   status=status)
        if status in self.policy.retry_statuses:
            raise RetryableFailure(f"HTTP {status}", status=status,
                                   retry_after_s=self._retry_after(response))
        if status in REDIRECT_STATUSES:
            return FetchResult(url, url, OK, http_status=status,
                               location=response.headers.get("location"), requests=attempts)
        return FetchResult(url, url, OK, http_status=status,
                           content_type=response.headers.get("content-type"),
                           body=body, requests=attempts)

    def _retry_after(self, response: httpx.Response) -> float | None:
        """Retry-After in whole seconds, capped at backoff_max_s (a crawler never waits longer)."""
        value = (response.headers.get("retry-after") or "").strip()
        return min(float(value), self.policy.backoff_max_s) if value.isdigit() else None
