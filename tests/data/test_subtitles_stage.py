"""The clean_subs stage end to end on a manifest built here, the probe's exit status, the benchmark."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from src.bench.clean_subs import main as bench_main
from src.config import compose, load_config
from src.data.readers import InputFileError
from src.data.subtitles.stage import clean_subs
from src.paths import PROJECT_ROOT
from src.stage import StageRun
from tests.data.subtitle_fixtures import srt

SAMPLE = PROJECT_ROOT / "data" / "sample" / "subtitles"


def _manifest(tmp_path: Path) -> Path:
    """data/raw/opensubs as scrape_opensubs writes it: files/<id>.srt + manifest.parquet."""
    raw = tmp_path / "raw"
    (raw / "files").mkdir(parents=True)
    rows = []

    def add(file_id: str, data: bytes | None, status: str = "ok", error: str | None = None) -> None:
        path = None
        if data is not None:
            path = f"files/{file_id}.srt"
            (raw / path).write_bytes(data)
        rows.append({"file_id": file_id, "source": "test", "member": f"{file_id}.srt", "status": status,
                     "error": error, "language": None, "title": f"title {file_id}", "imdb_id": None,
                     "path": path})

    for p in sorted(SAMPLE.glob("*.srt")):
        add(p.stem, p.read_bytes())
    add("ads_only", srt((0, 1000, "Downloaded From www.AllSubs.org"), (2000, 3000, "Subtitles by Nobody")).encode())
    add("binary", bytes(range(0, 32)) * 40)
    add("letter", b"Dear John,\nthis is not a subtitle file at all.\n")
    add("missing_on_disk", None)
    rows[-1]["path"] = "files/missing_on_disk.srt"
    add("too_big", None, status="too_large", error="over the size cap")
    pq.write_table(pa.Table.from_pylist(rows), raw / "manifest.parquet")
    return raw


@pytest.mark.parametrize("workers", [1, 2])
def test_stage_end_to_end(tmp_path: Path, workers: int) -> None:
    raw = _manifest(tmp_path)
    out, reports = tmp_path / "clean" / "subtitles.parquet", tmp_path / "reports"
    cfg = load_config(compose([
        f"clean_subs.input_dir={raw}", f"clean_subs.output={out}", f"clean_subs.report_dir={reports}",
        f"clean_subs.workers={workers}", "tracking.enabled=false",
    ]))
    run = StageRun("clean_subs", cfg, tracking_active=False)
    clean_subs(cfg, run)

    table = pq.read_table(out)
    assert table.column_names == ["file_id", "language", "line_index", "start_ms", "end_ms", "scene",
                                  "text", "source", "title", "imdb_id"]
    kept = set(table.column("file_id").to_pylist())
    assert kept == {"en_lighthouse_reupload__cp1252", "en_magic_show__utf-16-le_allcaps",
                    "ru_dacha__windows-1251", "ru_poezd__utf-8_mixed-eol"}
    assert set(table.column("language").to_pylist()) == {"ru", "en"}
    texts = table.column("text").to_pylist()
    assert "Ключ под ведром, как всегда?" in texts
    assert not [t for t in texts if "www." in t or "-->" in t or "<" in t]

    report = json.loads((reports / "report.json").read_text(encoding="utf-8"))
    files = {f["file_id"]: f for f in report["files"]}
    assert len(files) == 11  # every manifest row is in the report
    assert files["en_lighthouse__utf-8-bom_crlf"]["reason"] == "duplicate:near"
    assert files["en_lighthouse__utf-8-bom_crlf"]["duplicate_of"] == "en_lighthouse_reupload__cp1252"
    assert files["uk_ranok__utf-8"]["reason"] == "language:uk"
    assert files["ads_only"]["reason"] == "empty"
    assert files["binary"]["reason"] == "unreadable" and "binary" in files["binary"]["error"]
    assert files["letter"]["reason"] == "unreadable" and "timing" in files["letter"]["error"]
    assert files["missing_on_disk"]["reason"] == "unreadable"
    assert files["too_big"]["reason"] == "upstream:too_large"
    assert report["totals"]["lines_out"] == table.num_rows
    assert report["rules"]["opensubtitles_ad"] >= 4 and report["rules"]["translator_credit"] >= 3
    assert "## Rules" in (reports / "report.md").read_text(encoding="utf-8")
    assert run.summary.dropped["language:uk"] == 1
    assert run.summary.wrote["lines"] == table.num_rows


def test_stage_reports_missing_manifest(tmp_path: Path) -> None:
    cfg = load_config(compose([f"clean_subs.input_dir={tmp_path}", "tracking.enabled=false"]))
    with pytest.raises(InputFileError, match="manifest.parquet: not found; the subtitle manifest"):
        clean_subs(cfg, StageRun("clean_subs", cfg, tracking_active=False))


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "src.data.subtitles", "clean", *args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def test_probe_prints_lines_and_summaries(tmp_path: Path) -> None:
    crooked = tmp_path / "crooked.srt"
    crooked.write_bytes(b"1\r\n00: 00: 49,412 -> 00: 00: 52,404\r\n<i>JERRY: Hello,</i>\r\n\r\n"
                        b"2\r00:00:52,600 --> 00:00:54\rnewman.\r\r")
    done = _probe(str(SAMPLE / "ru_dacha__windows-1251.srt"), str(crooked))
    assert done.returncode == 0, done.stderr
    assert "Ключ под ведром, как всегда?" in done.stdout.splitlines()
    assert "Hello, newman." in done.stdout.splitlines()
    summaries = [line for line in done.stderr.splitlines() if line.startswith(str(tmp_path)) or "dacha" in line]
    assert len(summaries) == 2 and "encoding=cp1251" in summaries[0]


def test_probe_fails_only_on_unreadable_input(tmp_path: Path) -> None:
    binary = tmp_path / "binary.srt"
    binary.write_bytes(bytes(range(0, 32)) * 40)
    done = _probe(str(SAMPLE / "uk_ranok__utf-8.srt"), str(tmp_path / "nope.srt"), str(binary))
    assert done.returncode == 1
    assert "Доброго ранку, пані Олено." in done.stdout  # the readable file was still printed
    assert done.stderr.count("UNREADABLE") == 2


def test_benchmark_runs_on_the_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(SAMPLE, tmp_path / "subs", ignore=shutil.ignore_patterns("archives"))
    assert bench_main(["--root", str(tmp_path / "subs"), "--workers", "1", "--repeat", "1"]) == 0
    assert "MB/s" in capsys.readouterr().out


def test_a_crash_on_one_file_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import src.data.subtitles.stage as stage_module

    real = stage_module.clean_subtitle_bytes

    def flaky(data: bytes, name: str, *args: object) -> object:
        if name.startswith("ru_poezd"):
            raise RuntimeError("boom")
        return real(data, name, *args)

    monkeypatch.setattr(stage_module, "clean_subtitle_bytes", flaky)
    raw = _manifest(tmp_path)
    reports = tmp_path / "reports"
    cfg = load_config(compose([
        f"clean_subs.input_dir={raw}", f"clean_subs.output={tmp_path / 'out.parquet'}",
        f"clean_subs.report_dir={reports}", "clean_subs.workers=1", "tracking.enabled=false",
    ]))
    clean_subs(cfg, StageRun("clean_subs", cfg, tracking_active=False))
    files = {f["file_id"]: f for f in json.loads((reports / "report.json").read_text())["files"]}
    assert files["ru_poezd__utf-8_mixed-eol"]["reason"] == "error"
    assert "RuntimeError: boom" in files["ru_poezd__utf-8_mixed-eol"]["error"]
    assert files["ru_dacha__windows-1251"]["status"] == "kept"
