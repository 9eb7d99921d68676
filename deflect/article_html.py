"""An article's Markdown as safe HTML: raw HTML escaped, script-capable URLs removed, lists as writers mean them,
and what GitHub adds (deflect.gfm; footnotes).

Rendered when an article is shown, never stored in the index: relative links are resolved then
(`rewrite`, see deflect.links), since where they lead depends on the other files of the KB.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from .gfm import register as register_gfm

_SAFE_SCHEME = re.compile(r"^(https?|mailto):", re.I)
_HAS_SCHEME = re.compile(r"^[^/?#]*:")

# rewrite(attribute, value) -> the value to use, or None to drop the attribute: a link that leads
# nowhere stays as its text, and an image that cannot be shown (missing, or outside kb_dir) is
# replaced by its alt text rather than shown as a broken image.
Rewrite = Callable[[str, str], "str | None"]


def is_safe_url(value: str) -> bool:
    """Allow http(s), mailto and relative URLs only, after undoing entity and control tricks."""
    decoded = "".join(c for c in html.unescape(html.unescape(value)) if ord(c) > 0x20)
    return bool(_SAFE_SCHEME.match(decoded)) or not _HAS_SCHEME.match(decoded)


# A line that starts a list even right after a paragraph line, as on GitHub (CommonMark): a bullet,
# or an ordered item numbered 1 (so "...released in version\n4. Then..." stays prose). Python-Markdown
# reads only "1." (not "1)") as an ordered item, so that is all that is looked for.
_LIST_START = re.compile(r"^ {0,3}(?:[-*+]|1\.)[ ]+\S")
_ANY_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d+\.)[ ]+\S")
_QUOTE = re.compile(r"^ {0,3}> ?")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?: *\1){2,} *$")  # "- - -", "* * *": a rule, not an item


def blank_line_before_lists(lines: list[str]) -> list[str]:
    """Lines with a blank line put before a list that directly follows a paragraph line.

    Python-Markdown needs that blank line; writers used to GitHub leave it out ("To export:" then
    "1. Open Settings"), and the list would render as one run-on paragraph. Nothing changes inside
    a list (nested and continued items), in indented code, or in fenced code (gone by the time this
    runs: Python-Markdown's fenced-code step comes first).
    """
    out: list[str] = []
    block = ""  # what the current block is: "paragraph", "list", "code", "quote", or "" before any
    after_blank = True
    quoted: list[str] = []  # the run of "> " lines being read, without their marker
    prefix = ""  # the run's first marker, indentation included ("> ", "  >")
    for line in lines + [""]:
        if block == "quote":
            marker = _QUOTE.match(line)
            if marker:
                quoted.append(line[marker.end() :])
                continue
            # The quote's own lines get the same treatment, under the marker they had.
            out.extend(prefix + inner if inner.strip() else prefix.rstrip() for inner in blank_line_before_lists(quoted))
            # A line right after a top-level quote continues it (lazily): a list there needs its blank
            # line; an indented quote is inside a list item, and the list goes on.
            quoted, block = [], "list" if prefix[:1] == " " else "paragraph"
            after_blank = False
        marker = _QUOTE.match(line)
        if marker and not line.startswith("    "):
            block, prefix, quoted = "quote", marker.group(0).rstrip() + " ", [line[marker.end() :]]
            continue
        if not line.strip():
            out.append(line)
            after_blank = True
            continue
        indented = line.startswith("    ")
        item = bool(_ANY_ITEM.match(line)) and not _THEMATIC_BREAK.match(line)
        if after_blank:
            if block == "list" and (indented or item):
                pass  # a loose list's next item, or a paragraph inside an item
            elif indented:
                block = "code"
            else:
                block = "list" if item else "paragraph"
        elif block == "paragraph" and _LIST_START.match(line) and not _THEMATIC_BREAK.match(line):
            out.append("")
            block = "list"
        elif block == "code" and not indented:
            block = "list" if item else "paragraph"  # Python-Markdown ends the code block here
        out.append(line)
        after_blank = False
    return out[:-1]  # without the blank line added to end the last quote


def _alt_text_instead(image) -> None:
    """Turn an <img> element into its alt text, as a link that leads nowhere is shown as its words:
    a browser (or an API client's renderer) might draw a broken-image icon for an <img> without src."""
    alt = image.get("alt", "")
    image.attrib.clear()
    image.tag = "span"
    image.text = alt


# Ids the article page itself has (deflect/web/templates): a heading never takes one.
PAGE_IDS = ("main",)


def render_html(markdown_text: str, rewrite: Rewrite | None = None) -> str:
    """Render Markdown to HTML with raw HTML escaped and script-capable URLs removed.

    Headings get ids (GitHub-like slugs) so that links with a #fragment land on them. `rewrite`,
    if given, is asked about every safe href and src (relative article links, images).
    """
    import markdown
    from markdown.extensions.toc import slugify_unicode
    from markdown.preprocessors import Preprocessor
    from markdown.treeprocessors import Treeprocessor

    class _ListsAfterParagraphs(Preprocessor):
        def run(self, lines):  # type: ignore[override]
            return blank_line_before_lists(lines)

    class _SafeUrls(Treeprocessor):
        def run(self, root):  # type: ignore[override]
            for element in root.iter():
                for attr in ("href", "src"):
                    value = element.get(attr)
                    if value is None:
                        continue
                    if not is_safe_url(value):
                        element.set(attr, "#")
                        continue
                    new = rewrite(attr, value) if rewrite is not None else value
                    if new is None:
                        del element.attrib[attr]
                        if element.tag == "img":
                            _alt_text_instead(element)
                    elif new != value:
                        element.set(attr, new if is_safe_url(new) else "#")
                for attr in list(element.keys()):
                    if attr.lower().startswith("on"):
                        del element.attrib[attr]

    class _HeadingIds(Treeprocessor):
        """GitHub's heading ids: `## Fees` is "fees", a second one "fees-1"; never an id the page
        itself uses ("main", the skip link's target)."""

        def run(self, root):  # type: ignore[override]
            used = set(PAGE_IDS)
            for element in root.iter():
                if element.tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
                    base = slugify_unicode("".join(element.itertext()), "-") or "section"
                    slug, n = base, 0
                    while slug in used:
                        n += 1
                        slug = f"{base}-{n}"
                    used.add(slug)
                    element.set("id", slug)

    md = markdown.Markdown(extensions=["tables", "fenced_code", "sane_lists", "footnotes"])
    register_gfm(md)  # ~~strikethrough~~, task lists, bare URLs
    md.preprocessors.deregister("html_block")
    # After fenced code (25) has taken its blocks out, so no line of code is touched.
    md.preprocessors.register(_ListsAfterParagraphs(md), "lists_after_paragraphs", 15)
    md.inlinePatterns.deregister("html")
    md.treeprocessors.register(_HeadingIds(md), "heading_ids", 1)
    md.treeprocessors.register(_SafeUrls(md), "safe_urls", 0)
    return md.convert(markdown_text)
