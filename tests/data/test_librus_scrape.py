"""Stage `scrape_librus` end to end: the embedded mirror, a killed-and-resumed crawl, a local folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from omegaconf import DictConfig, OmegaConf

from src.config import compose
from src.config.sections.scrape_librus import ScrapeLibrusConfig
from src.data.librus import scrape as scrape_module
from src.data.librus.mirror_server import MirrorSite
from src.data.librus.scrape import mirror_fingerprint, scrape_librus
from src.paths import PROJECT_ROOT
from src.stage import StageRun, execute_stage

MIRROR = PROJECT_ROOT / "data" / "sample" / "librus_mirror"
N_URLS = 16  # 4 author indexes + 12 linked works (one disallowed by robots.txt)


def stage_config(tmp_path: Path, *overrides: str) -> DictConfig:
    """The composed sample config, its scrape_librus section validated, outputs under tmp_path."""
    composed = compose([
        f"scrape_librus.out_dir={tmp_path / 'raw'}", f"scrape_librus.cache_dir={tmp_path / 'cache'}",
        f"scrape_librus.report_dir={tmp_path / 'reports'}", "scrape_librus.progress=false",
        *overrides,
    ])
    section = OmegaConf.merge(OmegaConf.structured(ScrapeLibrusConfig), composed.scrape_librus)
    return OmegaConf.create({"scrape_librus": section})


def run_stage(cfg: DictConfig) -> StageRun:
    run = StageRun("scrape_librus", cfg, tracking_active=False)
    scrape_librus(cfg, run)
    return run


@pytest.fixture
def counted(monkeypatch):
    """Requests per (host, path) over every mirror server the stage starts."""
    counts: Counter[tuple[str, str]] = Counter()

    class CountingSite(MirrorSite):
        def respond(self, path):
            counts[(self.host, path)] += 1
            return super().respond(path)

    monkeypatch.setattr(scrape_module, "MirrorSite", CountingSite)
    return counts


def read_manifest(tmp_path: Path) -> pl.DataFrame:
    return pl.read_parquet(tmp_path / "raw" / "manifest.parquet")


def read_crawl_report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "reports" / "crawl_report.json").read_text(encoding="utf-8"))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_sample_crawl_records_every_url_and_a_rerun_fetches_nothing(tmp_path, counted):
    cfg = stage_config(tmp_path)
    first = run_stage(cfg)
    manifest = read_manifest(tmp_path)
    assert manifest.height == N_URLS
    assert manifest["url"].n_unique() == N_URLS
    by_status = dict(manifest.group_by("status").len().iter_rows())
    assert by_status == {"ok": 15, "skipped_robots": 1}
    assert set(manifest["format"]) == {"moshkov", "az"}
    assert dict(manifest.group_by("kind").len().iter_rows()) == {"index": 4, "text": 12}
    # URLs are lib.ru's own, never the loopback server's
    assert manifest["url"].str.starts_with("http://lib.ru/").sum() == 9
    assert manifest["url"].str.starts_with("http://az.lib.ru/").sum() == 7

    doroga = manifest.filter(pl.col("url").str.ends_with("doroga.txt")).row(0, named=True)
    assert (doroga["encoding"], doroga["encoding_source"]) == ("koi8-r", "corrected")
    assert doroga["title"] == "Дорога на Ветлугу" and doroga["author"] == "Озерова Анна Сергеевна"
    for row in manifest.filter(pl.col("status") == "ok").iter_rows(named=True):
        text = (tmp_path / "raw" / row["path"]).read_text(encoding="utf-8")
        assert len(text) == row["chars"] and row["bytes"] > 0 and len(row["sha256"]) == 64
        if row["kind"] == "text":
            assert row["title"] in text
    assert all(n == 1 for n in counted.values()), counted
    assert ("lib.ru", "/LITRA/ZARECHNYJ/drafts/chernovik.txt") not in counted
    assert first.summary.read["pages_fetched"] == 15

    counted.clear()
    second = run_stage(cfg)
    assert sum(counted.values()) == 0
    assert second.summary.read["pages_cached"] == 15
    again = read_manifest(tmp_path)
    same = ["url", "status", "path", "sha256", "encoding", "title"]
    assert again.select(same).equals(manifest.select(same))


def test_a_crawl_killed_midway_resumes_without_refetching(tmp_path, counted, monkeypatch):
    cfg = stage_config(tmp_path, "scrape_librus.crawl.concurrency=2")
    real_fetch_task = scrape_module.fetch_task
    done = Counter()

    def dies_after_six(*args):
        result = real_fetch_task(*args)  # the page is fetched and cached, then the run "dies"
        done["pages"] += 1
        if done["pages"] == 6:
            raise KeyboardInterrupt("killed")
        return result

    monkeypatch.setattr(scrape_module, "fetch_task", dies_after_six)
    with pytest.raises(KeyboardInterrupt):
        run_stage(cfg)
    first_run = Counter(counted)
    assert 6 <= sum(n for (_, p), n in first_run.items() if p != "/robots.txt") < N_URLS

    monkeypatch.setattr(scrape_module, "fetch_task", real_fetch_task)
    counted.clear()
    run_stage(cfg)
    manifest = read_manifest(tmp_path)
    assert manifest.height == N_URLS and (manifest["status"] == "ok").sum() == 15
    # Each page crossed the wire exactly once over both runs.
    both = first_run + counted
    assert all(n == 1 for n in both.values()), both
    report = read_crawl_report(tmp_path)
    assert sum(u["from_cache"] for u in report["per_url"]) == report["pages_cached"] == sum(
        n for (_, p), n in first_run.items() if p != "/robots.txt")


def test_a_cached_recrawl_leaves_clean_librus_input_byte_identical(tmp_path, counted):
    """DVC hashes out_dir (clean_librus' input): whether pages came from the network or the cache
    must not show in it, or a fresh clone's `dvc repro` would rewrite dvc.lock."""
    cfg = stage_config(tmp_path)
    run_stage(cfg)
    fetched = tree_bytes(tmp_path / "raw")
    first_report = read_crawl_report(tmp_path)
    counted.clear()
    run_stage(cfg)
    assert sum(counted.values()) == 0  # all answered by the cache
    assert tree_bytes(tmp_path / "raw") == fetched
    assert set(pl.read_parquet(tmp_path / "raw" / "manifest.parquet").columns).isdisjoint(
        {"from_cache", "requests"})
    # The run's own facts live in the crawl report, outside out_dir.
    second_report = read_crawl_report(tmp_path)
    assert (first_report["pages_fetched"], first_report["pages_cached"]) == (15, 0)
    assert (second_report["pages_fetched"], second_report["pages_cached"]) == (0, 15)
    assert first_report["http"]["requests"] == 17 and "requests" not in second_report["http"]
    per_url = {u["url"]: u for u in first_report["per_url"]}
    assert len(per_url) == N_URLS
    assert per_url["http://lib.ru/LITRA/ZARECHNYJ/veter.txt"]["requests"] == 1


DRIVER = """
import sys
from omegaconf import OmegaConf
from src.config import compose
from src.config.sections.scrape_librus import ScrapeLibrusConfig
from src.data.librus.scrape import scrape_librus
from src.stage import StageRun
section = OmegaConf.merge(OmegaConf.structured(ScrapeLibrusConfig), compose(sys.argv[1:]).scrape_librus)
cfg = OmegaConf.create({"scrape_librus": section})
scrape_librus(cfg, StageRun("scrape_librus", cfg, tracking_active=False))
"""


def test_a_crawl_killed_by_sigkill_resumes(tmp_path, counted):
    # Slow enough (5 pages/s per host, one at a time) that the kill lands mid-crawl.
    overrides = [f"scrape_librus.out_dir={tmp_path / 'raw'}",
                 f"scrape_librus.cache_dir={tmp_path / 'cache'}", "scrape_librus.progress=false",
                 f"scrape_librus.report_dir={tmp_path / 'reports'}",
                 "scrape_librus.crawl.requests_per_second=5", "scrape_librus.crawl.concurrency=1"]
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, *overrides], cwd=PROJECT_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    cache_root = tmp_path / "cache" / f"mirror-{mirror_fingerprint(MIRROR)}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(cache_root.rglob("*.json"))) < 6:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = _cached_urls(cache_root)
    assert 6 <= len(done_before) < N_URLS + 2  # +2: the two robots.txt

    run_stage(stage_config(tmp_path))
    fetched_now = {f"http://{host}{path}" for (host, path) in counted}
    assert not fetched_now & done_before  # nothing fetched twice
    manifest = read_manifest(tmp_path)
    assert manifest.height == N_URLS and (manifest["status"] == "ok").sum() == 15


