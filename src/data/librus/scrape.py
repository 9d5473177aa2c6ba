"""Stage `scrape_librus`: lib.ru author pages (or a local folder) -> decoded pages + a manifest.

Output (`out_dir`): `pages/<sha1 of url>.html|.txt` (the page decoded to UTF-8, byte-for-byte the
site's markup otherwise) and `manifest.parquet`, one row per URL or file seen, whatever became of it
(see MANIFEST_SCHEMA). Both are a function of what was read only: a re-crawl answered by the cache
writes the same bytes as the first, so DVC sees no change downstream. What the run itself did
(cache or network, requests per URL, retries) goes to `report_dir/crawl_report.json`. Sources: `mirror` (the embedded mirror served on 127.0.0.1 and crawled like
the real site), `http` (lib.ru and az.lib.ru), `local` (a folder of .html/.txt files).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from src.atomic_io import write_bytes_atomic, write_parquet_atomic, write_text_atomic
from src.config.sections.scrape_librus import LibrusSite, ScrapeLibrusConfig
from src.data.librus.crawl import OK, Crawler, PageCache, Transport, url_key
from src.data.librus.decode import decode_html
from src.data.librus.discover import INDEX, TEXT, author_url, index_links, page_title
from src.data.librus.mirror_server import MirrorSite, load_charsets
from src.paths import resolve
from src.stage import StageRun

MOSHKOV = "moshkov"
AZ = "az"
LOCAL = "local"
SOURCES = ("mirror", "http", "local")
DECODE_ERROR = "decode_error"
SKIPPED_LIMIT = "skipped_limit"
SKIPPED_SUFFIX = "skipped_suffix"
READ_ERROR = "read_error"
HTML_SUFFIXES = (".html", ".htm", ".shtml")

MANIFEST_SCHEMA = pa.schema([
    ("url", pa.string()),  # canonical URL (lib.ru's own, even when crawled from the mirror)
    ("final_url", pa.string()),  # after redirects
    ("author", pa.string()),
    ("title", pa.string()),
    ("kind", pa.string()),  # index | text
    ("format", pa.string()),  # moshkov | az | local
    ("status", pa.string()),  # ok | http_error | error | skipped_robots | off_host | ...
    ("error", pa.string()),
    ("http_status", pa.int32()),
    ("encoding", pa.string()),
    ("encoding_source", pa.string()),  # header | meta | detected | corrected | bom | empty
    ("bytes", pa.int64()),  # raw bytes as served / read
    ("chars", pa.int64()),  # characters after decoding
    ("sha256", pa.string()),  # of the raw bytes
    ("path", pa.string()),  # stored page, relative to out_dir
    ("parent_url", pa.string()),  # the index page that linked it
    # index pages: links followed, and links left alone (site furniture, other authors, variants)
    ("links_followed", pa.int32()),
    ("links_ignored", pa.int32()),
])
# Per-run facts: carried by the rows, written to the crawl report, never to the manifest.
RUN_COLUMNS = ("from_cache", "requests")


@dataclass(frozen=True)
class Task:
    url: str
    kind: str
    author: str
    format: str
    title: str
    author_root: str
    site: LibrusSite | None  # None for local files
    depth: int = 0
    parent_url: str | None = None


def scrape_librus(cfg: DictConfig, run: StageRun) -> None:
    conf: ScrapeLibrusConfig = OmegaConf.to_object(cfg.scrape_librus)  # type: ignore[assignment]
    if conf.source not in SOURCES:
        raise ValueError(f"scrape_librus.source: {conf.source!r} is not one of {', '.join(SOURCES)}")
    out_dir = resolve(conf.out_dir)
    (out_dir / "pages").mkdir(parents=True, exist_ok=True)
    http_stats: dict[str, int] = {}
    if conf.source == LOCAL:
        rows = scrape_local(conf, out_dir)
    else:
        rows = scrape_sites(conf, out_dir, http_stats)
    manifest = write_manifest(rows, out_dir)
    removed = prune_pages(out_dir, {r["path"] for r in rows if r["path"]})
    report = write_crawl_report(rows, http_stats, conf, resolve(conf.report_dir))
    summarize(rows, run, removed, http_stats)
    run.summary.notes.append(f"this run's cache hits and requests per URL: {report}")
    run.log_artifact(manifest)
    run.log_artifact(report)


# -- crawling the sites -------------------------------------------------------------------------
def scrape_sites(conf: ScrapeLibrusConfig, out_dir: Path,
                 http_stats: dict[str, int]) -> list[dict[str, Any]]:
    """Crawl the configured sites; the crawler's counters are added to `http_stats`."""
    sites = {MOSHKOV: conf.moshkov, AZ: conf.az}
    check_sites(sites)
    hosts = {_host(site.base_url) for site in sites.values()}
    with ExitStack() as stack:
        transport = Transport()
        cache_dir = resolve(conf.cache_dir)
        if conf.source == "mirror":
            mirror_dir = resolve(conf.mirror_dir)
            charsets = load_charsets(mirror_dir, conf.mirror_charsets)
            for site in sites.values():
                host = _host(site.base_url)
                if not (mirror_dir / host).is_dir():
                    raise FileNotFoundError(f"{mirror_dir / host}: the mirror has no folder for "
                                            f"{site.base_url} (scrape_librus.mirror_dir)")
                served = stack.enter_context(MirrorSite(mirror_dir, host, charsets))
                transport.mapping[site.base_url.rstrip("/")] = served.base_url
            cache_dir = cache_dir / f"mirror-{mirror_fingerprint(mirror_dir)}"
        cache = PageCache(cache_dir) if conf.use_cache else None
        crawler = stack.enter_context(Crawler(conf.crawl, hosts, cache, transport))
        rows = crawl(conf, crawler, out_dir, seeds(conf, sites))
        http_stats.update(sorted(crawler.stats.items()))
    return rows


