"""The one-page probe `python -m src.data.librus clean PATH_OR_URL`, on a file and on a loopback URL."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from src.data.librus.__main__ import main

PAGE = """<html><head><title>Иван Петров. Сказка</title></head><body><pre>
<ul><a name=0></a><h2>Иван Петров. Сказка</h2></ul>
     ---------------------------------------------------------------
     OCR: Кто-то Где-то
     ---------------------------------------------------------------
     Жил-был старик у самого синего моря. Каждый день он ходил к воде и
смотрел, как бегут волны, и думал о своем.
     - Здравствуй, море, - говорил он.
<pre><hr noshade><small>Популярность: <b>7</b>, Last-modified: Tue, 03 Jul 2001 20:17:29 GMT
</small></body></html>
""".encode("koi8-r")


def test_probe_prints_the_cleaned_text_of_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "skazka.txt"
    path.write_bytes(PAGE)
    assert main(["clean", str(path)]) == 0
    out = capsys.readouterr()
    # Too few lines to judge the wrap width: a page this short is not reflowed (reflow.min_lines).
    assert out.out.startswith("Жил-был старик у самого синего моря. Каждый день он ходил к воде и\n")
    assert "— Здравствуй, море, — говорил он." in out.out
    assert "Популярность" not in out.out and "credits: 1 matches" in out.err


def test_probe_fetches_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=koi8-r")
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert main(["clean", f"http://127.0.0.1:{server.server_port}/LITRA/X/skazka.txt"]) == 0
    finally:
        server.shutdown()
    assert "Жил-был старик" in capsys.readouterr().out


def test_probe_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clean", str(tmp_path / "nope.txt")]) == 1
    assert "nope.txt" in capsys.readouterr().err
