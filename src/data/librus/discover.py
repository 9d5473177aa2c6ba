"""Finding works on lib.ru author index pages (both formats), and the seed URL of each author.

Moshkov's lib.ru lists works as `<li><A HREF=file.txt><b>Title</b></A>` next to format variants
(`file.txt_Ascii.txt`, ...) and links elsewhere; az.lib.ru lists `<DL><DT><li><A
HREF=text_0010.shtml><b>Title</b></A>`. Both are matched by the site's `work_pattern` on the link's
file name, limited to links below the author's own folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from bs4 import BeautifulSoup

from src.config.sections.scrape_librus import LibrusSite

TEXT = "text"
INDEX = "index"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Link:
    url: str
    title: str
    kind: str  # text | index


@dataclass
class IndexLinks:
    """What an index page links to: works and sub-indexes to crawl, and what was left alone."""

    follow: list[Link]
    outside: int = 0  # links that are not below the author's folder (site furniture, other authors)
    not_works: int = 0  # below the folder, but neither a work nor a sub-index (format variants...)


def author_url(site: LibrusSite, directory: str) -> str:
    return site.base_url.rstrip("/") + site.author_path.format(dir=directory.strip("/"))


def canonical(url: str) -> str:
    """Drop the fragment and normalise the host's case: one page, one URL."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/",
                       parts.query, ""))


def page_title(html: str) -> str:
    soup = BeautifulSoup(html, "lxml")
    return _SPACES.sub(" ", soup.title.get_text()).strip() if soup.title else ""


def index_links(html: str, page_url: str, author_root: str, site: LibrusSite) -> IndexLinks:
    """Works and sub-indexes linked from an author index, in page order, each URL once."""
    work = re.compile(site.work_pattern)
    skip = re.compile(site.skip_pattern) if site.skip_pattern else None
    root = urlsplit(author_root)
    found = IndexLinks(follow=[])
    seen: set[str] = set()
    for anchor in BeautifulSoup(html, "lxml").find_all("a", href=True):
        url = canonical(urljoin(page_url, anchor["href"].strip()))
        parts = urlsplit(url)
        if (parts.netloc != root.netloc or not parts.path.startswith(root.path)
                or parts.path == root.path):
            found.outside += 1
            continue
        if url in seen:
            continue
        seen.add(url)
        name = parts.path.rsplit("/", 1)[-1]
        title = _SPACES.sub(" ", anchor.get_text(" ")).strip()
        if parts.query or (skip is not None and skip.search(name)):
            found.not_works += 1
        elif parts.path.endswith("/"):
            found.follow.append(Link(url, title, INDEX))
        elif work.search(name):
            found.follow.append(Link(url, title, TEXT))
        else:
            found.not_works += 1
    return found
