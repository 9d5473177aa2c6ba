"""The crawler against the embedded mirror served on 127.0.0.1 with injected faults."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from src.config.sections.scrape_librus import CrawlPolicy
from src.data.librus.crawl import (
    HTTP_ERROR,
    NETWORK_ERROR,
    OFF_HOST,
    OK,
    SKIPPED_ROBOTS,
    Crawler,
    PageCache,
    Transport,
    url_key,
)
from src.data.librus.mirror_server import MirrorSite, Response, load_charsets
from src.paths import PROJECT_ROOT

MIRROR = PROJECT_ROOT / "data" / "sample" / "librus_mirror"
LIBRU = "http://lib.ru"
# Fast settings: faults must cost milliseconds, not the real site's seconds.
FAST = CrawlPolicy(requests_per_second=0, concurrency=2, timeout_s=0.4, connect_timeout_s=0.4,
                   max_retries=2, backoff_base_s=0.01, backoff_max_s=0.05, backoff_jitter=0.0)


class FaultySite(MirrorSite):
    """The mirror, but each path in `faults` first answers with the listed faults, in order."""

    def __init__(self, faults: dict[str, list[str]]) -> None:
        super().__init__(MIRROR, "lib.ru", load_charsets(MIRROR, "charsets.json"))
        self.faults = {path: list(kinds) for path, kinds in faults.items()}

    def respond(self, path: str) -> Response:
        queue = self.faults.get(path)
        fault = queue.pop(0) if queue else None
        if fault is not None and fault != "always_500" and not queue:
            self.faults.pop(path)
        if fault == "always_500":
            queue.insert(0, fault)  # type: ignore[union-attr]
        page = super().respond(path)
        if fault in ("500", "503", "always_500"):
            return Response(int(fault[-3:]), b"oops", {"Content-Type": "text/plain"})
        if fault == "timeout":
            return replace(page, delay_s=FAST.timeout_s * 3)
        if fault == "truncate":
            return replace(page, send_bytes=len(page.body) // 2)
        if fault == "off_host":
            return Response(302, b"", {"Location": "http://elsewhere.example/stolen.txt"})
        if fault == "local_redirect":
            return Response(301, b"", {"Location": path + "?moved=1"})
        if fault == "wrong_charset":
            return replace(page, headers={"Content-Type": "text/html; charset=koi8-r"})
        return page


@pytest.fixture
def site_factory():
    sites: list[FaultySite] = []

    def start(faults: dict[str, list[str]]) -> FaultySite:
        site = FaultySite(faults).start()
        sites.append(site)
        return site

    yield start
    for site in sites:
        site.stop()


def crawler_for(site: MirrorSite, cache: PageCache | None, policy: CrawlPolicy = FAST) -> Crawler:
    return Crawler(policy, {"lib.ru"}, cache, Transport({LIBRU: site.base_url}))


def test_faults_are_retried_recorded_and_never_fetched_twice(site_factory, tmp_path: Path):
    faults = {
        "/LITRA/ZARECHNYJ/veter.txt": ["500", "503"],
        "/LITRA/ZARECHNYJ/lekar.txt": ["timeout"],
        "/LITRA/OZEROWA/sad.txt": ["truncate"],
        "/LITRA/OZEROWA/zapiski.txt": ["off_host"],
        "/LITRA/ZARECHNYJ/pisma.txt": ["wrong_charset"],
        "/LITRA/OZEROWA/doroga.txt": ["always_500"],
    }
    site = site_factory(faults)
    urls = [f"{LIBRU}{path}" for path in faults] + [f"{LIBRU}/LITRA/ZARECHNYJ/drafts/chernovik.txt"]
    cache = PageCache(tmp_path / "cache")
    with crawler_for(site, cache) as crawler:
        results = {r.url: r for r in map(crawler.fetch, urls)}

    status = {url.removeprefix(LIBRU): r.status for url, r in results.items()}
    assert status == {
        "/LITRA/ZARECHNYJ/veter.txt": OK,
        "/LITRA/ZARECHNYJ/lekar.txt": OK,
        "/LITRA/OZEROWA/sad.txt": OK,
        "/LITRA/OZEROWA/zapiski.txt": OFF_HOST,
        "/LITRA/ZARECHNYJ/pisma.txt": OK,
        "/LITRA/OZEROWA/doroga.txt": HTTP_ERROR,
        "/LITRA/ZARECHNYJ/drafts/chernovik.txt": SKIPPED_ROBOTS,
    }
    requests = dict(site.requests)
    assert requests == {
        "/robots.txt": 1,
        "/LITRA/ZARECHNYJ/veter.txt": 3,  # two 5xx, then the page
        "/LITRA/ZARECHNYJ/lekar.txt": 2,  # a timeout, then the page
        "/LITRA/OZEROWA/sad.txt": 2,  # half a body, then the page
        "/LITRA/OZEROWA/zapiski.txt": 1,  # the off-host redirect is refused, not followed
        "/LITRA/ZARECHNYJ/pisma.txt": 1,
        "/LITRA/OZEROWA/doroga.txt": FAST.max_retries + 1,
    }
    sad = (MIRROR / "lib.ru/LITRA/OZEROWA/sad.txt").read_bytes()
    assert results[f"{LIBRU}/LITRA/OZEROWA/sad.txt"].body == sad
    off = results[f"{LIBRU}/LITRA/OZEROWA/zapiski.txt"]
    assert off.final_url == "http://elsewhere.example/stolen.txt" and "leaves" in (off.error or "")
    assert "HTTP 500" in (results[f"{LIBRU}/LITRA/OZEROWA/doroga.txt"].error or "")
    assert results[f"{LIBRU}/LITRA/ZARECHNYJ/pisma.txt"].header_charset == "koi8-r"

    # A re-run answers every good page from the cache; only the failures are asked again.
    again = site_factory({})
    with crawler_for(again, cache) as crawler:
        rerun = {r.url: r for r in map(crawler.fetch, urls)}
    assert dict(again.requests) == {"/LITRA/OZEROWA/zapiski.txt": 1,
                                    "/LITRA/OZEROWA/doroga.txt": 1}
    assert all(r.status in (OK, SKIPPED_ROBOTS) for r in rerun.values())
    assert rerun[f"{LIBRU}/LITRA/ZARECHNYJ/veter.txt"].from_cache


def test_network_failure_is_an_error_not_an_exception(tmp_path: Path):
    # Nothing listens on this port (we bound and closed it): every attempt is refused.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    policy = replace(FAST, respect_robots=False, max_retries=1)
    with Crawler(policy, {"lib.ru"}, None, Transport({LIBRU: f"http://127.0.0.1:{port}"})) as c:
        result = c.fetch(f"{LIBRU}/LITRA/")
    assert result.status == NETWORK_ERROR and result.requests == 2
    assert "after 2 attempts" in (result.error or "")


def test_same_host_redirect_is_followed_and_off_host_url_never_requested(site_factory):
    site = site_factory({"/LITRA/OZEROWA/sad.txt": ["local_redirect"]})
    with crawler_for(site, None) as crawler:
        moved = crawler.fetch(f"{LIBRU}/LITRA/OZEROWA/sad.txt")
        outside = crawler.fetch("http://elsewhere.example/x.txt")
    assert moved.status == OK and moved.final_url.endswith("sad.txt?moved=1")
    assert outside.status == OFF_HOST and outside.requests == 0
    assert site.requests["/LITRA/OZEROWA/sad.txt"] == 2


def test_unreachable_robots_txt_means_disallow(site_factory):
    site = site_factory({"/robots.txt": ["always_500"]})
    with crawler_for(site, None) as crawler:
        result = crawler.fetch(f"{LIBRU}/LITRA/ZARECHNYJ/veter.txt")
    assert result.status == SKIPPED_ROBOTS
    assert site.requests["/LITRA/ZARECHNYJ/veter.txt"] == 0


def test_half_written_cache_entries_are_refetched(site_factory, tmp_path: Path):
    url = f"{LIBRU}/LITRA/ZARECHNYJ/veter.txt"
    cache = PageCache(tmp_path / "cache")
    site = site_factory({})
    with crawler_for(site, cache) as crawler:
        assert crawler.fetch(url).status == OK
    key = url_key(url)
    body_path = tmp_path / "cache" / key[:2] / f"{key}.body"
    meta_path = body_path.with_suffix(".json")
    # A kill between the body and its JSON leaves a body with a stale JSON: not taken as done.
    body_path.write_bytes(body_path.read_bytes()[:100])
    assert cache.get(url) is None
    meta_path.unlink()
    assert cache.get(url) is None
    with crawler_for(site, cache) as crawler:
        assert crawler.fetch(url).status == OK
    assert site.requests["/LITRA/ZARECHNYJ/veter.txt"] == 2
    assert json.loads(meta_path.read_text())["bytes"] == len(body_path.read_bytes())


def test_rate_limit_spaces_requests_per_host(site_factory):
    import time

    site = site_factory({})
    policy = replace(FAST, requests_per_second=20.0, respect_robots=False)
    with crawler_for(site, None, policy) as crawler:
        started = time.monotonic()
        for name in ("veter", "lekar", "pisma", "veter"):
            crawler.fetch(f"{LIBRU}/LITRA/ZARECHNYJ/{name}.txt")
        elapsed = time.monotonic() - started
    assert elapsed >= 3 / policy.requests_per_second * 0.9


def test_robots_crawl_delay_slows_that_host_down(site_factory, monkeypatch):
    import time

    site = site_factory({})
    original = site.respond

    def robots_with_delay(path: str) -> Response:
        if path == "/robots.txt":
            return Response(200, b"User-agent: *\nCrawl-delay: 0.1\n",
                            {"Content-Type": "text/plain"})
        return original(path)

    monkeypatch.setattr(site, "respond", robots_with_delay)
    with crawler_for(site, None) as crawler:
        started = time.monotonic()
        for name in ("veter", "lekar", "pisma"):
            assert crawler.fetch(f"{LIBRU}/LITRA/ZARECHNYJ/{name}.txt").status == OK
        elapsed = time.monotonic() - started
    assert elapsed >= 0.2 * 0.9  # the delay is known after robots.txt: 3 pages, 2 gaps of 0.1 s


def test_final_http_answers_are_cached_with_their_reason(site_factory, tmp_path: Path):
    site = site_factory({})
    cache = PageCache(tmp_path / "cache")
    url = f"{LIBRU}/LITRA/ZARECHNYJ/missing.txt"
    with crawler_for(site, cache) as crawler:
        first = crawler.fetch(url)
        second = crawler.fetch(url)
    assert (first.status, first.http_status, first.from_cache) == (HTTP_ERROR, 404, False)
    assert (second.status, second.http_status, second.from_cache) == (HTTP_ERROR, 404, True)
    assert second.error == first.error == "HTTP 404"  # a cache answer reads like the network's
    assert site.requests["/LITRA/ZARECHNYJ/missing.txt"] == 1


def test_a_redirected_robots_txt_is_followed_without_deadlock(site_factory):
    import threading

    site = site_factory({"/robots.txt": ["local_redirect"]})
    results = []
    with crawler_for(site, None) as crawler:
        worker = threading.Thread(target=lambda: results.append(
            crawler.fetch(f"{LIBRU}/LITRA/ZARECHNYJ/drafts/chernovik.txt")), daemon=True)
        worker.start()
        worker.join(timeout=10)
    assert not worker.is_alive(), "fetching robots.txt through a redirect hung"
    assert results[0].status == SKIPPED_ROBOTS  # the redirected robots.txt was read and obeyed
    assert site.requests["/robots.txt"] == 2
