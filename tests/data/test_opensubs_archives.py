"""Safe walking of subtitle archives: nesting, formats, hostile and broken inputs."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from omegaconf import OmegaConf

from src.config.sections.scrape_opensubs import ScrapeOpensubsConfig
from src.data.opensubs import sample_archives
from src.data.opensubs.archives import ArchiveWalker, Limits, archive_kind, unsafe_member_reason
from src.data.opensubs.store import FileStore, language_hint

SRT_A = b"1\n00:00:01,000 --> 00:00:02,000\nFirst film.\n"
SRT_B = b"1\n00:00:01,000 --> 00:00:02,000\nSecond film.\n"


def zip_bytes(members: dict[str, bytes], stored: bool = False,
              symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return buf.getvalue()


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], compress: str = "gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compress}") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def walk(tmp_path: Path, inputs: dict[str, bytes], **limits: Any) -> tuple[pl.DataFrame, Path]:
    """Write `inputs` into a folder, walk it, return (manifest, output dir)."""
    src = tmp_path / "in"
    src.mkdir(parents=True, exist_ok=True)
    for name, data in inputs.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    cfg = OmegaConf.merge(OmegaConf.structured(ScrapeOpensubsConfig), {"archives": {"limits": limits}})
    out = tmp_path / "out"
    store = FileStore(out, dedup_bytes=True)
    walker = ArchiveWalker(store, Limits.from_config(cfg.archives.limits), [".srt"],
                           dict(cfg.language_hints))
    walker.walk_input(str(src))
    walker.walk_input(str(tmp_path / "does-not-exist"))
    return pl.read_parquet(store.write_manifest()), out


def status_of(manifest: pl.DataFrame) -> dict[str, str]:
    return dict(zip(manifest["member"].to_list(), manifest["status"].to_list(), strict=True))


def stored(out: Path, manifest: pl.DataFrame, member: str) -> bytes:
    row = manifest.filter(pl.col("member") == member).row(0, named=True)
    return (out / row["stored_path"]).read_bytes()


def test_nested_zip_as_opensubtitles_downloads_come(tmp_path: Path) -> None:
    big = zip_bytes({
        "123.zip": zip_bytes({"Film.2001.eng.srt": SRT_A, "info.nfo": b"x"}),
        "124.zip": zip_bytes({"Film.2001.rus.srt": SRT_B}),
    })
    manifest, out = walk(tmp_path, {"big.zip": big})
    statuses = status_of(manifest)
    assert statuses["big.zip"] == "archive" and statuses["big.zip!123.zip"] == "archive"
    assert statuses["big.zip!123.zip!Film.2001.eng.srt"] == "ok"
    assert statuses["big.zip!123.zip!info.nfo"] == "not_srt"  # recorded, not silently skipped
    assert stored(out, manifest, "big.zip!124.zip!Film.2001.rus.srt") == SRT_B  # raw bytes
    langs = dict(zip(manifest["member"], manifest["language"], strict=True))
    assert langs["big.zip!124.zip!Film.2001.rus.srt"] == "ru"
    assert statuses[""] == "missing"
    # Ids are stable: the same input gives the same ids on a second walk.
    again, _ = walk(tmp_path, {"big.zip": big})
    assert again["file_id"].to_list() == manifest["file_id"].to_list()
    assert manifest["file_id"].n_unique() == manifest.height


def test_tar_gz_tgz_bz2_and_gz(tmp_path: Path) -> None:
    manifest, out = walk(tmp_path, {
        "season.tar.gz": tar_bytes([("s01/e01.en.srt", SRT_A), ("s01/notes.txt", b"n")]),
        "more.tgz": tar_bytes([("e02.srt", SRT_B)]),
        "old.tar.bz2": tar_bytes([("e03.srt", SRT_A + b"\n")], compress="bz2"),
        "lone.srt.gz": gzip.compress(SRT_B + b"\n"),
        "nested.zip": zip_bytes({"inner.tar.gz": tar_bytes([("deep.srt", b"deep")]),
                                 "x.srt.gz": gzip.compress(b"gz in zip")}),
        "data.xml.gz": gzip.compress(b"<xml/>"),
    })
    statuses = status_of(manifest)
    assert statuses["season.tar.gz!s01/e01.en.srt"] == "ok"
    assert statuses["season.tar.gz!s01/notes.txt"] == "not_srt"
    assert stored(out, manifest, "more.tgz!e02.srt") == SRT_B
    assert stored(out, manifest, "old.tar.bz2!e03.srt") == SRT_A + b"\n"
    assert stored(out, manifest, "lone.srt.gz!lone.srt") == SRT_B + b"\n"
    assert stored(out, manifest, "nested.zip!inner.tar.gz!deep.srt") == b"deep"
    assert stored(out, manifest, "nested.zip!x.srt.gz!x.srt") == b"gz in zip"
    assert statuses["data.xml.gz!data.xml"] == "not_srt"


def test_duplicate_bytes_stored_once(tmp_path: Path) -> None:
    manifest, out = walk(tmp_path, {"a.srt": SRT_A, "b.zip": zip_bytes({"copy.srt": SRT_A})})
    first = manifest.filter(pl.col("member") == "a.srt").row(0, named=True)
    dup = manifest.filter(pl.col("member") == "b.zip!copy.srt").row(0, named=True)
    assert first["status"] == "ok" and dup["status"] == "duplicate_bytes"
    assert dup["duplicate_of"] == first["file_id"] and dup["sha256"] == first["sha256"]
    assert dup["stored_path"] is None
    assert len(list((out / "files").iterdir())) == 1


def test_zip_slip_is_refused_and_recorded(tmp_path: Path) -> None:
    evil_zip = zip_bytes({"../../evil.srt": SRT_A, "/etc/evil.srt": SRT_A, "C:\\evil.srt": SRT_A,
                          "fine.srt": SRT_B})
    evil_tar = tar_bytes([("../evil2.srt", SRT_A), ("ok/../../evil3.srt", SRT_A)])
    manifest, out = walk(tmp_path, {"evil.zip": evil_zip, "evil.tar.gz": evil_tar})
    statuses = status_of(manifest)
    for member in ("evil.zip!../../evil.srt", "evil.zip!/etc/evil.srt", "evil.zip!C:\\evil.srt",
                   "evil.tar.gz!../evil2.srt", "evil.tar.gz!ok/../../evil3.srt"):
        assert statuses[member] == "traversal", member
    assert statuses["evil.zip!fine.srt"] == "ok"
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*") if p.suffix == ".srt")
    assert len(list((out / "files").iterdir())) == 1
    assert unsafe_member_reason("a/b.srt") is None


def test_bombs_are_refused(tmp_path: Path) -> None:
    zeros = b"\0" * (3 * 1024 * 1024)
    manifest, out = walk(tmp_path, {
        "bomb.zip": zip_bytes({"bomb.srt": zeros, "fine.srt": SRT_A}),
        "bomb.srt.gz": gzip.compress(zeros),
        "bomb.tar.gz": tar_bytes([("a.srt", zeros), ("b.srt", SRT_B)]),
    }, max_compression_ratio=50.0, ratio_min_bytes=1024 * 1024)
    statuses = status_of(manifest)
    assert statuses["bomb.zip!bomb.srt"] == "bomb"
    assert statuses["bomb.zip!fine.srt"] == "ok"
    assert statuses["bomb.srt.gz!bomb.srt"] == "bomb"  # caught while inflating the stream
    assert statuses["bomb.tar.gz"] == "bomb"  # judged from the headers' declared sizes
    assert "bomb.tar.gz!b.srt" not in statuses
    assert sum(p.stat().st_size for p in (out / "files").iterdir()) == len(SRT_A)


def test_size_count_and_depth_caps(tmp_path: Path) -> None:
    manifest, _ = walk(tmp_path, {
        "big.srt": b"x" * 2000,
        "many.zip": zip_bytes({f"{i}.srt": SRT_A + bytes([i]) for i in range(5)}),
        "deep.zip": zip_bytes({"a.zip": zip_bytes({"b.zip": zip_bytes({"c.srt": SRT_B})})}),
    }, max_member_bytes=1000, max_archive_members=3, max_depth=2)
    statuses = status_of(manifest)
    assert statuses["big.srt"] == "too_large"
    assert statuses["many.zip"] == "limit_member_count"
    assert [m for m in statuses if m.startswith("many.zip!")] == ["many.zip!0.srt", "many.zip!1.srt",
                                                                  "many.zip!2.srt"]
    assert statuses["deep.zip!a.zip!b.zip"] == "too_deep"
    manifest, _ = walk(tmp_path / "bytes", {"two.zip": zip_bytes({"a.srt": SRT_A, "b.srt": SRT_B})},
                       max_archive_bytes=len(SRT_A) + 1)
    assert status_of(manifest)["two.zip"] == "limit_total_bytes"


def test_links_and_devices_in_tar_are_ignored(tmp_path: Path) -> None:
    link = tarfile.TarInfo("link.srt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("hard.srt")
    hard.type, hard.linkname = tarfile.LNKTYPE, "real.srt"
    dev = tarfile.TarInfo("dev.srt")
    dev.type = tarfile.CHRTYPE
    fifo = tarfile.TarInfo("fifo.srt")
    fifo.type = tarfile.FIFOTYPE
    tgz = tar_bytes([("real.srt", SRT_A), link, hard, dev, fifo])
    zipped = zip_bytes({"real.srt": SRT_B}, symlinks={"zlink.srt": "/etc/passwd"})
    manifest, out = walk(tmp_path, {"links.tar.gz": tgz, "links.zip": zipped})
    statuses = status_of(manifest)
    assert statuses["links.tar.gz!link.srt"] == "symlink"
    assert statuses["links.tar.gz!hard.srt"] == "hardlink"
    assert statuses["links.tar.gz!dev.srt"] == "special"
    assert statuses["links.tar.gz!fifo.srt"] == "special"
    assert statuses["links.zip!zlink.srt"] == "symlink"
    assert statuses["links.tar.gz!real.srt"] == "ok" and statuses["links.zip!real.srt"] == "ok"
    assert len(list((out / "files").iterdir())) == 2


def test_directory_symlinks_are_recorded_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "x.srt").write_bytes(SRT_A)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "loop").symlink_to(target, target_is_directory=True)
    manifest, _ = walk(tmp_path, {"y.srt": SRT_B})
    assert status_of(manifest)["loop"] == "symlink"


def test_corrupt_archives_are_recorded_and_the_walk_goes_on(tmp_path: Path) -> None:
    good_tar = tar_bytes([("a.srt", SRT_A), ("b.srt", b"B" * 4000)], compress="")
    crc = bytearray(zip_bytes({"c.srt": b"Hello, CRC!"}, stored=True))
    crc[crc.index(b"Hello")] ^= 0xFF
    manifest, out = walk(tmp_path, {
        "garbage.zip": b"this is not a zip at all",
        "truncated.tar": good_tar[:512 * 3 + 1000],  # inside b.srt's data
        "broken.tgz": b"\x1f\x8b\x08\x00garbage",
        "bad.srt.gz": b"\x1f\x8b\x08\x00nope",
        "crc.zip": bytes(crc),
        "fine.srt": SRT_B,
    })
    statuses = status_of(manifest)
    assert statuses["garbage.zip"] == "corrupt_archive"
    assert statuses["broken.tgz"] == "corrupt_archive"
    assert statuses["truncated.tar"] == "corrupt_archive"
    assert statuses["truncated.tar!a.srt"] == "ok"  # what was read before the damage is kept
    assert statuses["bad.srt.gz!bad.srt"] == "corrupt_member"
    assert statuses["crc.zip!c.srt"] == "corrupt_member"
    assert statuses["fine.srt"] == "ok"
    errors = manifest.filter(pl.col("status").str.starts_with("corrupt"))["error"].to_list()
    assert all(errors)


def test_helpers() -> None:
    assert archive_kind("A.ZIP") == "zip" and archive_kind("x.tar.xz") == "tar"
    assert archive_kind("x.srt.gz") == "gz" and archive_kind("x.srt") is None
    hints = {"en": "en", "rus": "ru"}
    assert language_hint("ru/x/Film.2001.rus.srt", hints) == "ru"
    assert language_hint("big.zip!en/Film.srt", hints) == "en"
    assert language_hint("Film.srt", hints) is None


def test_committed_sample_archives_hold_the_builders_text(tmp_path: Path) -> None:
    archives = sample_archives.DEFAULT_OUT
    if not archives.is_dir():
        pytest.skip(f"{archives} absent")
    manifest, out = walk(tmp_path, {p.name: p.read_bytes() for p in archives.iterdir()})
    expected = {
        "opensubs_download.zip!9100001.zip!Tiny.Ferry.2024.eng.srt": sample_archives.FERRY_EN.encode(),
        "opensubs_download.zip!9100002.zip!Tiny.Ferry.2024.rus.srt":
            sample_archives.FERRY_RU.encode("cp1251"),
        "Kitchen.Talk.2023.en.srt.gz!Kitchen.Talk.2023.en.srt": sample_archives.KITCHEN_TALK_EN.encode(),
        "night_shift_s01.tar.gz!Night.Shift.S01/Night.Shift.S01E01.en.srt":
            sample_archives.NIGHT_SHIFT_EN.replace("\n", "\r\n").encode(),
    }
    for member, data in expected.items():
        assert stored(out, manifest, member) == data, member
