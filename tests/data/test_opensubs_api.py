"""The OpenSubtitles REST client and the API source, against a local fake server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from omegaconf import DictConfig, OmegaConf

from src.config.sections.scrape_opensubs import ScrapeOpensubsConfig
from src.data.opensubs.api import (
    ApiAuthError,
    ApiError,
    MissingCredentials,
    OpenSubtitlesClient,
    RateLimited,
    normalize_imdb_id,
)
from src.data.opensubs.scrape import scrape_opensubs
from src.stage import StageRun
from tests.data.fake_opensubs_api import FakeOpenSubtitles, FakeSubtitle

KEY_ENV = "OPENSUBTITLES_API_KEY"


def srt(n: int) -> bytes:
    return f"1\r\n00:00:01,000 --> 00:00:02,000\r\nLine number {n}.\r\n".encode()


def catalogue(n_en: int = 5, n_ru: int = 1) -> list[FakeSubtitle]:
    subs = [FakeSubtitle(100 + i, 5000 + i, "en", "The Fake Film", 133093, srt(i)) for i in range(n_en)]
    subs += [FakeSubtitle(200 + i, 6000 + i, "ru", "The Fake Film", 133093, srt(100 + i))
             for i in range(n_ru)]
    subs.append(FakeSubtitle(300, 7000, "de", "The Fake Film", 133093, srt(999)))
    return subs


def section(tmp_path: Path, base_url: str, **api: Any) -> DictConfig:
    cfg = OmegaConf.structured(ScrapeOpensubsConfig)
    cfg.sources = ["api"]
    cfg.output_dir = str(tmp_path / "out")
    cfg.cache_dir = str(tmp_path / "cache")
    cfg.api.base_url = base_url
    cfg.api.queries = ["the fake film"]
    cfg.api.min_interval_s = 0.0
    cfg.api.retry.backoff_base_s = 0.001
    cfg.api.retry.retry_after_max_s = 5.0
    return OmegaConf.merge(cfg, {"api": api})


def run_stage(cfg: DictConfig) -> tuple[pl.DataFrame, StageRun]:
    root = OmegaConf.create({"scrape_opensubs": cfg})
    run = StageRun("scrape_opensubs", root, tracking_active=False)
    scrape_opensubs(root, run)
    return pl.read_parquet(Path(cfg.output_dir) / "manifest.parquet"), run


class SleepRecorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, "test-key")
    return "test-key"


def client_for(fake: FakeOpenSubtitles, tmp_path: Path, sleep: SleepRecorder,
               key: str = "test-key", **api: Any) -> OpenSubtitlesClient:
    return OpenSubtitlesClient(section(tmp_path, fake.base_url, **api).api, key, sleep=sleep)


def test_search_follows_pagination_and_sends_required_headers(tmp_path: Path) -> None:
    with FakeOpenSubtitles(catalogue(5, 1), per_page=2) as fake:
        with client_for(fake, tmp_path, SleepRecorder()) as client:
            files = list(client.iter_search(["ru", "en"], query="The Fake Film", max_pages=10))
            assert [f.file_id for f in files] == [5000, 5001, 5002, 5003, 5004, 6000]
            assert files[0].imdb_id == "tt0133093" and files[0].title == "The Fake Film"
            assert {f.language for f in files} == {"en", "ru"}
            searches = fake.calls_to("/api/v1/subtitles")
            assert [c.query.get("page", "1") for c in searches] == ["1", "2", "3"]
            assert searches[0].query["languages"] == "en,ru"  # sorted, as the API wants
            assert searches[0].query["query"] == "the fake film"
            assert searches[0].headers["Api-Key"] == "test-key"
            assert searches[0].headers["User-Agent"].startswith("homunculus")
            limited = list(client.iter_search(["en"], imdb_id="tt0133093", max_pages=2))
            assert len(limited) == 4
            assert fake.calls_to("/api/v1/subtitles")[-1].query["imdb_id"] == "133093"


def test_normalize_imdb_id() -> None:
    assert normalize_imdb_id("tt0133093") == "133093"
    with pytest.raises(ValueError, match="imdb_ids"):
        normalize_imdb_id("matrix")


def test_rate_limit_waits_retry_after_then_succeeds(tmp_path: Path) -> None:
    sleep = SleepRecorder()
    with FakeOpenSubtitles(catalogue()) as fake:
        fake.force("/api/v1/subtitles", 429, {"Retry-After": "2"})
        fake.force("/api/v1/subtitles", 429, {"ratelimit-reset": "3"})
        with client_for(fake, tmp_path, sleep) as client:
            page = client.search(["en"], query="fake")
    assert len(page.files) == 2
    assert 2.0 in sleep.waits and 3.0 in sleep.waits
    assert len(fake.calls_to("/api/v1/subtitles")) == 3


def test_a_short_retry_after_never_waits_less_than_the_backoff(tmp_path: Path) -> None:
    sleep = SleepRecorder()
    with FakeOpenSubtitles(catalogue()) as fake:
        fake.force("/api/v1/subtitles", 503)
        fake.force("/api/v1/subtitles", 429, {"Retry-After": "0"})
        with client_for(fake, tmp_path, sleep, retry={"backoff_base_s": 0.5}) as client:
            client.search(["en"], query="fake")
    assert sleep.waits == [0.5, 1.0]  # base * 2**attempt; the 429's 0 s would hammer the server
    assert len(fake.calls_to("/api/v1/subtitles")) == 3


def test_rate_limit_longer_than_allowed_stops(tmp_path: Path) -> None:
    with FakeOpenSubtitles(catalogue()) as fake:
        fake.force("/api/v1/subtitles", 429, {"Retry-After": "3600"})
        with client_for(fake, tmp_path, SleepRecorder()) as client, pytest.raises(RateLimited):
            client.search(["en"], query="fake")


def test_server_errors_retry_with_backoff(tmp_path: Path) -> None:
    sleep = SleepRecorder()
    with FakeOpenSubtitles(catalogue()) as fake:
        fake.force("/api/v1/download", 503)
        fake.force("/api/v1/download", 502)
        with client_for(fake, tmp_path, sleep, retry={"backoff_base_s": 0.5}) as client:
            ticket = client.request_download(5000)
            assert client.fetch(ticket.link) == srt(0)
        assert sleep.waits[:2] == [0.5, 1.0]  # base * 2**attempt
        fake.force("/api/v1/download", 500, times=5)
        with client_for(fake, tmp_path, sleep) as client, pytest.raises(ApiError, match="5 attempts"):
            client.request_download(5001)


def test_bad_key_is_a_clear_error(tmp_path: Path) -> None:
    with FakeOpenSubtitles(catalogue()) as fake:
        with client_for(fake, tmp_path, SleepRecorder(), key="wrong") as client:
            with pytest.raises(ApiAuthError, match=KEY_ENV):
                client.search(["en"], query="fake")
        assert len(fake.calls) == 1  # 401 is never retried


def test_missing_key_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    cfg = section(tmp_path, "http://127.0.0.1:9/api/v1")
    with pytest.raises(MissingCredentials, match=KEY_ENV):
        run_stage(cfg)
    assert not Path(cfg.output_dir).exists()


def test_stage_downloads_search_results_into_manifest(tmp_path: Path, api_key: str) -> None:
    with FakeOpenSubtitles(catalogue(3, 1)) as fake:
        manifest, run = run_stage(section(tmp_path, fake.base_url))
    assert manifest["status"].to_list() == ["ok"] * 4
    row = manifest.filter(pl.col("file_id") == "os6000").row(0, named=True)
    assert row["language"] == "ru" and row["imdb_id"] == "tt0133093" and row["source"] == "api"
    assert (tmp_path / "out" / row["stored_path"]).read_bytes() == srt(100)
    assert run.summary.wrote["files"] == 4
    assert sorted(fake.downloaded) == [5000, 5001, 5002, 6000]
    assert (tmp_path / "cache" / "files" / "6000.srt").read_bytes() == srt(100)


def test_a_rerun_from_the_download_cache_writes_identical_output(tmp_path: Path,
                                                                 api_key: str) -> None:
    """clean_subs hashes the output dir: cached and fresh downloads must not differ in it."""
    with FakeOpenSubtitles(catalogue(3, 1)) as fake:
        cfg = section(tmp_path, fake.base_url)
        run_stage(cfg)
        out = tmp_path / "out"
        first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        downloads = len(fake.calls_to("/api/v1/download"))
        run_stage(cfg)
        assert len(fake.calls_to("/api/v1/download")) == downloads  # all from the cache
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == first


def test_login_sends_bearer_token(tmp_path: Path, api_key: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSUBTITLES_USERNAME", "alice")
    monkeypatch.delenv("OPENSUBTITLES_PASSWORD", raising=False)
    with FakeOpenSubtitles(catalogue(1, 0)) as fake:
        with pytest.raises(MissingCredentials, match="OPENSUBTITLES_PASSWORD"):
            run_stage(section(tmp_path, fake.base_url, login=True))
        monkeypatch.setenv("OPENSUBTITLES_PASSWORD", "secret")
        manifest, _ = run_stage(section(tmp_path, fake.base_url, login=True))
        assert manifest["status"].to_list() == ["ok"]
        assert fake.calls_to("/api/v1/download")[0].headers["Authorization"] == "Bearer tok-123"
        monkeypatch.setenv("OPENSUBTITLES_PASSWORD", "wrong")
        with pytest.raises(ApiAuthError, match="OPENSUBTITLES_USERNAME"):
            run_stage(section(tmp_path, fake.base_url, login=True))


def test_quota_stops_cleanly_and_resumes_without_refetching(tmp_path: Path, api_key: str) -> None:
    with FakeOpenSubtitles(catalogue(5, 0), quota=2) as fake:
        cfg = section(tmp_path, fake.base_url)
        manifest, run = run_stage(cfg)
        assert manifest["status"].value_counts().sort("status").rows() == [("ok", 2), ("quota", 3)]
        pending = json.loads((tmp_path / "cache" / "pending.json").read_text())
        assert [p["file_id"] for p in pending] == [5002, 5003, 5004]
        assert any("not fetched" in note for note in run.summary.notes)
        assert run.summary.dropped["quota"] == 3

        # Same day: the quota state says "wait", so no download is even attempted.
        calls = len(fake.calls_to("/api/v1/download"))
        manifest, _ = run_stage(cfg)
        assert len(fake.calls_to("/api/v1/download")) == calls
        assert manifest["status"].value_counts().sort("status").rows() == [("ok", 2), ("quota", 3)]

        # Next day: the reset time has passed and the server grants a new quota.
        quota_file = tmp_path / "cache" / "quota.json"
        state = json.loads(quota_file.read_text())
        quota_file.write_text(json.dumps({**state, "reset_time_utc": "2000-01-01T00:00:00Z"}))
        fake.quota = 10
        manifest, _ = run_stage(cfg)
        assert manifest["status"].to_list() == ["ok"] * 5
        assert sorted(fake.downloaded) == [5000, 5001, 5002, 5003, 5004]  # each exactly once
        assert not quota_file.exists()
        assert json.loads((tmp_path / "cache" / "pending.json").read_text()) == []


def test_406_answer_stops_downloads(tmp_path: Path, api_key: str) -> None:
    with FakeOpenSubtitles(catalogue(3, 0), quota=0) as fake:
        manifest, _ = run_stage(section(tmp_path, fake.base_url))
        assert len(fake.calls_to("/api/v1/download")) == 1  # stop after the first 406
    assert manifest["status"].to_list() == ["quota"] * 3
    assert "allowed subtitles" in manifest["error"][0]
    state = json.loads((tmp_path / "cache" / "quota.json").read_text())
    assert state["reset_time_utc"] == "2099-01-01T00:00:00.000Z"


def test_failed_download_is_recorded_and_the_rest_continue(tmp_path: Path, api_key: str) -> None:
    with FakeOpenSubtitles(catalogue(2, 0)) as fake:
        fake.force("/api/v1/download", 500, times=5)  # the first file exhausts its retries
        fake.force("/api/v1/subtitles", 503)  # one transient search failure, retried
        manifest, run = run_stage(section(tmp_path, fake.base_url))
    assert manifest["status"].to_list() == ["api_error", "ok"]
    assert "gave up after 5 attempts" in manifest["error"][0]
    assert run.summary.dropped == {"api_error": 1}


def test_max_downloads_defers_the_rest(tmp_path: Path, api_key: str) -> None:
    with FakeOpenSubtitles(catalogue(3, 0)) as fake:
        manifest, _ = run_stage(section(tmp_path, fake.base_url, max_downloads=1))
    assert manifest["status"].to_list() == ["ok", "quota", "quota"]
    assert "max_downloads=1" in manifest["error"][1]


def test_api_config_group_runs_against_the_fake(tmp_path: Path, api_key: str) -> None:
    from src.config import compose, load_config

    with FakeOpenSubtitles(catalogue(2, 1)) as fake:
        cfg = load_config(compose([
            "scrape_opensubs=api", "tracking.enabled=false",
            f"scrape_opensubs.api.base_url={fake.base_url}",
            f"scrape_opensubs.output_dir={tmp_path / 'out'}",
            f"scrape_opensubs.cache_dir={tmp_path / 'cache'}",
            "scrape_opensubs.api.min_interval_s=0",
        ]))
        scrape_opensubs(cfg, StageRun("scrape_opensubs", cfg, tracking_active=False))
        search = fake.calls_to("/api/v1/subtitles")[0].query
    assert search["imdb_id"] == "133093" and search["machine_translated"] == "exclude"
    manifest = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert manifest["status"].to_list() == ["ok"] * 3


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"reset_time_utc": 5}', b"\xff\xfe\x00"])
def test_a_damaged_quota_memo_is_forgotten_with_a_warning(tmp_path: Path, content: bytes,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import datetime, timezone

    from src.data.opensubs.api_source import DownloadCache

    cache = DownloadCache(tmp_path)
    (tmp_path / "quota.json").write_bytes(content)
    assert cache.quota_block(datetime.now(timezone.utc)) is None
    assert "ignoring unreadable quota state" in capsys.readouterr().err
    assert not (tmp_path / "quota.json").exists()
    # A real memo still blocks.
    cache.set_quota("2999-01-01T00:00:00Z", "quota spent")
    assert "quota spent" in cache.quota_block(datetime.now(timezone.utc))