def check_sites(sites: dict[str, LibrusSite]) -> None:
    """Bad patterns or URLs fail before any request, naming the key."""
    for name, site in sites.items():
        for key in ("work_pattern", "skip_pattern"):
            pattern = getattr(site, key)
            try:
                if pattern is not None:
                    re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"scrape_librus.{name}.{key}: bad regex {pattern!r} ({exc})") from None
        if urlsplit(site.base_url).scheme not in ("http", "https") or not _host(site.base_url):
            raise ValueError(f"scrape_librus.{name}.base_url: {site.base_url!r} is not an http(s) URL")
        if "{dir}" not in site.author_path:
            raise ValueError(f"scrape_librus.{name}.author_path: {site.author_path!r} lacks {{dir}}")


def seeds(conf: ScrapeLibrusConfig, sites: dict[str, LibrusSite]) -> list[Task]:
    tasks = []
    for author in conf.authors:
        for fmt, site in sites.items():
            directory = getattr(author, fmt)
            if directory:
                root = author_url(site, directory)
                tasks.append(Task(root, INDEX, author.name, fmt, author.name, root, site))
    return tasks


def crawl(conf: ScrapeLibrusConfig, crawler: Crawler, out_dir: Path,
          tasks: list[Task]) -> list[dict[str, Any]]:
    """Breadth-first over author indexes and their works, `concurrency` pages at a time."""
    rows: list[dict[str, Any]] = []
    seen = {t.url for t in tasks}
    works: dict[tuple[str, str], int] = {}
    with ThreadPoolExecutor(max(1, conf.crawl.concurrency)) as pool, tqdm(
        total=len(tasks), desc="scrape_librus", unit="page", disable=None if conf.progress else True
    ) as bar:
        pending: dict[Future, Task] = {pool.submit(fetch_task, conf, crawler, out_dir, t): t
                                       for t in tasks}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                pending.pop(future)
                row, children = future.result()
                rows.append(row)
                bar.update(1)
                for child in children:
                    if child.url in seen:
                        continue
                    seen.add(child.url)
                    if child.kind == TEXT:
                        key = (child.author, child.format)
                        works[key] = works.get(key, 0) + 1
                        limit = conf.max_works_per_author
                        if limit is not None and works[key] > limit:
                            rows.append(_row(child, status=SKIPPED_LIMIT,
                                             error=f"max_works_per_author={limit}"))
                            continue
                    pending[pool.submit(fetch_task, conf, crawler, out_dir, child)] = child
                    bar.total += 1
                bar.refresh()
    return rows