def _cached_urls(cache_root: Path) -> set[str]:
    """URLs whose cache entry is complete (its JSON, written last, exists)."""
    return {json.loads(p.read_text())["url"] for p in cache_root.rglob("*.json")}


def test_local_folder_goes_through_the_same_path(tmp_path):
    src = tmp_path / "dump"
    (src / "Заречный").mkdir(parents=True)
    prose = "Плотину на Сосновке чинили каждую весну, и каждую весну вода уносила всё."
    (src / "Заречный" / "veter.txt").write_bytes(prose.encode("koi8-r"))
    (src / "Заречный" / "lekar.html").write_bytes(f"<pre>{prose}</pre>".encode("windows-1251"))
    (src / "top.txt").write_text(prose, encoding="utf-8")
    (src / "info.csv").write_text("a,b\n")
    (src / "broken.txt").write_bytes(b"\x00\x01\x02binary")
    cfg = stage_config(tmp_path, "scrape_librus.source=local", f"scrape_librus.local_dir={src}")
    run = run_stage(cfg)
    manifest = read_manifest(tmp_path)
    rows = {r["url"]: r for r in manifest.iter_rows(named=True)}
    assert set(rows) == {"local:Заречный/veter.txt", "local:Заречный/lekar.html", "local:top.txt",
                         "local:info.csv", "local:broken.txt"}
    veter = rows["local:Заречный/veter.txt"]
    assert (veter["author"], veter["title"], veter["format"], veter["encoding"]) == (
        "Заречный", "veter", "local", "koi8-r")
    assert (tmp_path / "raw" / veter["path"]).read_text(encoding="utf-8") == prose
    assert rows["local:Заречный/lekar.html"]["path"].endswith(".html")
    assert rows["local:Заречный/lekar.html"]["encoding"] == "windows-1251"
    assert rows["local:info.csv"]["status"] == "skipped_suffix"
    assert rows["local:broken.txt"]["status"] == "decode_error"
    assert "broken.txt" in rows["local:broken.txt"]["error"]
    assert run.summary.dropped == {"skipped_suffix": 1, "decode_error": 1}


