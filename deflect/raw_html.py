"""Raw HTML in articles through an allowlist (setting article_raw_html = "safe"), as GitHub renders it.

Help-centre exports (Zendesk Guide's, converted to Markdown) keep much of their HTML: <p>, <b>,
tables, <img>. Showing it as text made every such page unreadable while search read it as words;
so the safe subset renders, and anything else (script, style, frames, forms, event handlers,
javascript: and data: URLs, id, class and style attributes) is removed by nh3 (the Rust ammonia
sanitiser), not by patterns of ours.

The whole page goes through nh3 in one piece, because raw tags and Markdown interleave
("Click <b>**Save**</b>"). What Markdown itself makes and the allowlist refuses to raw HTML
(heading ids, footnote classes, table alignment styles, task checkboxes) is marked with a
per-page random `Marks.nonce` before, so that a writer cannot forge it, and put back after.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable

RAW_HTML_MODES = ("safe", "text")  # setting article_raw_html

TAGS = frozenset(
    "p div span br hr b strong i em u s strike del ins sub sup small mark code pre kbd samp var abbr q cite"
    " blockquote ul ol li dl dt dd h1 h2 h3 h4 h5 h6 table thead tbody tfoot tr th td caption colgroup col"
    " img a details summary figure figcaption".split()
)
# Removed with everything in them; any other tag not in TAGS goes but its text stays.
DROPPED_WITH_CONTENT = frozenset(
    "script style template noscript iframe frame frameset object applet embed noembed noframes xmp svg math"
    " textarea select title".split()
)
_CELL = {"colspan", "rowspan", "align"}
ATTRIBUTES: dict[str, set[str]] = {
    "*": {"title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "th": _CELL,
    "td": _CELL,
    "col": {"span", "align"},
    "ol": {"start"},
    "details": {"open"},
}
# Attributes only Markdown's own elements may have (marked with the nonce); raw ones are dropped.
MARKDOWN_ONLY = ("id", "class", "style")
URL_SCHEMES = {"http", "https", "mailto"}  # and relative URLs; deflect.article_html.is_safe_url's rule
_IMG = re.compile(r"<img((?: [^<>]*)?)>")  # nh3's output: every < and > in a value is escaped
_ATTRIBUTE = re.compile(r' ([^\s="]+)="([^"]*)"')


class Marks:
    """One page's marks: a random nonce for Markdown's own attributes, and its task checkboxes,
    which stand in the text as tokens while nh3 runs (a raw <input> never survives).

    Each mark is good once, on the tag it was made for, and a token only in text: raw HTML can still
    swallow Markdown's markup into a tag of its own (an unclosed quote in `<?...?>`), and must not gain
    a marked attribute or an <input> that way.
    """

    def __init__(self) -> None:
        self.nonce = "m" + secrets.token_hex(8)
        self.inputs: list[str] = []
        self.tags: list[str] = []  # the tag each attribute mark was made for, by its number

    def attribute(self, tag: str, value: str) -> str:
        self.tags.append(tag)
        return f"{self.nonce}{len(self.tags) - 1}_{value}"

    def own(self, tag: str, value: str) -> str | None:
        """The value of a marked attribute Markdown made for this tag, once; None for anything else."""
        mark = re.match(rf"{self.nonce}(\d+)_", value)
        if not mark or int(mark.group(1)) >= len(self.tags) or self.tags[int(mark.group(1))] != tag:
            return None
        self.tags[int(mark.group(1))] = ""  # used
        return value[mark.end() :]

    def input_token(self, attributes: dict[str, str]) -> str:
        """A token for an <input> Markdown made (a task list's checkbox), put back by `restore`."""
        self.inputs.append("<input" + "".join(f' {k}="{html.escape(v)}"' for k, v in attributes.items()) + ">")
        return f"{self.nonce}i{len(self.inputs) - 1}x"

    def restore(self, markup: str) -> str:
        """markup with each token in text as its <input>, once; one inside a tag (in an attribute's
        value) is removed. nh3's output has no < or > inside a tag, so the split is exact."""
        if self.nonce not in markup:
            return markup
        token = re.compile(rf"{self.nonce}i(\d+)x")
        put: set[int] = set()

        def checkbox(match: re.Match) -> str:
            n = int(match.group(1))
            if n >= len(self.inputs) or n in put:
                return ""
            put.add(n)
            return self.inputs[n]

        pieces = re.split(r"(<[^<>]*>)", markup)
        return "".join(token.sub("" if piece.startswith("<") else checkbox, piece) for piece in pieces)


def sanitise(markup: str, marks: Marks, url: Callable[[str, str], str | None]) -> str:
    """The rendered page through the allowlist; `url(attribute, value)` gives each href and src that nh3
    found safe its final value (None drops it), and an <img> left without src shows its alt text."""
    import nh3

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if attribute in MARKDOWN_ONLY:
            return marks.own(tag, value)
        if attribute in ("href", "src"):
            return url(attribute, value)
        return value

    attributes = {tag: set(names) for tag, names in ATTRIBUTES.items()}
    attributes["*"] |= set(MARKDOWN_ONLY)
    clean = nh3.clean(
        markup,
        tags=set(TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes=attributes,
        attribute_filter=keep,
        url_schemes=set(URL_SCHEMES),
        link_rel=None,  # as Markdown's links: none, and no target attribute survives to need one
        strip_comments=True,
    )
    return marks.restore(_IMG.sub(_alt_text_unless_src, clean))


def _alt_text_unless_src(match: re.Match) -> str:
    """An image that cannot be shown (its src missing, unsafe or leading nowhere) as its alt text, as
    deflect.article_html shows a Markdown one: a renderer might draw a broken-image icon for it."""
    attributes = dict(_ATTRIBUTE.findall(match.group(1)))  # exact: a value has no '"' (nh3 writes &quot;)
    if "src" in attributes:
        return match.group(0)
    return f"<span>{attributes.get('alt', '')}</span>"  # escaped by nh3 already


# --- raw HTML as search text (deflect.passages): what a reader of the page sees -----------------------

# What never shows on a page: comments, and script and style with everything in them (to the end of
# the text when never closed, as a browser reads them).
HIDDEN = re.compile(r"<!--.*?(?:-->|\Z)|<(script|style)(?![^\s/>])[^>]*>.*?(?:</\1\s*>|\Z)", re.I | re.S)
# A tag as Python-Markdown finds one (a name starting with a letter); "a < b > c" is no tag.
_TAG = re.compile(r"</?([A-Za-z][^\s/<>]*)[^<>]*>")
# Tags that start a new line, box or cell on the page: they part words; any other tag is inline
# ("<b>Invite</b>." reads "Invite.").
BLOCK_TAGS = frozenset(
    "p div br hr li ul ol dl dt dd table thead tbody tfoot tr th td caption h1 h2 h3 h4 h5 h6 blockquote pre"
    " details summary figure figcaption section article header footer nav aside main address center".split()
    + list(DROPPED_WITH_CONTENT)
)
# One attribute of a raw tag, read as a browser reads it (a value's own "src=" is no attribute).
_RAW_ATTRIBUTE = re.compile(r"""([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")


def raw_attribute(tag: str, wanted: str) -> str | None:
    """The value of a raw tag's first `wanted` attribute (a browser's rule for a repeated one) as
    written, entities and all; None when it has none. `tag` is "<img src=...>" or just what follows its name."""
    for name, double, single, bare in _RAW_ATTRIBUTE.findall(tag):
        if name.lower() == wanted:
            return double or single or bare
    return None


def tags_as_text(text: str) -> str:
    """text with its tags read as a page shows them: an image as its alt text (as a Markdown image
    reads), a block tag as a space, an inline one as nothing. Entities are left for the caller."""

    def read(match: re.Match) -> str:
        name = match.group(1).lower()
        if name == "img":
            return raw_attribute(match.group(0)[4:], "alt") or ""
        return " " if name in BLOCK_TAGS else ""

    return _TAG.sub(read, text) if "<" in text else text
