from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LibrusAuthor:
    """One author and where each lib.ru site keeps them (null = not crawled on that site)."""

    name: str = "???"
    # Directory under Moshkov's /LITRA/, e.g. CHEHOW -> http://lib.ru/LITRA/CHEHOW/
    moshkov: str | None = None
    # "<letter>/<slug>" on az.lib.ru, e.g. c/chehov_a_p -> http://az.lib.ru/c/chehov_a_p/
    az: str | None = None


@dataclass
class LibrusSite:
    """One lib.ru site format: where author indexes live and which links on them are works."""

    base_url: str = "???"
    # Author index URL path; {dir} is the author's `moshkov` or `az` value.
    author_path: str = "???"
    # Regex on a link's file name (search): which links on an author index are works.
    work_pattern: str = "???"
    # Regex on a link's file name (search): links that look like works but are not (format variants).
    skip_pattern: str | None = None


@dataclass
class CrawlPolicy:
    """How politely and how persistently pages are fetched."""

    user_agent: str = "homunculus-librus/0.1 (+research; polite crawler)"
    # Per host: at most this many requests per second (retries included).
    requests_per_second: float = 1.0
    # Pages in flight at once, all hosts together.
    concurrency: int = 4
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    # Retries after the first attempt, on retry_statuses, timeouts, resets and truncated bodies.
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    # Random extra wait, as a fraction of the backoff, so that retries from threads do not align.
    backoff_jitter: float = 0.25
    retry_statuses: list[int] = field(default_factory=lambda: [429, 500, 502, 503, 504])
    max_redirects: int = 5
    respect_robots: bool = True
    # HTTP answers stored in the cache as final (besides 2xx): a re-run does not ask again.
    cache_statuses: list[int] = field(default_factory=lambda: [404, 410])
    # Nested author sub-indexes followed below the author index (0 = only the index itself).
    max_index_depth: int = 1
    # Hosts besides those of the sites' base_url that redirects may go to (e.g. www.lib.ru).
    extra_hosts: list[str] = field(default_factory=list)


@dataclass
class DecodePolicy:
    """Charset decoding: header, then <meta>, then detection, then a Cyrillic frequency check."""

    # Encodings the frequency check compares the chosen decoding against.
    rivals: list[str] = field(default_factory=lambda: ["utf-8", "koi8-r", "windows-1251"])
    # Mean log-probability per Cyrillic letter a rival must win by to override the evidence.
    margin: float = 0.5
    # Pages with fewer Cyrillic letters are not second-guessed.
    min_letters: int = 20
    # Mean log-probability per letter below which a decoding does not read as Russian (prose about
    # -3.2, koi8-r/windows-1251 mojibake about -6.9).
    min_score: float = -4.5


@dataclass
class ScrapeLibrusConfig:
    """The `scrape_librus` stage: lib.ru pages (or a local dump) -> data/raw/librus/."""

    # mirror: the embedded lib.ru-format mirror served on 127.0.0.1 and crawled like the real site;
    # http: the real sites; local: a folder of .html/.txt files (local_dir).
    source: str = "mirror"
    out_dir: str = "data/raw/librus"
    # crawl_report.json: what this run did (per URL: answered by the cache or fetched, requests
    # made). Not a DVC output and not in out_dir: out_dir (clean_librus' input) holds only what was
    # read, so a re-crawl of the same pages leaves it byte-identical.
    report_dir: str = "data/reports/scrape_librus"
    # Outside DVC outs (DVC deletes outs before a re-run). mirror runs use a subfolder named by a
    # fingerprint of the mirror's files, so an edited mirror is never answered from an old cache.
    cache_dir: str = "data/cache/librus"
    use_cache: bool = True
    mirror_dir: str = "data/sample/librus_mirror"
    # The mirror's table of Content-Type charsets, relative to mirror_dir.
    mirror_charsets: str = "charsets.json"
    local_dir: str | None = None
    local_suffixes: list[str] = field(default_factory=lambda: [".txt", ".html", ".htm", ".shtml"])
    # Per author and site, at most this many works (null = all): for quick trials on the real site.
    max_works_per_author: int | None = None
    moshkov: LibrusSite = field(default_factory=lambda: LibrusSite(
        base_url="http://lib.ru", author_path="/LITRA/{dir}/", work_pattern=r"\.txt$",
        skip_pattern=r"_(Ascii\.txt|with-big-pictures\.html|Contents)$|\.(fb2|zip|rar)$"))
    az: LibrusSite = field(default_factory=lambda: LibrusSite(
        base_url="http://az.lib.ru", author_path="/{dir}/", work_pattern=r"^text_\d+[-\w]*\.shtml$"))
    authors: list[LibrusAuthor] = field(default_factory=list)
    crawl: CrawlPolicy = field(default_factory=CrawlPolicy)
    decode: DecodePolicy = field(default_factory=DecodePolicy)
    # Show a progress bar (tqdm decides by itself whether stderr is a terminal).
    progress: bool = True
