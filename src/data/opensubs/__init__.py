"""OpenSubtitles ingestion: raw SRT bytes from archives on disk or the REST API, with a manifest.

- `archives`: safe walking of directories and (nested) zip / tar / gz archives.
- `api`: the OpenSubtitles.com REST v1 client (search, download, rate-limit and quota answers).
- `api_source`: search + resumable download through a cache that survives DVC reruns.
- `store`: the output folder (files/<file_id>.srt, byte dedup) and manifest.parquet.
- `scrape`: the stage function `scrape_opensubs(cfg, run)`.
"""
