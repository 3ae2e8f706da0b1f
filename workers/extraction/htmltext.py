"""HTML: the readable main text of a page, without menus, scripts, styles, navigation, footers and references.

Parsing uses BeautifulSoup with Python's html.parser: libxml2 (lxml) stops at 256 (or 2,048) levels of
nesting and silently drops the rest of the page, while html.parser builds any depth. Every walk over the tree
here is iterative, so depth costs memory, never the C stack.

The main-content heuristic, in order:
1. skip subtrees that are never prose (script, style, nav, footer, forms...), hidden ones, ARIA landmarks for
   navigation, and elements whose class or id names boilerplate (menu, sidebar, navbox, reflist, cookie...);
2. skip sections headed "References", "External links", "See also" and the like, up to the next heading;
3. take the largest explicit main container (<main>, role="main", a single <article>, #content...) when it holds
   at least 30% of the remaining text; otherwise the element that collects the most paragraph text (scored as
   in Readability, discounted by link density), under the same 30% rule; otherwise the whole body.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString

from .decode import decode_text
from .result import Extracted

_NEVER_TEXT = frozenset(
    "script style noscript template svg math iframe object embed canvas audio video map nav footer aside "
    "form button select textarea input dialog menu title".split()
)
_SKIP_ROLES = frozenset(
    "navigation banner contentinfo complementary search menu menubar toolbar dialog alertdialog".split()
)
_BOILERPLATE_NAME = re.compile(
    r"^(?:nav|navbar|navigation|navbox.*|.*-?menu|menu-.*|.*footer|site-header|masthead|sidebar.*|"
    r"breadcrumbs?|cookies?.*|banner|ads?|advert.*|sponsor.*|social.*|share|sharing|comments?|related.*|"
    r"references?|reflist|refbegin|mw-references-wrap|mw-editsection|mw-jump-link|toc|toctitle|catlinks|"
    r"printfooter|noprint|mw-jump|jump-to-nav|sitesub|mw-navigation|mw-panel|mw-head|hatnote|metadata|mbox.*|sistersitebox|portal|"
    r"skip-?link|sr-only|visually-?hidden|screen-reader-text|popup|modal|newsletter|subscribe|pagination|pager)$",
    re.IGNORECASE,
)
_KEEP_REGARDLESS_OF_NAME = frozenset({"html", "body", "main", "article"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_BOILERPLATE_HEADINGS = frozenset(
    "references|notes|footnotes|citations|sources|external links|see also|further reading|bibliography|"
    "notes and references|references and notes|works cited|related articles|comments|share this".split("|")
)
_EDIT_LINK = re.compile(r"\[\s*edit\s*\]$")
_MAIN_IDS = frozenset("content main main-content maincontent mw-content-text article-body".split())
_MAIN_CLASSES = frozenset("post-content entry-content article-body article-content story-body".split())

_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_PARAGRAPHS = frozenset("p pre td blockquote dd li".split())
_PARAGRAPH_BREAK = frozenset("p h1 h2 h3 h4 h5 h6 pre blockquote table ul ol dl figure".split())
_LINE_BREAK = frozenset(
    "address article div section header main li dt dd tr caption figcaption details summary hr br".split()
)
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([-\w.:]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]{0,100}?encoding\s*=\s*["']([-\w.:]+)""", re.IGNORECASE)
_MIN_SHARE_OF_PAGE = 0.3


def read_html(data: bytes, declared_charset: str | None) -> Extracted:
    text, codec = decode_text(data, declared_charset or _charset_in_markup(data[:4096]))
    soup = BeautifulSoup(text, "html.parser")
    page = _Page(soup)
    main = page.main_container()
    return Extracted(
        text=page.render(main), title=page.title, page_count=None, detected_format="html", encoding=codec
    )


def _charset_in_markup(head: bytes) -> str | None:
    found = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    return found.group(1).decode("ascii", "replace") if found else None


