"""Build the embedded sample archives in data/sample/subtitles/archives/ (the project's own text).

`python -m src.data.opensubs.sample_archives [OUT_DIR]` writes them; the output is byte-stable
(fixed timestamps and owners), so rebuilding shows no diff unless the text below changes.
The layout mimics real downloads: an OpenSubtitles-style zip holding one zip per subtitle id,
a .tar.gz of a season folder and a lone .srt.gz.
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
import zipfile
from pathlib import Path

from src.paths import PROJECT_ROOT

DEFAULT_OUT = PROJECT_ROOT / "data" / "sample" / "subtitles" / "archives"
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)

FERRY_EN = """\
1
00:00:01,200 --> 00:00:03,400
The ferry is late again tonight.

2
00:00:03,900 --> 00:00:06,100
Then we wait on the pier a little longer,

3
00:00:06,150 --> 00:00:08,000
and count the gulls until it comes.

4
00:00:09,500 --> 00:00:11,800
- Do you ever get tired of waiting?
- Only in winter.
"""

FERRY_RU = """\
1
00:00:01,200 --> 00:00:03,400
Паром сегодня опять опаздывает.

2
00:00:03,900 --> 00:00:06,100
Значит, подождём на причале ещё немного

3
00:00:06,150 --> 00:00:08,000
и посчитаем чаек, пока он не придёт.

4
00:00:09,500 --> 00:00:11,800
- Тебе не надоело ждать?
- Только зимой.
"""

NIGHT_SHIFT_EN = """\
1
00:00:02,000 --> 00:00:04,500
<i>Ward seven, this is the front desk.</i>

2
00:00:05,000 --> 00:00:07,250
The patient in bed four is asking for tea.

3
00:00:07,900 --> 00:00:09,600
At three in the morning?

4
00:00:10,100 --> 00:00:12,000
He says he cannot sleep without it.
"""

KITCHEN_TALK_EN = """\
1
00:00:00,500 --> 00:00:02,300
Who left the kettle on?

2
00:00:02,800 --> 00:00:04,900
Not me. I only drink cold water.

3
00:00:05,400 --> 00:00:07,700
[kettle whistling]
"""

NFO_TEXT = "Sample download info file: not a subtitle, listed in the manifest as not_srt.\n"


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _targz_bytes(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def sample_archives() -> dict[str, bytes]:
    """File name -> archive bytes."""
    crlf = NIGHT_SHIFT_EN.replace("\n", "\r\n").encode("utf-8")
    return {
        "opensubs_download.zip": _zip_bytes({
            "9100001.zip": _zip_bytes({
                "Tiny.Ferry.2024.eng.srt": FERRY_EN.encode("utf-8"),
                "download_info.nfo": NFO_TEXT.encode("ascii"),
            }),
            # Real Russian subtitles mostly arrive in windows-1251: keep the sample honest.
            "9100002.zip": _zip_bytes({"Tiny.Ferry.2024.rus.srt": FERRY_RU.encode("cp1251")}),
        }),
        "night_shift_s01.tar.gz": _targz_bytes({"Night.Shift.S01/Night.Shift.S01E01.en.srt": crlf}),
        "Kitchen.Talk.2023.en.srt.gz": gzip.compress(KITCHEN_TALK_EN.encode("utf-8"), mtime=0),
    }


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    for name, data in sample_archives().items():
        (out / name).write_bytes(data)
        print(f"wrote {out / name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