def fetch_task(conf: ScrapeLibrusConfig, crawler: Crawler, out_dir: Path,
               task: Task) -> tuple[dict[str, Any], list[Task]]:
    result = crawler.fetch(task.url)
    row = _row(task, status=result.status, error=result.error, http_status=result.http_status,
               final_url=result.final_url, from_cache=result.from_cache,
               requests=result.requests)
    if result.status != OK or result.body is None:
        return row, []
    body = result.body
    row.update(bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
    try:
        decoded = decode_html(body, result.header_charset, tuple(conf.decode.rivals),
                              conf.decode.margin, conf.decode.min_letters,
                              conf.decode.min_score)
    except ValueError as exc:
        row.update(status=DECODE_ERROR, error=f"{task.url}: {exc}")
        return row, []
    row.update(encoding=decoded.encoding, encoding_source=decoded.source,
               chars=len(decoded.text), path=store_page(out_dir, task.url, decoded.text, ".html"))
    if task.kind == TEXT and not task.title:
        row["title"] = page_title(decoded.text)
    children: list[Task] = []
    if task.kind == INDEX and task.site is not None:
        links = index_links(decoded.text, result.final_url, task.author_root, task.site)
        row.update(links_followed=len(links.follow), links_ignored=links.outside + links.not_works)
        for link in links.follow:
            if link.kind == INDEX and task.depth >= conf.crawl.max_index_depth:
                continue
            children.append(Task(link.url, link.kind, task.author, task.format,
                                 link.title, task.author_root, task.site,
                                 task.depth + 1, task.url))
    return row, children


# -- a local folder -----------------------------------------------------------------------------
def scrape_local(conf: ScrapeLibrusConfig, out_dir: Path) -> list[dict[str, Any]]:
    """Every file under local_dir: decoded into pages/ like a crawled page, or reported."""
    if not conf.local_dir:
        raise ValueError("scrape_librus.local_dir: required when source=local")
    root = resolve(conf.local_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"scrape_librus.local_dir: {root} is not a folder")
    suffixes = {s.lower() for s in conf.local_suffixes}
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    rows = []
    for path in tqdm(files, desc="scrape_librus (local)", unit="file",
                     disable=None if conf.progress else True):
        rel = path.relative_to(root).as_posix()
        author = path.parent.name if path.parent != root else ""
        task = Task(f"local:{rel}", TEXT, author, LOCAL, path.stem, "", None)
        if path.suffix.lower() not in suffixes:
            rows.append(_row(task, status=SKIPPED_SUFFIX,
                             error=f"{rel}: suffix not in scrape_librus.local_suffixes"))
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            rows.append(_row(task, status=READ_ERROR, error=f"{rel}: {exc}"))
            continue
        row = _row(task, status=OK, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        try:
            decoded = decode_html(data, None, tuple(conf.decode.rivals), conf.decode.margin,
                                  conf.decode.min_letters, conf.decode.min_score)
        except ValueError as exc:
            row.update(status=DECODE_ERROR, error=f"{rel}: {exc}")
        else:
            suffix = ".html" if path.suffix.lower() in HTML_SUFFIXES else ".txt"
            row.update(encoding=decoded.encoding, encoding_source=decoded.source,
                       chars=len(decoded.text),
                       path=store_page(out_dir, task.url, decoded.text, suffix))
        rows.append(row)
    return rows


# -- output -------------------------------------------------------------------------------------
def store_page(out_dir: Path, url: str, text: str, suffix: str) -> str:
    rel = f"pages/{url_key(url)}{suffix}"
    write_bytes_atomic(out_dir / rel, text.encode("utf-8"))
    return rel


def _manifest_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["format"], r["author"], r["url"]))