class _Page:
    """One parsed page: which subtrees are boilerplate, how much text each element holds, its title."""

    def __init__(self, soup: BeautifulSoup) -> None:
        self.soup = soup
        self.body: Tag = soup.body or soup
        self.skipped: set[int] = set()  # id() of tags whose whole subtree is left out
        self.explicit_main: list[Tag] = []
        self._title_tag: str | None = None
        self._og_title: str | None = None
        self._h1: str | None = None
        headings = self._mark_boilerplate()
        for heading in headings:
            self._skip_boilerplate_section(heading)
        self.text_len: dict[int, int] = {}
        self.link_len: dict[int, int] = {}
        self.score: dict[int, float] = {}
        self.tags: dict[int, Tag] = {}
        self._measure()

    @property
    def title(self) -> str | None:
        for candidate in (self._og_title, self._h1, self._title_tag):
            if candidate and candidate.strip():
                return " ".join(candidate.split())
        return None

    def _mark_boilerplate(self) -> list[Tag]:
        """Pass 1: mark subtrees to skip, note title candidates, explicit main containers and headings."""
        headings: list[Tag] = []
        stack: list[Tag] = [self.soup]
        while stack:
            tag = stack.pop()
            name = tag.name
            if name == "title" and self._title_tag is None:
                self._title_tag = tag.get_text()
            elif name == "meta" and tag.get("property") == "og:title":
                self._og_title = _attr(tag, "content")
            if self._is_boilerplate(tag):
                self.skipped.add(id(tag))
                continue
            if name == "h1" and self._h1 is None:
                self._h1 = tag.get_text()
            elif name in _HEADINGS:
                headings.append(tag)
            if self._is_explicit_main(tag):
                self.explicit_main.append(tag)
            stack.extend(child for child in reversed(tag.contents) if isinstance(child, Tag))
        return headings

    def _is_boilerplate(self, tag: Tag) -> bool:
        if tag.name in _NEVER_TEXT:
            return True
        attrs = tag.attrs
        if not attrs:
            return False
        if "hidden" in attrs or _attr(tag, "aria-hidden").lower() == "true":
            return True
        if _HIDDEN_STYLE.search(_attr(tag, "style")) or _attr(tag, "role").lower() in _SKIP_ROLES:
            return True
        if tag.name in _KEEP_REGARDLESS_OF_NAME:
            return False
        names = [*_classes(tag), _attr(tag, "id")]
        return any(_BOILERPLATE_NAME.match(n) for n in names if n)

    def _is_explicit_main(self, tag: Tag) -> bool:
        if not tag.attrs:
            return tag.name in ("main", "article")
        return (
            tag.name in ("main", "article")
            or _attr(tag, "role").lower() == "main"
            or _attr(tag, "itemprop") == "articleBody"
            or _attr(tag, "id").lower() in _MAIN_IDS
            or any(c.lower() in _MAIN_CLASSES for c in _classes(tag))
        )

    def _skip_boilerplate_section(self, heading: Tag) -> None:
        """Pass 2: a heading such as "References" takes everything after it up to the next peer heading."""
        label = _EDIT_LINK.sub("", " ".join(heading.get_text(" ").split()).lower()).strip(" :")
        if label not in _BOILERPLATE_HEADINGS:
            return
        level = _HEADINGS[heading.name]
        anchor = heading
        # Modern markup wraps headings (<div class="mw-heading"><h2>..</h2></div>): climb out of wrappers.
        for _ in range(2):
            parent = anchor.parent
            if parent is None or parent is self.body or not _is_wrapper_of(parent, anchor):
                break
            anchor = parent
        self.skipped.add(id(anchor))
        for sibling in anchor.next_siblings:
            if isinstance(sibling, Tag):
                sibling_level = _heading_level(sibling)
                if sibling_level is not None and sibling_level <= level:
                    break
                self.skipped.add(id(sibling))

    def _measure(self) -> None:
        """Pass 3: text and link-text length of every kept element, and Readability-style paragraph scores."""
        stack: list[tuple[Tag, bool]] = [(self.soup, False)]
        while stack:
            tag, leaving = stack.pop()
            key = id(tag)
            if not leaving:
                self.tags[key] = tag
                self.text_len[key] = self.link_len[key] = 0
                stack.append((tag, True))
                for child in tag.contents:
                    if isinstance(child, Tag):
                        if id(child) not in self.skipped:
                            stack.append((child, False))
                    elif _is_text(child):
                        self.text_len[key] += len(child.strip())
                continue
            length = self.text_len[key]
            if tag.name in _PARAGRAPHS and length >= 25:
                points = 1 + min(length / 100, 3)
                for share, ancestor in zip((1.0, 0.5), _parents(tag), strict=False):
                    self.score[id(ancestor)] = self.score.get(id(ancestor), 0.0) + points * share
            parent = tag.parent
            if parent is not None and id(parent) in self.text_len:
                self.text_len[id(parent)] += length
                self.link_len[id(parent)] += length if tag.name == "a" else self.link_len[key]

    def main_container(self) -> Tag:
        page_len = self.text_len.get(id(self.body), 0)
        enough = _MIN_SHARE_OF_PAGE * page_len
        explicit = [t for t in self.explicit_main if id(t) in self.text_len]
        if explicit:
            largest = max(explicit, key=lambda t: self.text_len[id(t)])
            if self.text_len[id(largest)] >= enough:
                return largest
        if self.score:
            best_key = max(self.score, key=self._final_score)
            if self.text_len.get(best_key, 0) >= enough:
                return self.tags[best_key]
        return self.body

    def _final_score(self, key: int) -> float:
        length = self.text_len.get(key, 0)
        link_density = self.link_len.get(key, 0) / length if length else 1.0
        return self.score[key] * (1.0 - link_density)

    def render(self, root: Tag) -> str:
        """Text of root with line breaks where blocks end; <pre> keeps its own lines."""
        out: list[str] = []
        pre_depth = 0
        stack: list[tuple[Tag | NavigableString, bool]] = [(root, False)]
        while stack:
            node, leaving = stack.pop()
            if isinstance(node, NavigableString):
                if _is_text(node):
                    out.append(str(node) if pre_depth else str(node).replace("\n", " "))
                continue
            name = node.name
            if leaving:
                pre_depth -= name == "pre"
                out.append(_separator(name))
                continue
            out.append("\t" if name in ("td", "th") else _separator(name))
            pre_depth += name == "pre"
            stack.append((node, True))
            for child in reversed(node.contents):
                if not (isinstance(child, Tag) and id(child) in self.skipped):
                    stack.append((child, False))
        return "".join(out)