def test_stale_pages_of_an_earlier_run_are_removed(tmp_path):
    cfg = stage_config(tmp_path)
    stale = tmp_path / "raw" / "pages" / "0000.html"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    run = run_stage(cfg)
    assert not stale.exists()
    assert any("stale" in note for note in run.summary.notes)


@pytest.mark.parametrize("overrides, message", [
    (["scrape_librus.source=ftp"], "not one of"),
    (["scrape_librus.source=local"], "local_dir: required"),
    (["scrape_librus.mirror_dir=/nonexistent"], "has no folder"),
    (["scrape_librus.az.work_pattern='text_(['"], r"scrape_librus\.az\.work_pattern: bad regex"),
    (["scrape_librus.moshkov.base_url=lib.ru"], r"scrape_librus\.moshkov\.base_url"),
    (["scrape_librus.moshkov.author_path=/LITRA/"], "lacks"),
])
def test_bad_settings_fail_with_the_key_named(tmp_path, overrides, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run_stage(stage_config(tmp_path, *overrides))


def test_execute_stage_runs_it_with_tracking_off(tmp_path):
    section = stage_config(tmp_path).scrape_librus
    summary = execute_stage("scrape_librus", OmegaConf.create(
        {"scrape_librus": section, "tracking": {"enabled": False}}))
    assert summary.wrote["manifest_rows"] == N_URLS


@pytest.mark.real_data
def test_real_lib_ru_files_through_the_local_source(tmp_path, shared_data):
    cfg = stage_config(tmp_path, "scrape_librus.source=local",
                       f"scrape_librus.local_dir={shared_data / 'librus_real'}")
    run_stage(cfg)
    rows = {r["url"]: r for r in read_manifest(tmp_path).iter_rows(named=True)}
    assert rows["local:libru__homepage__koi8-r.html"]["encoding"] == "koi8-r"
    kapitan = rows["local:libru__LITRA_PUSHKIN_kapitan__2018__windows-1251.txt"]
    assert kapitan["encoding"] == "windows-1251" and kapitan["status"] == "ok"
    text = (tmp_path / "raw" / kapitan["path"]).read_text(encoding="utf-8")
    assert "Капитанская дочка" in text
    assert rows["local:PROVENANCE.md"]["status"] == "skipped_suffix"


def test_max_works_per_author_records_what_it_skips(tmp_path, counted):
    run_stage(stage_config(tmp_path, "scrape_librus.max_works_per_author=1"))
    manifest = read_manifest(tmp_path)
    assert manifest.height == N_URLS  # nothing vanishes: skipped works are rows too
    texts = manifest.filter(pl.col("kind") == "text")
    per_site = texts.filter(pl.col("status") != "skipped_limit").group_by("author", "format").len()
    assert set(per_site["len"]) == {1}
    skipped = texts.filter(pl.col("status") == "skipped_limit")
    assert skipped.height == 12 - per_site.height
    assert not {u.removeprefix("http://lib.ru").removeprefix("http://az.lib.ru")
                for u in skipped["url"]} & {p for (_, p) in counted}


def test_real_site_config_seeds_the_21_authors_on_both_sites():
    from src.config import load_config
    from src.data.librus.scrape import seeds

    cfg = load_config(compose(["scrape_librus=librus_ru"]))
    conf = OmegaConf.to_object(cfg.scrape_librus)
    assert conf.source == "http" and len(conf.authors) == 21
    tasks = seeds(conf, {"moshkov": conf.moshkov, "az": conf.az})
    assert len(tasks) == 42 and len({t.url for t in tasks}) == 42
    assert "http://lib.ru/LITRA/CHEHOW/" in {t.url for t in tasks}
    assert "http://az.lib.ru/c/chehov_a_p/" in {t.url for t in tasks}
    assert conf.crawl.requests_per_second <= 1 and conf.crawl.respect_robots
