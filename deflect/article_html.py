"""An article's Markdown as safe HTML: raw HTML through an allowlist (deflect.raw_html) or shown as text,
script-capable URLs removed, lists as writers mean them, and what GitHub adds (deflect.gfm; footnotes).

Rendered when an article is shown, never stored in the index: relative links are resolved then
(`rewrite`, see deflect.links), since where they lead depends on the other files of the KB.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from .gfm import register as register_gfm
from .raw_html import MARKDOWN_ONLY, RAW_HTML_MODES, Marks, sanitise

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


def render_html(markdown_text: str, rewrite: Rewrite | None = None, raw_html: str = "safe") -> str:
    """Render Markdown to HTML with script-capable URLs removed and raw HTML as the setting
    article_raw_html says: "safe" renders its allowlisted subset (deflect.raw_html), "text" shows it as text.

    Headings get ids (GitHub-like slugs) so that links with a #fragment land on them. `rewrite`,
    if given, is asked about every safe href and src (relative article links, images), raw or Markdown.
    """
    import markdown
    from markdown.extensions.toc import slugify_unicode
    from markdown.preprocessors import Preprocessor
    from markdown.treeprocessors import Treeprocessor

    if raw_html not in RAW_HTML_MODES:
        raise ValueError(f"raw_html must be one of {RAW_HTML_MODES}, not {raw_html!r}")
    safe = raw_html == "safe"
    marks = Marks()

    def final_url(attr: str, value: str) -> str | None:
        """What a safe href or src becomes: rewritten, or None where it leads nowhere."""
        new = rewrite(attr, value) if rewrite is not None else value
        return new if new is None or new == value or is_safe_url(new) else "#"

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
                    if safe:
                        continue  # rewritten with the raw HTML's, once it is all one page (deflect.raw_html)
                    new = final_url(attr, value)
                    if new is None:
                        del element.attrib[attr]
                        if element.tag == "img":
                            _alt_text_instead(element)
                    elif new != value:
                        element.set(attr, new)
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
                    words = _PLACEHOLDER.sub("", "".join(element.itertext()))  # raw tags ("## <b>Fees</b>") are no words
                    base = slugify_unicode(words, "-") or "section"
                    slug, n = base, 0
                    while slug in used:
                        n += 1
                        slug = f"{base}-{n}"
                    used.add(slug)
                    element.set("id", slug)

    class _FencedCodeLanguage(Preprocessor):
        """A fenced code block keeps only its language ("language-python" on its <code>): the braces
        form (```{.evil #main}) would give it any class or id, the page's own included. In safe mode
        the class is marked to survive the sanitiser; the blocks are HTML by now, kept aside with the
        raw HTML, and all of that aside is theirs until html_block (20) runs."""

        def run(self, lines):  # type: ignore[override]
            blocks = md.htmlStash.rawHtmlBlocks
            for n, block in enumerate(blocks):
                opening = _CODE_OPENING.match(block) if isinstance(block, str) else None
                if opening:
                    language = _LANGUAGE.search(opening.group(0), opening.group(0).index("<code"))
                    value = language.group(0) if language else ""
                    if value and safe:
                        value = marks.attribute("code", value)
                    blocks[n] = (f'<pre><code class="{value}">' if value else "<pre><code>") + block[opening.end() :]
            return lines

    class _MarkOwn(Treeprocessor):
        """Mark what Markdown made and the raw-HTML allowlist refuses, so that it survives the sanitiser."""

        def run(self, root):  # type: ignore[override]
            for parent in root.iter():
                for element in list(parent):
                    if element.tag == "input":
                        _replace_by_text(parent, element, marks.input_token(dict(element.attrib)))
                        continue
                    for attr in MARKDOWN_ONLY:
                        if element.get(attr) is not None:
                            element.set(attr, marks.attribute(element.tag, element.get(attr)))

    md = markdown.Markdown(extensions=["tables", "fenced_code", "sane_lists", "footnotes"])
    register_gfm(md)  # ~~strikethrough~~, task lists, bare URLs
    # After fenced code (25) has taken its blocks out, so no line of code is touched.
    md.preprocessors.register(_ListsAfterParagraphs(md), "lists_after_paragraphs", 15)
    md.treeprocessors.register(_HeadingIds(md), "heading_ids", 1)
    md.treeprocessors.register(_SafeUrls(md), "safe_urls", 0)
    md.preprocessors.register(_FencedCodeLanguage(md), "fenced_code_language", 22)
    if not safe:
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        return md.convert(markdown_text)
    md.treeprocessors.register(_MarkOwn(md), "mark_own", -1)

    def raw_url(attr: str, value: str) -> str | None:
        return final_url(attr, value) if is_safe_url(value) else None

    return sanitise(md.convert(markdown_text), marks, raw_url)


_CODE_OPENING = re.compile(r"<pre[^<>]*><code[^<>]*>")
_LANGUAGE = re.compile(r"(?<=[\s\"])language-[\w.+#-]+")  # escaped by fenced_code already, no quote in it
# Raw HTML kept aside while Markdown works stands in the tree as a placeholder (Python-Markdown's).
_PLACEHOLDER = re.compile("\x02wzxhzdk:\\d+\x03")


def _replace_by_text(parent, element, text: str) -> None:
    """Take `element` out of `parent`, leaving `text` and its tail where it stood."""
    at = list(parent).index(element)
    words = text + (element.tail or "")
    if at:
        previous = parent[at - 1]
        previous.tail = (previous.tail or "") + words
    else:
        parent.text = (parent.text or "") + words
    parent.remove(element)
