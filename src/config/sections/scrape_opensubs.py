"""`scrape_opensubs`: collect raw SRT files from archives on disk and/or the OpenSubtitles.com REST API."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExtractionLimits:
    """Caps that keep a hostile or broken archive from exhausting memory, disk or time."""

    # One SRT larger than this is recorded as too_large (real subtitles rarely exceed 1 MiB).
    max_member_bytes: int = 16 * 1024 * 1024
    # A nested archive (e.g. a per-subtitle zip inside a download zip) is read into memory: cap it.
    max_nested_archive_bytes: int = 256 * 1024 * 1024
    # Per top-level archive file: total uncompressed bytes read and members seen (nested included).
    max_archive_bytes: int = 64 * 1024 * 1024 * 1024
    max_archive_members: int = 5_000_000
    # Uncompressed/compressed above this is an archive bomb; SRT text deflates only ~3-5x.
    max_compression_ratio: float = 200.0
    # The ratio is only judged once this many bytes are uncompressed (tiny files compress oddly).
    ratio_min_bytes: int = 1024 * 1024
    # Archives nested deeper than this (big.zip!a.zip!b.zip!...) are recorded as too_deep.
    max_depth: int = 4


@dataclass
class ArchivesSourceConfig:
    # Directories, .zip, .tar(.gz/.bz2/.xz), .tgz or .gz files; directories are walked recursively.
    inputs: list[str] = field(default_factory=lambda: ["data/sample/subtitles"])
    # Directory symlinks are recorded and not followed (loops); symlinked files are read.
    follow_file_symlinks: bool = True
    limits: ExtractionLimits = field(default_factory=ExtractionLimits)


@dataclass
class RetryConfig:
    # Attempts per request on 429 / 5xx / connection errors before the request counts as failed.
    max_attempts: int = 5
    # Exponential backoff for 5xx and connection errors: base * 2**attempt, capped.
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    # Longest Retry-After we wait for; a longer one stops the run like a spent quota (resume later).
    retry_after_max_s: float = 120.0
    # Wait when a 429 carries neither Retry-After nor a ratelimit-reset header.
    retry_after_default_s: float = 1.0


@dataclass
class ApiSourceConfig:
    base_url: str = "https://api.opensubtitles.com/api/v1"
    # Names of environment variables (never the secrets themselves: params.yaml is committed).
    api_key_env: str = "OPENSUBTITLES_API_KEY"
    username_env: str = "OPENSUBTITLES_USERNAME"
    password_env: str = "OPENSUBTITLES_PASSWORD"
    # Log in for a bearer token (higher download quota for registered / VIP users).
    login: bool = False
    # The API rejects requests without an application User-Agent ("Name vX.Y").
    user_agent: str = "homunculus v0.1"
    # Searches: each query and each IMDb id is searched in all languages (ISO 639-1 codes).
    languages: list[str] = field(default_factory=lambda: ["en", "ru"])
    queries: list[str] = field(default_factory=list)
    imdb_ids: list[str] = field(default_factory=list)
    # Extra GET /subtitles filters, e.g. order_by, type, machine_translated.
    search_params: dict[str, str] = field(default_factory=dict)
    max_pages: int = 5
    # Downloads attempted in one run (the daily quota is the server's; this is ours).
    max_downloads: int = 100
    # Asked of POST /download so every file arrives as SRT.
    sub_format: str = "srt"
    timeout_s: float = 30.0
    # Pause between requests: the API allows about 5 per second per IP.
    min_interval_s: float = 0.25
    retry: RetryConfig = field(default_factory=RetryConfig)


@dataclass
class ScrapeOpensubsConfig:
    # Any of "archives", "api" (both: archives first).
    sources: list[str] = field(default_factory=lambda: ["archives"])
    output_dir: str = "data/raw/opensubs"
    # Survives DVC's deletion of output_dir: API downloads and quota state, so reruns never refetch.
    cache_dir: str = "data/cache/opensubs"
    # Names (lower-cased) ending in one of these are subtitles; every other member is recorded not_srt.
    srt_suffixes: list[str] = field(default_factory=lambda: [".srt"])
    # Store byte-identical files once; later copies are recorded as duplicate_bytes.
    dedup_bytes: bool = True
    # Path tokens (split on . _ - / space) that hint at a file's language, e.g. Film.2001.eng.srt.
    language_hints: dict[str, str] = field(
        default_factory=lambda: {
            "en": "en", "eng": "en", "english": "en",
            "ru": "ru", "rus": "ru", "russian": "ru",
            "uk": "uk", "ukr": "uk", "ukrainian": "uk",
        }
    )
    archives: ArchivesSourceConfig = field(default_factory=ArchivesSourceConfig)
    api: ApiSourceConfig = field(default_factory=ApiSourceConfig)
