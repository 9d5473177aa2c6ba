"""clean_librus end to end: the embedded mirror crawled by scrape_librus, then cleaned."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from src.config import compose, load_config
from src.data.librus.clean import clean_librus, doc_id
from src.data.librus.scrape import scrape_librus
from src.data.readers import InputFileError
from src.paths import PROJECT_ROOT
from src.stage import StageRun

MIRROR = PROJECT_ROOT / "data" / "sample" / "librus_mirror"


def configs(tmp_path: Path, *overrides: str):
    return load_config(compose([
        f"scrape_librus.out_dir={tmp_path / 'raw'}", f"scrape_librus.cache_dir={tmp_path / 'cache'}",
        "scrape_librus.progress=false", f"clean_librus.raw_dir={tmp_path / 'raw'}",
        f"clean_librus.output={tmp_path / 'clean' / 'librus.parquet'}",
        f"clean_librus.report_dir={tmp_path / 'report'}", "tracking.enabled=false", *overrides,
    ]))


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MIRROR.is_dir():
        pytest.skip("data/sample/librus_mirror absent")
    tmp = tmp_path_factory.mktemp("librus")
    cfg = configs(tmp)
    scrape_librus(cfg, StageRun("scrape_librus", cfg, tracking_active=False))
    return tmp


def run_clean(tmp: Path, *overrides: str) -> tuple[list[dict], dict, StageRun]:
    cfg = configs(tmp, *overrides)
    run = StageRun("clean_librus", cfg, tracking_active=False)
    clean_librus(cfg, run)
    rows = pq.read_table(tmp / "clean" / "librus.parquet").to_pylist()
    report = json.loads((tmp / "report" / "report.json").read_text(encoding="utf-8"))
    return rows, report, run


def test_every_manifest_row_is_a_document_or_dropped_with_a_reason(crawled: Path) -> None:
    rows, report, run = run_clean(crawled, "clean_librus.workers=2")
    manifest = pq.read_table(crawled / "raw" / "manifest.parquet").to_pylist()
    urls = {r["url"] for r in rows} | {d["url"] for d in report["dropped"]}
    assert urls == {m["url"] for m in manifest}
    assert len(rows) + len(report["dropped"]) == len(manifest)
    assert all(d["reason"] for d in report["dropped"])
    works = [m for m in manifest if m["status"] == "ok" and m["kind"] == "text"]
    assert len(rows) == len(works) == 11
    assert any(d["reason"].startswith("skipped_robots") for d in report["dropped"])
    assert all(r["doc_id"] == doc_id(r["url"]) for r in rows)
    assert run.summary.wrote["documents"] == 11
    assert (crawled / "report" / "report.md").read_text(encoding="utf-8").startswith("# clean_librus report")


def test_apparatus_gone_letters_and_prose_kept(crawled: Path) -> None:
    rows, report, _ = run_clean(crawled, "clean_librus.workers=1")
    by_url = {r["url"].rsplit("/", 1)[-1] or r["url"]: r for r in rows}
    everything = "\n".join(r["text"] for r in rows)
    for gone in ("ЦГАЛИ", "ГПБ", "ИРЛИ", "Примечания", "Список сокращений", "Варианты",
                 "История писания", "Начато:", "Вместо:", "Заметка на полях", "OCR", "Популярность",
                 "Книгу можно купить", "Last-modified", "[1]", "<", "Суворину", "Лебедеву", "ё"):
        assert gone not in everything, gone
    letters = by_url["pisma.txt"]["text"]
    assert "Дорогой Алексей Сергеевич!" in letters and "Твой Павел." in letters
    assert "Ветер на плотине" not in by_url["veter.txt"]["text"].split("\n")[0]
    for name, count in report["rules"].items():
        assert count["chars_removed"] >= 0, name
    assert sum(c["matches"] for c in report["rules"].values()) > 20
    assert all(r["n_chars"] == len(r["text"]) > 500 for r in rows)
    assert set(pa.Table.from_pylist(rows).column_names) >= {
        "doc_id", "author", "title", "url", "format", "text", "n_chars", "chars_in"}


def test_broken_pages_are_reported_not_fatal(crawled: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "pages").mkdir(parents=True)
    table = pq.read_table(crawled / "raw" / "manifest.parquet")
    rows = table.to_pylist()
    for row in rows:
        if row["path"]:
            src = crawled / "raw" / row["path"]
            (raw / row["path"]).write_bytes(src.read_bytes())
    works = [r for r in rows if r["status"] == "ok" and r["kind"] == "text"]
    (raw / works[0]["path"]).write_bytes(b"\xff\xfe not utf-8 \x00")
    (raw / works[1]["path"]).write_text("<html><body><!--Section Ends--></body></html>", encoding="utf-8")
    (raw / works[2]["path"]).unlink()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), raw / "manifest.parquet")
    out, report, _ = run_clean(tmp_path, "clean_librus.workers=1")
    reasons = {d["url"]: d["reason"] for d in report["dropped"]}
    assert reasons[works[0]["url"]].startswith("unreadable stored page")
    assert reasons[works[1]["url"]].startswith(("unparsable", "too short"))
    assert reasons[works[2]["url"]].startswith("unreadable stored page")
    assert len(out) == 8


def test_missing_manifest_names_the_file(tmp_path: Path) -> None:
    cfg = configs(tmp_path)
    with pytest.raises(InputFileError, match="manifest.parquet: not found; the crawl manifest"):
        clean_librus(cfg, StageRun("clean_librus", cfg, tracking_active=False))
