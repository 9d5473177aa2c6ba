"""lib.ru page parsing: the real pages in ../shared/data/librus_real and small fixtures of both formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.config.sections.clean_librus import CleanLibrusConfig, LibrusParseConfig
from src.config.sections.normalize import NormalizeConfig
from src.data.librus.decode import decode_bytes
from src.data.librus.document import Cleaner, clean_page
from src.data.librus.parse import AZ, INDEX, LOCAL, MOSHKOV, TEXT, ParseError, parse_page

PARSE = LibrusParseConfig()

MOSHKOV_PAGE = """<html><head><title>Иван Петров. Сказка</title></head><body><pre><a href=/>Lib.Ru</a>: <a href=/LITRA/>Классика</a>
<div align=right>Книгу можно купить в : <a href=http://shop>Shop</a> 31р.<form action=x><select name=format><OPTION VALUE="">Lib.ru html</select></form></div><pre>
<ul><a name=0></a><h2>Иван Петров. Сказка</h2></ul>

     ---------------------------------------------------------------
     OCR: Кто-то Где-то
     ---------------------------------------------------------------

     Жил-был старик у самого синего моря. Каждый день он ходил к воде и
смотрел, как бегут волны, и думал о своем.
     - Здравствуй, море, - говорил он.
<pre><hr noshade><small>Популярность: <b>7</b>, Last-modified: Tue, 03 Jul 2001 20:17:29 GMT
</small></body></html>
"""

AZ_PAGE = """<html><head><title>Lib.ru/Классика: Петров Иван Ильич. Сказка</title></head><body>
<form action="/cgi-bin/votecounter">Оценка: <select name=BALL><option>шедевр</option></select></form>
<!----------- Собственно произведение --------------->
<!--Section Begins-->
<h4><div align="center"><b>И. И. Петров</b></div></h4>
<h4><div align="center"><b>Сказка</b></div></h4>
<dd>&nbsp;&nbsp;&nbsp;Жил-был старик у моря.<sup><u>1</u></sup> Он любил воду.
<dd>&nbsp;&nbsp;&nbsp;-- Здравствуй, море, -- говорил он.
<dd>&nbsp;&nbsp;&nbsp;<b><u>1</u></b> Сноска о море.
<!--Section Ends-->
<li>Комментарии: 3
</body></html>
"""


def test_moshkov_fixture_drops_furniture() -> None:
    page = parse_page(MOSHKOV_PAGE, PARSE)
    assert (page.kind, page.format, page.author, page.title) == (TEXT, MOSHKOV, "Иван Петров", "Сказка")
    for furniture in ("Книгу можно купить", "Lib.ru html", "Популярность", "Last-modified", "Lib.Ru",
                      "Иван Петров. Сказка"):
        assert furniture not in page.text
    assert "Жил-был старик у самого синего моря." in page.text


def test_az_fixture_takes_only_the_work_section() -> None:
    page = parse_page(AZ_PAGE, PARSE)
    assert (page.kind, page.format, page.author, page.title) == (TEXT, AZ, "Петров Иван Ильич", "Сказка")
    assert "шедевр" not in page.text and "Комментарии" not in page.text
    assert "И. И. Петров" not in page.text
    assert "Жил-был старик у моря.[1] Он любил воду." in page.text
    assert "[1] Сноска о море." in page.text  # the footnote body, for the footnotes rule


def test_az_without_marker_is_a_parse_error() -> None:
    broken = AZ_PAGE.replace("<!----------- Собственно произведение --------------->", "")
    broken = broken.replace("<!--Section Begins-->", "")
    # No az markers left: it is read as a generic HTML page and still yields text.
    assert parse_page(broken, PARSE).format == MOSHKOV
    with pytest.raises(ParseError, match="empty work section"):
        parse_page(AZ_PAGE.split("<h4>")[0] + "<!--Section Ends-->", PARSE)


def test_plain_text_passes_through() -> None:
    page = parse_page("Просто текст.\nВторая строка.", PARSE)
    assert (page.kind, page.format, page.text) == (TEXT, LOCAL, "Просто текст.\nВторая строка.")
    with pytest.raises(ParseError, match="empty"):
        parse_page("  \n ", PARSE)


def test_editorial_angle_brackets_are_not_tags() -> None:
    page = parse_page("<html><body><pre>бес<с>мысленный и Андре<ич></pre></body></html>", PARSE)
    assert "бес<с>мысленный и Андре<ич>" in page.text


# --- the real pages -------------------------------------------------------------------------

def _real(shared_data: Path, name: str) -> Path:
    path = shared_data / "librus_real" / name
    if not path.exists():
        pytest.skip(f"{path} absent")
    return path


@pytest.mark.real_data
def test_real_koi8_home_page_is_an_index(shared_data: Path) -> None:
    data = _real(shared_data, "libru__homepage__koi8-r.html").read_bytes()
    text, encoding = decode_bytes(data)
    assert encoding == "koi8-r"
    assert "Библиотека Максима Мошкова" in text
    page = parse_page(text, PARSE)
    assert page.kind == INDEX and "links" in page.note
    doc = clean_page(text, Cleaner.build(CleanLibrusConfig(), NormalizeConfig()), "home")
    assert not doc.ok and doc.reason.startswith("not a work")


@pytest.mark.real_data
def test_real_pushkin_page_cp1251_and_utf8_agree(shared_data: Path) -> None:
    cleaner = Cleaner.build(CleanLibrusConfig(), NormalizeConfig())
    docs = []
    for name, expected in (("libru__LITRA_PUSHKIN_kapitan__2018__windows-1251.txt", "windows-1251"),
                           ("libru__LITRA_PUSHKIN_kapitan__2018__utf-8.txt", "utf-8")):
        text, encoding = decode_bytes(_real(shared_data, name).read_bytes())
        assert encoding == expected
        docs.append(clean_page(text, cleaner, name))
    cp1251, utf8 = docs
    assert cp1251.ok and cp1251.text == utf8.text
    assert (cp1251.author, cp1251.title) == ("Александр Сергеевич Пушкин", "Капитанская дочка")
    text = cp1251.text
    # Real sentences, reflowed into one paragraph per line.
    assert "Отец мой Андрей Петрович Гринев в молодости своей служил при графе Минихе," in text
    assert "Не приведи бог видеть русский бунт — бес<с>мысленный и беспощадный." in text
    assert "ГЛАВА I. СЕРЖАНТ ГВАРДИИ." in text.split("\n")
    # Furniture and apparatus gone.
    for gone in ("Книгу можно купить", "Biblion", "Популярность", "Last-modified", "OCR:",
                 "Origin:", "(сноска", "<a href", "Fine HTML", "-----"):
        assert gone not in text, gone
    # The footnote's manuscript variants are gone, the appended missing chapter stays.
    assert "далее в рукописи было" not in text
    assert "ПРИЛОЖЕНИЕ. ПРОПУЩЕННАЯ ГЛАВА." in text
    assert cp1251.rules["credits"][0] == 1
    matches, chars = cp1251.rules["footnotes"]
    assert matches >= 2 and chars > 4000  # the notes block of nine footnotes, and the last one
    assert 200_000 < cp1251.n_chars < 220_000


def test_embedded_mirror_pages_are_classified() -> None:
    mirror = Path(__file__).resolve().parents[2] / "data" / "sample" / "librus_mirror"
    if not mirror.is_dir():
        pytest.skip("data/sample/librus_mirror absent")
    kinds = {}
    for path in sorted(mirror.rglob("*")):
        if path.is_file() and path.suffix in (".html", ".shtml", ".txt") and path.name != "robots.txt":
            text, _ = decode_bytes(path.read_bytes())
            page = parse_page(text, PARSE)
            kinds[str(path.relative_to(mirror))] = (page.kind, page.format)
    assert {k for k, (kind, _) in kinds.items() if kind == INDEX} == {
        k for k in kinds if Path(k).stem == "index"
    }
    assert all(fmt == AZ for k, (kind, fmt) in kinds.items() if kind == TEXT and k.startswith("az."))
    assert all(fmt == MOSHKOV for k, (_, fmt) in kinds.items() if k.startswith("lib.ru"))
