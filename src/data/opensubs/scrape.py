"""Stage `scrape_opensubs`: raw SRT bytes from archives and/or the OpenSubtitles API.

Output (`scrape_opensubs.output_dir`, default data/raw/opensubs/):
- `files/<file_id>.srt`: the bytes exactly as found (one copy per distinct content);
- `manifest.parquet`: one row per file, archive member, search failure or unfetched API file, with
  its status (see `store.Status`). `clean_subs` reads the rows with status `ok`.
The output is built in a sibling folder and swapped in at the end, so a failed run leaves the
previous output intact.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter

from omegaconf import DictConfig
from tqdm import tqdm

from src.atomic_io import replace_directory
from src.data.opensubs.api_source import scrape_api
from src.data.opensubs.archives import ArchiveWalker, Limits
from src.data.opensubs.store import FileStore, ManifestRow, Status
from src.paths import resolve
from src.stage import StageRun

SOURCES = ("archives", "api")


def summarize(rows: list[ManifestRow], run: StageRun) -> None:
    # Archive rows count as read; every other non-ok status (not_srt, bomb, quota, ...) as dropped.
    statuses = Counter(row.status for row in rows)
    run.summary.add("read", "archives", statuses.pop(Status.ARCHIVE, 0))
    run.summary.add("read", "entries", sum(statuses.values()))
    run.summary.add("read", "srt_bytes", sum(r.bytes or 0 for r in rows
                                             if r.status in (Status.OK, Status.DUPLICATE)))
    ok = [r for r in rows if r.status == Status.OK]
    run.summary.add("wrote", "files", len(ok))
    run.summary.add("wrote", "bytes", sum(r.bytes or 0 for r in ok))
    run.summary.add("wrote", "manifest_rows", len(rows))
    statuses.pop(Status.OK, None)
    for status, n in sorted(statuses.items()):
        run.summary.add("dropped", status, n)


def scrape_opensubs(cfg: DictConfig, run: StageRun) -> None:
    section = cfg.scrape_opensubs
    unknown = [s for s in section.sources if s not in SOURCES]
    if unknown or not section.sources:
        raise ValueError(f"scrape_opensubs.sources: {list(section.sources)} must be a non-empty "
                         f"list of {SOURCES}; unknown {unknown}")
    out = resolve(section.output_dir)
    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    store = FileStore(staging, section.dedup_bytes)
    try:
        with tqdm(desc="scrape_opensubs", unit="file", disable=None, file=sys.stderr) as bar:
            def on_row(row: ManifestRow) -> None:
                bar.update(1)

            if "archives" in section.sources:
                walker = ArchiveWalker(store, Limits.from_config(section.archives.limits),
                                       list(section.srt_suffixes), dict(section.language_hints),
                                       section.archives.follow_file_symlinks, on_row)
                for path in section.archives.inputs:
                    walker.walk_input(path)
            if "api" in section.sources:
                for note in scrape_api(section, store, on_row=on_row):
                    run.summary.notes.append(note)
        store.write_manifest()
        replace_directory(staging, out)  # never a half-written output
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summarize(store.rows, run)
    run.log_artifact(out / "manifest.parquet")
