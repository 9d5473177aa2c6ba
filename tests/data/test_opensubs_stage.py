"""The `scrape_opensubs` stage end to end on the embedded sample (data/sample/subtitles/)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from src.config import compose, load_config
from src.data.opensubs.api import MissingCredentials
from src.data.opensubs.scrape import scrape_opensubs
from src.paths import PROJECT_ROOT
from src.stage import StageRun, execute_stage

SAMPLE = PROJECT_ROOT / "data" / "sample" / "subtitles"


def sample_config(tmp_path: Path, *overrides: str):
    return load_config(compose([
        "tracking.enabled=false",
        f"scrape_opensubs.output_dir={tmp_path / 'raw'}",
        f"scrape_opensubs.cache_dir={tmp_path / 'cache'}",
        *overrides,
    ]))


def test_stage_on_the_sample_tree(tmp_path: Path) -> None:
    if not (SAMPLE / "archives").is_dir():
        pytest.skip(f"{SAMPLE}/archives absent")
    summary = execute_stage("scrape_opensubs", sample_config(tmp_path))
    out = tmp_path / "raw"
    manifest = pl.read_parquet(out / "manifest.parquet")
    members = dict(zip(manifest["member"], manifest["status"], strict=True))
    # Every plain .srt of the sample and every subtitle inside the archives is stored, raw.
    plain = sorted(p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*.srt"))
    for member in plain:
        assert members[member] in ("ok", "duplicate_bytes"), member
        row = manifest.filter(pl.col("member") == member).row(0, named=True)
        if row["status"] == "ok":
            assert (out / row["stored_path"]).read_bytes() == (SAMPLE / member).read_bytes()
    nested = [m for m in members if m.count("!") >= 2 and m.endswith(".srt")]
    assert len(nested) == 2 and all(members[m] == "ok" for m in nested)
    assert members["archives/README.md"] == "not_srt"
    assert members["archives/opensubs_download.zip!9100001.zip!download_info.nfo"] == "not_srt"
    ok = manifest.filter(pl.col("status") == "ok")
    assert sorted(p.name for p in (out / "files").iterdir()) == sorted(
        Path(p).name for p in ok["stored_path"])
    assert summary.wrote["files"] == ok.height
    assert summary.read["entries"] + summary.read["archives"] == manifest.height
    assert summary.dropped.get("not_srt", 0) >= 2
    assert not list(tmp_path.glob(".raw.*"))  # staging folder swapped in, nothing left behind


def test_a_rerun_on_the_same_archives_writes_identical_output(tmp_path: Path) -> None:
    execute_stage("scrape_opensubs", sample_config(tmp_path))
    out = tmp_path / "raw"
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    execute_stage("scrape_opensubs", sample_config(tmp_path))
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == first


def test_failed_run_keeps_previous_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    execute_stage("scrape_opensubs", sample_config(tmp_path))
    before = pl.read_parquet(tmp_path / "raw" / "manifest.parquet")
    # The archives are walked into the staging folder, then the API source fails (no key).
    monkeypatch.delenv("OPENSUBTITLES_API_KEY", raising=False)
    cfg = sample_config(tmp_path, "scrape_opensubs.sources=[archives,api]",
                        "scrape_opensubs.api.queries=[x]")
    with pytest.raises(MissingCredentials, match="OPENSUBTITLES_API_KEY"):
        scrape_opensubs(cfg, StageRun("scrape_opensubs", cfg, tracking_active=False))
    assert pl.read_parquet(tmp_path / "raw" / "manifest.parquet").equals(before)
    assert not list(tmp_path.glob(".raw.*"))
    bad = sample_config(tmp_path, "scrape_opensubs.sources=[archives,ftp]")
    with pytest.raises(ValueError, match="scrape_opensubs.sources"):
        scrape_opensubs(bad, StageRun("scrape_opensubs", bad, tracking_active=False))
