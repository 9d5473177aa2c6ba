"""The report card: both files from a full results dict, escaping, self-containment, absent parts,
byte-identical re-renders, a structural parse of the HTML and (when a browser exists) a headless
Chromium render of it."""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from src.errors import InputError
from src.eval.report_card import SECTION_TITLES, main, render_report_card
from tests.eval.fixtures_results import full_results, results_without_kto

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input"}


def md_sections(md: str) -> dict[str, str]:
    """The text under each '## ' heading of report.md."""
    parts = re.split(r"^## (.+)$", md, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


class Structure(HTMLParser):
    """Section headings in order, image sources, every src/href, and whether tags balance."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.h2: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts = 0
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "script":
            self.scripts += 1
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[str, str, Path]:
    out = tmp_path_factory.mktemp("report")
    md_path, html_path = render_report_card(full_results(), out)
    assert (md_path, html_path) == (out / "report.md", out / "report.html")
    return md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8"), html_path


def test_full_results_fill_every_section_in_both_files(rendered):
    md, page, _ = rendered
    sections = md_sections(md)
    assert list(sections) == list(SECTION_TITLES)
    for title in SECTION_TITLES:
        assert f"<h2>{html.escape(title)}</h2>" in page
    # The fixture is complete: nothing may render as absent or malformed.
    assert "absent:" not in md and "unexpected shape" not in md
    assert "absent:" not in page
    assert "- markov: data/models/markov/model.json not found" in sections["Absent parts"]


def test_summary_table_marks_the_best_value_of_each_row(rendered):
    summary = md_sections(rendered[0])["Summary"]
    rows = {line.split("|")[1].strip(): line for line in summary.splitlines() if line.startswith("| ")}
    assert rows["metric"].replace(" ", "") == "|metric|pretrain|sft|kto|reranker|"
    assert "| **1.812** | 1.879 | 1.883 |" in rows["val bpb · literature"]  # lower is better
    assert "| 0.275 | 0.075 | **0.050** |" in rows["loop rate"]
    assert "| 0.050 | 0.825 | **0.875** |" in rows["end-of-turn rate"]  # higher is better
    assert "**" not in rows["mean length (tokens)"]  # no better direction
    assert "**" not in rows["reranker ROC AUC"]  # one value: nothing to compare
    assert "| **0.000** | 0.025 | **0.000** |" in rows["markdown-wall rate"]  # ties both marked
    for label in ("distinct-2", "canned rate", "context probes ru (log-prob acc.)",
                  "reranker MRR@k", "time to first token (ms)", "tokens/s"):
        assert label in rows


def test_numbers_are_formatted_for_reading(rendered):
    md = rendered[0]
    assert "| pretrain | yes | 538,240 | 2,000 | 2,048,000 | 6 min 53 s | 4,964 | 4.706 |" in md
    assert "wall-clock figures" not in md  # the fixture has them
    assert "1 h 02 min" in md and "| fallback\\_rate | 3.10e-04 |" in md
    assert "| clean\\_subs | files 17 · bytes 17,445 |" in md  # a float count shows as a count


def test_figures_producers_add_show_without_a_change_here(rendered):
    sections = md_sections(rendered[0])
    reranker, latency = sections["Reranker"], sections["Latency"]
    assert "| metric | reranked | unranked | plain |" in reranker
    assert "| mean reranker score | **0.712** | 0.498 | 0.503 |" in reranker
    assert "| picked\\_from · markov | 1.000 | 1.000 | — |" in reranker
    assert "plain\\_source: lm" in reranker and "dropped · no\\_candidate: 1" in reranker
    assert "- 1 prompt gave no candidate" in reranker
    assert "| n\\_by\\_kind · two\\_ahead | 1,000 |" in reranker
    assert "| reranked turn (ms) | **1,843** | 2,112 |" in latency
    assert "| reranked\\_phases\\_ms · score | 598.1 | 790.7 |" in latency
    assert "| device | cpu | cpu |" in latency and "{}" not in latency  # empty dict: no row
    assert "| chance level (log-prob) | 0.500 | 0.500 |" in sections["Context retention"]
    assert "| probes cropped to fit the context | 2 | 2 |" in sections["Context retention"]


def test_html_is_self_contained_with_png_images(rendered):
    page = rendered[1]
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    parser = Structure()
    parser.feed(page)
    assert len(parser.images) == 5  # loss curves, reply lengths, KTO, reranker scores, latency
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_SIGNATURE)
    assert all(link.startswith(("#", "data:image/png;base64,")) for link in parser.links)


def test_html_parses_with_sections_in_order_and_every_image_decodes(rendered):
    from PIL import Image  # pillow comes with matplotlib

    parser = Structure()
    parser.feed(rendered[1])
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert parser.h2 == list(SECTION_TITLES)
    assert parser.scripts == 0
    for src in parser.images:
        with Image.open(__import__("io").BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.load()
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 150


def test_user_text_is_escaped_in_both_files(rendered):
    md, page, _ = rendered
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Write &lt;b&gt;bold&lt;/b&gt; &amp;amp;" not in page  # escaped once, not twice
    assert "Write &lt;b&gt;bold&lt;/b&gt; &amp; tell me" in page
    assert "<script" not in md and "&lt;script&gt;" in md
    assert "the \\| table \\| of \\* stars \\*" in md  # a pipe cannot split a Markdown table row
    assert "Привет! Хорошо, гулял по набережной." in md and "Привет! Хорошо, гулял по набережной." in page
    assert "user: Я вернулся из Грузии." in page  # a conversation prompt shows its turns


def test_a_missing_model_is_a_column_marked_absent_and_its_sections_say_why(tmp_path):
    md_path, html_path = render_report_card(results_without_kto(), tmp_path)
    sections = md_sections(md_path.read_text(encoding="utf-8"))
    assert "| metric | pretrain | sft | kto (absent) | reranker |" in sections["Summary"]
    assert "absent: kto: data/models/kto/best.ckpt not found (stage switched off?)" in sections["KTO"]
    assert "| kto | no: data/models/kto/best.ckpt not found" in sections["Models"]
    assert "kto: data/models/kto/best.ckpt not found" in sections["Absent parts"]
    assert "| metric | pretrain | sft |" in sections["Generation"]
    assert "absent:" in html_path.read_text(encoding="utf-8")


def test_absent_lines_about_a_part_show_in_its_section(tmp_path):
    results = full_results()
    results["lm"]["sft"].pop("subtitles")
    results["absent"] = ["lm.subtitles: no held-out document", "latency: switched off", "lmx: other"]
    results.pop("latency")
    results["series"].pop("latency")
    md_path, _ = render_report_card(results, tmp_path)
    sections = md_sections(md_path.read_text(encoding="utf-8"))
    assert "absent: lm.subtitles: no held-out document" in sections["Language modelling"]
    assert "lmx" not in sections["Language modelling"]
    assert sections["Latency"].count("absent: latency: switched off") == 1  # once, not twice
    assert "lm.subtitles: no held-out document" in sections["Absent parts"]


def test_results_with_only_models_render_absent_everywhere(tmp_path):
    results = {"models": {"sft": {"present": False, "path": "x", "reason": "not trained"}}}
    md_path, html_path = render_report_card(results, tmp_path)
    sections = md_sections(md_path.read_text(encoding="utf-8"))
    assert list(sections) == list(SECTION_TITLES)
    for title in SECTION_TITLES:
        if title not in ("Models", "Absent parts"):
            assert "absent: " in sections[title], title
    assert "absent: results.json has no 'lm' data" in sections["Language modelling"]
    assert "| sft | no: not trained |" in sections["Models"]
    assert "Training time and throughput are wall-clock figures" in sections["Models"]
    assert "nothing listed as absent" in sections["Absent parts"]
    page = html_path.read_text(encoding="utf-8")
    assert page.count('<p class="absent">') >= len(SECTION_TITLES) - 2


def test_an_empty_dict_renders_and_a_non_object_is_an_input_error(tmp_path):
    md_path, _ = render_report_card({}, tmp_path)
    assert "absent: no metric of any model" in md_path.read_text(encoding="utf-8")
    with pytest.raises(InputError, match="must be a JSON object"):
        render_report_card([1, 2], tmp_path)  # type: ignore[arg-type]


def test_malformed_parts_render_without_an_exception(tmp_path):
    results = full_results()
    results["lm"]["sft"] = "not a mapping"
    results["generation"] = [1, 2, 3]
    results["probes"]["sft"]["ru"] = 5
    results["samples"] = [{"id": 1, "replies": {"sft": None, "kto": ["a list"]}}, "junk"]
    results["series"]["kto"] = {"kl": [[0, "a"], None, [1, float("nan")]], "drift": "x"}
    results["series"]["loss_curves"]["sft"] = {"train": [[0, float("inf")]]}
    results["reranker"]["auc_by_kind"] = {"swap": "n/a"}
    results["latency"]["sft"] = {"ttft_ms": None, "tokens_per_s": "fast"}
    results["pipeline"]["data"]["clean_subs"] = {"read": 7, "dropped": ["oops"]}
    results["absent"] = [None, 3, "lm: half missing"]
    md_path, html_path = render_report_card(results, tmp_path)
    sections = md_sections(md_path.read_text(encoding="utf-8"))
    assert list(sections) == list(SECTION_TITLES)
    assert "absent: results.json's 'generation' is a list, not an object" in sections["Generation"]
    assert "absent: the KTO series hold no finite (step, value) point" in sections["KTO"]
    assert "| swap | n/a |" in sections["Reranker"]
    assert "### probes in ru" in sections["Context retention"]  # from kto, sft's "ru" is broken
    assert "absent: 1 of 2 sample rows have no replies" in sections["Samples"]
    assert "#### 1 (?)" in sections["Samples"]
    parser = Structure()
    parser.feed(html_path.read_text(encoding="utf-8"))
    assert parser.errors == [] and parser.h2 == list(SECTION_TITLES)


def test_a_section_that_fails_says_so_and_the_rest_still_render(tmp_path, monkeypatch, caplog):
    from src.eval import report_card

    def broken(results, models):
        raise TypeError("unsupported operand")

    monkeypatch.setitem(report_card.BUILDERS, "kto", broken)
    md_path, _ = render_report_card(full_results(), tmp_path)
    sections = md_sections(md_path.read_text(encoding="utf-8"))
    assert sections["KTO"].strip() == ("absent: the 'kto' data has an unexpected shape "
                                       "(TypeError: unsupported operand)")
    assert "![" not in sections["Reranker"] and "ROC AUC" in sections["Reranker"]
    assert "section KTO" in caplog.text


def test_rendering_twice_gives_identical_bytes_even_in_another_process(tmp_path):
    first_md, first_html = render_report_card(full_results(), tmp_path / "a")
    second_md, second_html = render_report_card(full_results(), tmp_path / "b")
    assert first_md.read_bytes() == second_md.read_bytes()
    assert first_html.read_bytes() == second_html.read_bytes()
    # The CLI in a fresh interpreter with another hash seed (set/dict-of-str order) must agree.
    results_path = tmp_path / "results.json"
    results_path.write_text(__import__("json").dumps(full_results(), ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "MPLCONFIGDIR": str(tmp_path / "mpl")}
    proc = subprocess.run([sys.executable, "-m", "src.eval.report_card", str(results_path),
                           str(tmp_path / "c")], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c" / "report.html").read_bytes() == first_html.read_bytes()
    assert (tmp_path / "c" / "report.md").read_bytes() == first_md.read_bytes()


def test_cli_names_a_missing_or_broken_results_file_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope.json"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: report_card: ") and "nope.json: not found" in err
    assert "\n" not in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"models": {', encoding="utf-8")
    assert main([str(broken), str(tmp_path / "out")]) == 1
    assert "broken.json: not valid JSON (line 1)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.html").exists()


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def test_report_opens_in_a_headless_browser(rendered, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip(f"no headless browser found (looked for {', '.join(BROWSERS)} on PATH)")
    url = rendered[2].resolve().as_uri()
    # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = Structure()
    parser.feed(dom.stdout)
    assert parser.h2 == list(SECTION_TITLES)
    assert len(parser.images) == 5 and parser.scripts == 0
    shot = tmp_path / "shot.png"
    done = subprocess.run(base + ["--hide-scrollbars", "--window-size=1280,2400",
                                  f"--screenshot={shot}", url], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes().startswith(PNG_SIGNATURE) and shot.stat().st_size > 20_000
