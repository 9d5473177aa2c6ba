"""Decoding pages whose charset headers lie, and finding works on lib.ru index pages."""

from __future__ import annotations

import pytest

from src.config.sections.scrape_librus import ScrapeLibrusConfig
from src.data.librus.decode import canonical_encoding, decode_bytes, decode_html, russian_score
from src.data.librus.discover import INDEX, TEXT, author_url, index_links
from src.paths import PROJECT_ROOT

MIRROR = PROJECT_ROOT / "data" / "sample" / "librus_mirror"
PROSE = ("Весь день они таскали мешки с песком и вбивали колья у левого края, где земля была "
         "слабее. Ветер дул с поля, холодный и мокрый, и нёс запах талого снега.")


@pytest.mark.parametrize("encoding", ["koi8-r", "windows-1251", "utf-8"])
@pytest.mark.parametrize("header", [None, "koi8-r", "windows-1251", "utf-8", "iso-8859-1",
                                    "x-no-such"])
def test_the_right_cyrillic_encoding_wins_whatever_the_header_says(encoding, header):
    data = f"<html><body><pre>{PROSE}</pre></body></html>".encode(encoding)
    text, found = decode_bytes(data, header)
    assert found == encoding
    assert PROSE in text


def test_non_russian_pages_are_left_as_declared():
    french = "Eh bien, mon prince. Gênes et Lucques ne sont plus que des apanages, des états."
    assert decode_bytes(french.encode("windows-1252"), "windows-1252") == (french, "windows-1252")
    assert decode_bytes(b"User-agent: *\nDisallow: /cgi-bin/\n")[1] == "utf-8"


def test_evidence_is_reported_by_source():
    data = PROSE.encode("windows-1251")
    assert decode_html(data, "windows-1251").source == "header"
    meta = b'<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">' + data
    assert decode_html(meta).source == "meta"
    assert decode_html(data, "koi8-r").source == "corrected"
    assert decode_html(codecs_bom() + PROSE.encode("utf-8")).source == "bom"


def codecs_bom() -> bytes:
    import codecs

    return codecs.BOM_UTF8


def test_mirror_pages_decode_and_the_lying_header_is_caught():
    import json

    charsets = json.loads((MIRROR / "charsets.json").read_text(encoding="utf-8"))
    lie = "lib.ru/LITRA/OZEROWA/doroga.txt"
    assert charsets[lie] == "windows-1251"
    for rel, header in charsets.items():
        decoded = decode_html((MIRROR / rel).read_bytes(), header)
        if rel == lie:
            assert (decoded.encoding, decoded.source) == ("koi8-r", "corrected")
        elif header:
            assert decoded.encoding == header, rel
        if "/text_" in rel or (rel.endswith(".txt") and "robots" not in rel and "drafts" not in rel):
            assert russian_score(decoded.text)[1] > 200, rel


@pytest.mark.parametrize("data, problem", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
    (b"\xff\xfe\x00\xd8", "byte-order mark"),
])
def test_undecodable_input_raises_a_clear_value_error(data, problem):
    with pytest.raises(ValueError, match=problem):
        decode_bytes(data)


def test_charset_labels_are_canonical():
    assert canonical_encoding("CP1251") == "windows-1251"
    assert canonical_encoding("koi8_r") == "koi8-r"
    assert canonical_encoding("utf8") == "utf-8"
    assert canonical_encoding("no-such-charset") is None


def test_moshkov_index_lists_works_not_variants_or_other_sites():
    site = ScrapeLibrusConfig().moshkov
    root = author_url(site, "ZARECHNYJ")
    html, _ = decode_bytes((MIRROR / "lib.ru/LITRA/ZARECHNYJ/index.html").read_bytes(), "koi8-r")
    found = index_links(html, root, root, site)
    assert [(link.url.removeprefix(root), link.kind) for link in found.follow] == [
        ("veter.txt", TEXT), ("lekar.txt", TEXT), ("pisma.txt", TEXT),
        ("drafts/chernovik.txt", TEXT)]
    assert found.follow[0].title == "Ветер на плотине"
    assert found.not_works == 3  # _Ascii.txt x2, _with-big-pictures.html
    assert found.outside >= 4  # navigation, koi/win/lat, az.lib.ru


def test_az_index_lists_text_pages():
    site = ScrapeLibrusConfig().az
    root = author_url(site, "g/grachew_i_k")
    assert root == "http://az.lib.ru/g/grachew_i_k/"
    html, _ = decode_bytes((MIRROR / "az.lib.ru/g/grachew_i_k/index.shtml").read_bytes())
    found = index_links(html, root, root, site)
    assert [link.title for link in found.follow] == [
        "Старый почтмейстер", "Сорока", "Разговор в дилижансе"]
    assert {link.kind for link in found.follow} == {TEXT}


def test_sub_indexes_below_the_author_are_followed():
    site = ScrapeLibrusConfig().moshkov
    root = "http://lib.ru/LITRA/X/"
    html = '<a href="PROZA/">Проза</a> <a href="../Y/a.txt">чужое</a> <a href="a.txt#2">A</a>'
    found = index_links(html, root, root, site)
    assert [(link.url, link.kind) for link in found.follow] == [
        ("http://lib.ru/LITRA/X/PROZA/", INDEX), ("http://lib.ru/LITRA/X/a.txt", TEXT)]
    assert found.outside == 1


@pytest.mark.real_data
def test_real_lib_ru_pages_decode(shared_data):
    folder = shared_data / "librus_real"
    expected = {
        "libru__homepage__koi8-r.html": "koi8-r",
        "libru__LITRA_PUSHKIN_kapitan__2018__windows-1251.txt": "windows-1251",
        "libru__LITRA_PUSHKIN_kapitan__2018__utf-8.txt": "utf-8",
    }
    for name, encoding in expected.items():
        data = (folder / name).read_bytes()
        for header in (None, "koi8-r", "windows-1251"):
            text, found = decode_bytes(data, header)
            assert found == encoding, (name, header)
            assert "Lib.Ru" in text or "Капитанская дочка" in text
