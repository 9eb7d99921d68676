"""The GitHub-flavoured Markdown that writers expect and Python-Markdown lacks: ~~strikethrough~~,
task lists (`- [ ] step`), bare URLs as links. Footnotes are Python-Markdown's own extension.

Shared by the page (register, used by deflect.article_html) and the search text (the patterns,
used by deflect.passages), so that both read a URL or a task item alike. Python-Markdown is
imported only when an article is rendered, as in deflect.article_html.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# A bare URL as GitHub links it (its "extended autolinks"): http(s):// or www. at the start of a
# word, or after *, _, ~, a quote or an opening bracket (a backtick: in search text, where code spans
# keep theirs); never javascript: or another scheme. Python-Markdown keeps escapes and entities as
# \x02...\x03 placeholders when links are made: a URL stops there.
_BARE_URL = re.compile(r"(?<![^\s*_~(\[\"'`])(?:https?://|www\.)[\w\-]+[^\s<>\"`\x02\x03]*", re.I)
# An autolink in angle brackets, <https://...> or <help@example.com>, as Python-Markdown reads one.
ANGLE_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^<>\s]*|[^<> !]+@[^@<> ]+)>", re.I)
# What ends a sentence or closes emphasis after a URL rather than belonging to it (GitHub's rule).
_TRAILING = "?!.,:*_~'\""

# `- [ ] step`, `1. [x] done`: a list item's task marker (group 1: the item's own marker).
TASK_MARKER = re.compile(r"^([ \t]*(?:>[ \t]?)*(?:[-*+]|\d+[.)])[ \t]+)\[[ xX]\](?=[ \t]|$)[ \t]*", re.M)
_TASK_TEXT = re.compile(r"^\[([ xX])\](?:[ \t]+|$)")
# Footnotes: a reference `text[^1]`, and a definition's label `[^1]: ` at the start of a line.
FOOTNOTE_REFERENCE = re.compile(r"\[\^[^\]\s]+\](?!:)")
FOOTNOTE_LABEL = re.compile(r"^ {0,3}\[\^[^\]\s]+\]:[ \t]*", re.M)


def url_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each bare URL in text, without trailing punctuation or an unbalanced ")"."""
    for match in _BARE_URL.finditer(text):
        start, end = match.span()
        while end > start:
            last = text[end - 1]
            if last in _TRAILING or (last == ")" and text.count("(", start, end) < text.count(")", start, end)):
                end -= 1
            else:
                break
        if end - start > len("www."):
            yield start, end


def href(url: str) -> str:
    """The address a bare URL links to: www. ones on http, as on GitHub."""
    return url if "://" in url else "http://" + url


# Where the page's own links and code are: no link is made inside them.
_NOT_LINKED = frozenset({"a", "code", "pre"})
# A tag in the text (raw HTML shown as text, article_raw_html = "text"): a URL in its attributes is
# part of the tag as written, no link. Python-Markdown's own rule for what is a tag, near enough.
_TAG_AS_TEXT = re.compile(r"</?[A-Za-z][^<>]*>")
# Raw HTML kept for the page (article_raw_html = "safe") stands in the text as a placeholder.
_PLACEHOLDER = re.compile("\x02wzxhzdk:(\\d+)\x03")
_RAW_ANCHOR = re.compile(r"<(/?)a(?![^\s/>])", re.I)


def register(md) -> None:
    """Add strikethrough, task lists and bare-URL links to a Python-Markdown instance.

    Links made here still pass deflect.article_html's URL check, which runs after them.
    """
    from xml.etree import ElementTree as etree

    from markdown.inlinepatterns import SimpleTagInlineProcessor
    from markdown.treeprocessors import Treeprocessor

    class _TaskLists(Treeprocessor):
        """`- [ ] step` as GitHub shows it: a disabled checkbox instead of the brackets."""

        def run(self, root):  # type: ignore[override]
            for item in root.iter("li"):
                holder = item
                if not (item.text or "").strip() and len(item) and item[0].tag == "p":
                    holder = item[0]  # a loose list: the text is in a paragraph
                match = _TASK_TEXT.match(holder.text or "")
                if not match:
                    continue
                box = etree.Element("input", {"type": "checkbox", "class": "task-list-item-checkbox", "disabled": "disabled"})
                if match.group(1) != " ":
                    box.set("checked", "checked")
                box.tail = " " + holder.text[match.end() :]
                holder.text = None
                holder.insert(0, box)
                item.set("class", "task-list-item")

    class _BareUrls(Treeprocessor):
        def run(self, root):  # type: ignore[override]
            raw_anchors[0] = 0
            _link_in(root)

    raw_anchors = [0]  # how many raw <a> tags are open where the tree is being read (document order)

    def _free(text: str) -> list[tuple[int, int]]:
        """The URL spans of text that are neither in a tag written as text nor in a raw <a>'s words."""
        edges = []  # (where, +1 for a raw <a ...>, -1 for a raw </a>)
        scanned = text  # text as the URL pattern reads it: a raw tag ends a word, as on GitHub
        for placeholder in _PLACEHOLDER.finditer(text) if "\x02" in text else ():
            blocks = md.htmlStash.rawHtmlBlocks
            n = int(placeholder.group(1))
            raw = blocks[n] if n < len(blocks) and isinstance(blocks[n], str) else ""
            anchor = _RAW_ANCHOR.match(raw)
            if anchor:
                edges.append((placeholder.start(), -1 if anchor.group(1) else 1))
            if raw.startswith("<"):  # a tag, not an escaped character or an entity
                end = placeholder.end() - 1
                scanned = scanned[:end] + " " + scanned[end + 1 :]
        tags = [tag.span() for tag in _TAG_AS_TEXT.finditer(text)] if "<" in text else []
        free = []
        for start, end in url_spans(scanned):
            open_anchors = raw_anchors[0] + sum(step for where, step in edges if where < start)
            if open_anchors <= 0 and not any(a <= start < b for a, b in tags):
                free.append((start, end))
        raw_anchors[0] = max(0, raw_anchors[0] + sum(step for _, step in edges))
        return free

    def _links(text: str) -> tuple[str, list]:
        """text up to its first URL, and a link element (its tail: the text up to the next) per URL."""
        spans = _free(text)
        if not spans:
            return text, []
        links = []
        for i, (start, end) in enumerate(spans):
            link = etree.Element("a", {"href": href(text[start:end])})
            link.text = text[start:end]
            link.tail = text[end : spans[i + 1][0] if i + 1 < len(spans) else len(text)]
            links.append(link)
        return text[: spans[0][0]], links

    def _link_in(element) -> None:
        if element.tag in _NOT_LINKED:
            return
        children = list(element)
        if element.text:
            element.text, links = _links(element.text)
            for position, link in enumerate(links):
                element.insert(position, link)
        for child in children:
            _link_in(child)
            if child.tail:
                child.tail, links = _links(child.tail)
                at = list(element).index(child) + 1
                for offset, link in enumerate(links):
                    element.insert(at + offset, link)

    # Before emphasis (60), so "~~**old**~~" and "**~~old~~**" both work; after code spans and links.
    md.inlinePatterns.register(SimpleTagInlineProcessor(r"(~~)(?=\S)(.+?)(?<=\S)~~", "del"), "strikethrough", 65)
    # After the inline patterns (20) have made the links and code spans, before the URL check (0).
    md.treeprocessors.register(_TaskLists(md), "task_lists", 12)
    md.treeprocessors.register(_BareUrls(md), "bare_urls", 11)