def write_manifest(rows: list[dict[str, Any]], out_dir: Path) -> Path:
    """The manifest: only MANIFEST_SCHEMA's columns (the schema leaves RUN_COLUMNS out)."""
    table = pa.Table.from_pylist(_manifest_order(rows), schema=MANIFEST_SCHEMA)
    path = out_dir / "manifest.parquet"
    write_parquet_atomic(path, table)
    return path


def write_crawl_report(rows: list[dict[str, Any]], http_stats: dict[str, int],
                       conf: ScrapeLibrusConfig, report_dir: Path) -> Path:
    """crawl_report.json: the run's own facts, per URL in manifest order, and the HTTP counters."""
    ordered = _manifest_order(rows)
    report = {
        "source": conf.source,
        "urls": len(ordered),
        "pages_fetched": sum(1 for r in ordered if r["status"] == OK and not r["from_cache"]
                             and r["format"] != LOCAL),
        "pages_cached": sum(1 for r in ordered if r["status"] == OK and r["from_cache"]),
        "files_read": sum(1 for r in ordered if r["status"] == OK and r["format"] == LOCAL),
        "http": dict(sorted(http_stats.items())),
        "per_url": [{"url": r["url"], "status": r["status"], "error": r["error"],
                     **{name: r[name] for name in RUN_COLUMNS}} for r in ordered],
    }
    path = report_dir / "crawl_report.json"
    write_text_atomic(path, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return path


def prune_pages(out_dir: Path, keep: set[str]) -> int:
    """Remove pages a previous run stored that this run's manifest does not name."""
    removed = 0
    for page in (out_dir / "pages").iterdir():
        if f"pages/{page.name}" not in keep:
            if page.is_dir():
                shutil.rmtree(page)
            else:
                page.unlink()
            removed += 1
    return removed


def summarize(rows: list[dict[str, Any]], run: StageRun, removed: int,
              http_stats: dict[str, int]) -> None:
    summary = run.summary
    for key, value in sorted(http_stats.items()):
        summary.add("read", f"http_{key}", value)
    summary.add("read", "urls_seen", len(rows))
    for row in rows:
        if row["status"] == OK:
            if row["format"] == LOCAL:
                summary.add("read", "files_read")
            else:
                summary.add("read", "pages_cached" if row["from_cache"] else "pages_fetched")
            summary.add("read", "bytes", row["bytes"] or 0)
            summary.add("wrote", f"pages_{row['kind']}")
            summary.add("wrote", "chars", row["chars"] or 0)
        else:
            summary.add("dropped", row["status"])
    ignored = sum(row["links_ignored"] or 0 for row in rows)
    if ignored:
        summary.add("read", "index_links_ignored", ignored)
    summary.add("wrote", "manifest_rows", len(rows))
    if removed:
        summary.notes.append(f"removed {removed} stale page(s) left by an earlier run")


def mirror_fingerprint(mirror_dir: Path) -> str:
    """Hash of every file's path and bytes: a changed mirror gets a fresh cache."""
    digest = hashlib.sha256()
    for path in sorted(p for p in mirror_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(mirror_dir).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _row(task: Task, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in MANIFEST_SCHEMA.names}
    row.update(url=task.url, final_url=task.url, author=task.author, title=task.title,
               kind=task.kind, format=task.format, parent_url=task.parent_url,
               from_cache=False, requests=0)
    row.update(values)
    return row