def _separator(name: str) -> str:
    if name in _PARAGRAPH_BREAK:
        return "\n\n"
    return "\n" if name in _LINE_BREAK else ""


def _is_text(node: object) -> bool:
    # Comments, CDATA, doctypes and processing instructions are PreformattedString subclasses.
    return isinstance(node, NavigableString) and not isinstance(node, PreformattedString)


def _attr(tag: Tag, name: str) -> str:
    value = tag.attrs.get(name)
    if isinstance(value, list):
        return " ".join(value)
    return value or ""


def _classes(tag: Tag) -> list[str]:
    value = tag.attrs.get("class")
    if isinstance(value, str):
        return value.split()
    return list(value or [])


def _parents(tag: Tag) -> Iterator[Tag]:
    parent = tag.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _heading_level(tag: Tag) -> int | None:
    if tag.name in _HEADINGS:
        return _HEADINGS[tag.name]
    first = next((c for c in tag.contents if isinstance(c, Tag)), None)
    if tag.name in ("div", "section", "header") and first is not None and first.name in _HEADINGS:
        return _HEADINGS[first.name]
    return None


def _is_wrapper_of(parent: Tag, child: Tag) -> bool:
    """True when parent holds child and nothing else but whitespace and skipped bits (edit links)."""
    for other in parent.contents:
        if other is child:
            continue
        if isinstance(other, Tag):
            if other.name not in ("span", "a") or other.get_text().strip() not in ("", "edit", "[edit]"):
                return False
        elif _is_text(other) and other.strip():
            return False
    return True
