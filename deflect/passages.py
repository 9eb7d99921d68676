"""An article's passages for retrieval: its title, its sections (cut to passage_chars), its list items.

Sections are split at headings, grouped by paragraphs up to passage_chars, and a paragraph
longer than that is cut (the model reads only a passage's first ~256 tokens).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from .gfm import ANGLE_AUTOLINK, FOOTNOTE_LABEL, FOOTNOTE_REFERENCE, TASK_MARKER, url_spans
from .raw_html import HIDDEN, tags_as_text

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s{0,3}[-*+]\s+(?:\[[ xX]\](?=\s)\s*)?(.*)$")  # without a task marker "[ ] "


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of an article: its title, a section, or a short list item."""

    kind: str  # "title" | "section" | "item"
    text: str  # what gets embedded and tokenised
    snippet: str  # what a user sees under the result


def plain_text(markdown_text: str) -> str:
    """Strip the Markdown syntax that would only add noise to embeddings and snippets."""
    return _one_line(_strip_markup(markdown_text))


def _strip_markup(markdown_text: str) -> str:
    """plain_text before its whitespace is collapsed: line breaks still show where a line ends.

    Read as the page shows it: raw HTML's tags go (deflect.raw_html.tags_as_text), with what never
    shows (script, style, comments), and entities are decoded ("&gt;" reads ">", "&nbsp;" a space),
    except in code, which reads exactly as written; a backslash escape reads as its character
    ("1\\. Go to", as converters write a numbered line that is not a list, reads "1. Go to").
    """
    text = re.sub(r"```.*?```", " ", markdown_text, flags=re.S)
    text, code = code_aside(without_hidden_html(text))
    text = escapes_aside(text, code)
    text = ANGLE_AUTOLINK.sub(r"\1", text)  # <https://...> reads as its URL, as shown
    text = tags_as_text(text)
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = _reference_links_as_text(text)
    text = FOOTNOTE_REFERENCE.sub("", FOOTNOTE_LABEL.sub("", text))  # a footnote's text stays
    text = _tables_as_text(text)
    text = TASK_MARKER.sub(r"\1", text)  # "- [ ] step" reads "step"
    text = _strip_number_markers(text)
    text = re.sub(r"^\s{0,3}(#{1,6}|>|[-*+])\s+", "", text, flags=re.M)
    text = html.unescape(_without_emphasis(text)).replace("\xa0", " ")
    return restore_literal(text, code)


# Code as Markdown finds it: a fenced block, or a span in backticks (within a paragraph).
_CODE = re.compile(
    r"^ {0,3}(`{3,}|~{3,})[^\n]*\n(.*?)^ {0,3}\1[ \t]*$"
    r"|(?<![\\`])(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\3(?!`)",
    re.M | re.S,
)
_CODE_MARK = re.compile("\ue000(\\d+)\ue001")
# A backslash escape as the article page renders it: Python-Markdown's escapable characters (with
# the tables extension's "|"), not all of CommonMark's ASCII punctuation ("\\&" shows as written).
MARKDOWN_ESCAPE = re.compile(r"\\([!#()*+\-.>\[\\\]_`{|}])")


def escapes_aside(text: str, literal: list[str]) -> str:
    """text with each backslash escape as a mark of its character, put in `literal` (the code list
    of code_aside, restored at the end): "\\*" reads "*", and no later step takes it for markup."""
    if "\\" not in text:
        return text

    def aside(match: re.Match) -> str:
        literal.append(match.group(1))
        return f"\ue000{len(literal) - 1}\ue001"

    return MARKDOWN_ESCAPE.sub(aside, text)


def restore_literal(text: str, literal: list[str]) -> str:
    """text with the marks of code_aside and escapes_aside back as what they stand for."""
    return _CODE_MARK.sub(lambda mark: literal[int(mark.group(1))], text) if literal else text


def without_hidden_html(text: str) -> str:
    """text without what a page never shows (raw script, style, comments), code left as written."""
    if "<" not in text:
        return text
    pieces, at = [], 0
    for code in _CODE.finditer(text) if "`" in text or "~~~" in text else ():
        pieces += [HIDDEN.sub("", text[at : code.start()]), code.group(0)]
        at = code.end()
    return "".join(pieces) + HIDDEN.sub("", text[at:])


def code_aside(text: str) -> tuple[str, list[str]]:
    """text with each code span as a mark, and the spans' code: code reads literally, no tag or
    entity in it touched ("`&amp;`" reads "&amp;", as the page shows it)."""
    if "`" not in text and "~~~" not in text:
        return text, []
    code: list[str] = []

    def aside(match: re.Match) -> str:
        # A fenced block's lines (only ~~~ ones are left by then), or a span's code without its spaces.
        code.append(match.group(2) if match.group(4) is None else match.group(4).strip())
        return f" \ue000{len(code) - 1}\ue001 " if match.group(4) is None else f"\ue000{len(code) - 1}\ue001"

    return _CODE.sub(aside, text), code


_EMPHASIS = re.compile(r"[*_`~]{1,3}")


def _without_emphasis(text: str) -> str:
    """text without emphasis, code and strikethrough marks, except inside URLs (my_file, ~user)."""
    pieces: list[str] = []
    at = 0
    for start, end in url_spans(text):
        pieces += [_EMPHASIS.sub("", text[at:start]), text[start:end]]
        at = end
    return "".join(pieces) + _EMPHASIS.sub("", text[at:])


# A link reference definition, `[guide]: https://example.com "Title"` (not a footnote's `[^1]:`).
_LINK_DEFINITION = re.compile(r"""^ {0,3}\[(?!\^)([^\]]+)\]:[ \t]*<?\S*>?(?:[ \t]+(?:"[^"]*"|'[^']*'|\([^)]*\)))?[ \t]*$""", re.M)
_REFERENCE_LINK = re.compile(r"!?\[([^\]]+)\]\[([^\]]*)\]")  # [text][label] and [text][]
_SHORTCUT_LINK = re.compile(r"!?\[([^\]^][^\]]*)\](?![\[(:])")  # [label], a link only when defined


def _reference_links_as_text(text: str) -> str:
    """Reference-style links read as their words, as inline ones do: the definitions go, and
    `[the guide][g]`, `[the guide][]` and `[guide]` (when defined) become their text."""
    defined = {label.strip().lower() for label in _LINK_DEFINITION.findall(text)}
    if not defined:
        return text
    text = _LINK_DEFINITION.sub("", text)

    def words(match: re.Match) -> str:
        label = (match.group(2) if len(match.groups()) > 1 and match.group(2) else match.group(1)).strip().lower()
        return match.group(1) if label in defined else match.group(0)  # matrix[0][1] stays as written

    return _SHORTCUT_LINK.sub(words, _REFERENCE_LINK.sub(words, text))


_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")


def _cells(line: str) -> list[str]:
    row = line.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)]


def _tables_as_text(text: str) -> str:
    """A Markdown table as one readable line per row, "Price: Free $0; Team $8/user/month",
    so that snippets show no pipes and a row's values keep their column names for the model."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "|" in line and i + 1 < len(lines) and "-" in lines[i + 1] and _TABLE_DELIMITER.match(lines[i + 1]):
            headers = _cells(line)
            out.append(_sentence(", ".join(h for h in headers if h)))
            out.append("")  # the delimiter row
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                out.append(_row_as_text(headers, _cells(lines[i])))
                i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _row_as_text(headers: list[str], cells: list[str]) -> str:
    label, values = cells[0], cells[1:]
    if len(headers) <= 2:
        pairs = values
    else:
        pairs = [f"{header} {value}".strip() if value else "" for header, value in zip(headers[1:], values)]
        pairs += values[len(headers) - 1 :]
    pairs = [pair for pair in pairs if pair]
    row = f"{label}: {'; '.join(pairs)}" if label and pairs else label or "; ".join(pairs)
    return _sentence(row)


def _sentence(text: str) -> str:
    """End a table line with a full stop, so rows stay apart once joined into one line."""
    return text + "." if text and not re.search(r"[.!?:\u3002]$", text) else text


_NUMBER_MARKER = re.compile(r"^\s{0,3}\d+[.)]\s+")
_ANY_MARKER = re.compile(r"^\s{0,3}([-*+]|\d+[.)])\s+")
# What may start a list right after a paragraph line, as on GitHub and in the article page
# (article_html.blank_line_before_lists): a bullet or "1." ("To export:" then "1. Open Settings").
_LIST_AFTER_LINE = re.compile(r"^\s{0,3}([-*+]|1\.)\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")


def _strip_number_markers(text: str) -> str:
    """Drop "3. " where it numbers a list item, but keep it inside a hard-wrapped paragraph
    ("...released in version\n4. Then...", which Markdown renders as prose): a list starts
    after a blank line, or right after a line with a bullet or "1.", and goes on while its
    lines are not blank."""
    lines = text.split("\n")
    in_list, after_blank = False, True
    for i, line in enumerate(lines):
        if not line.strip():
            after_blank = True
            continue
        starts_item = bool(_ANY_MARKER.match(line)) and (after_blank or in_list or bool(_LIST_AFTER_LINE.match(line)))
        if starts_item and _NUMBER_MARKER.match(line):
            lines[i] = _NUMBER_MARKER.sub("", line, count=1)
        in_list = starts_item or (in_list and not after_blank) or (in_list and line[:1].isspace())
        after_blank = bool(_HEADING.match(line))  # a heading ends its block like a blank line
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def split_passages(title: str, body: str, passage_chars: int = 700) -> list[Passage]:
    """Split at headings and at a size bound; short bullet items also stand alone.

    Bullet items are often the phrasings customers use ("I can't log in"), so they are
    indexed on their own as well as inside their section. A list item that is only a link
    (without_link_items) is neither.
    """
    passages = [Passage("title", title, title)]
    body = without_link_items(body)  # "Related articles" lists: their words describe other articles
    body = _reference_links_as_text(body)  # definitions usually sit at the end, far from their links
    body = without_hidden_html(body)  # a <script> or comment may span paragraphs and headings
    sections: list[tuple[str, list[str]]] = [("", [])]
    in_code = False
    for line in body.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
        match = None if in_code else HEADING.match(line)
        if match:
            sections.append((match.group(2).strip(), []))
        else:
            sections[-1][1].append(line)
    for heading, lines in sections:
        context = heading if heading and heading != title else ""
        for content in _section_texts("\n".join(lines), passage_chars):
            text = f"{title}. {context}: {content}" if context else f"{title}. {content}"
            passages.append(Passage("section", text, content))
        for line in lines:
            item = _BULLET.match(line)
            if item:
                content = plain_text(item.group(1))
                if 12 <= len(content) <= 240:
                    passages.append(Passage("item", content, content))
    return passages


# A list item's marker (bullet or number, and a task marker), and the item's text after it.
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?(.*)$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# What a link is, to tell an item that is only links: inline and reference links (not images),
# autolinks, bare URLs and raw <a> tags. A shortcut "[label]" counts only when the label is defined.
_ITEM_LINKS = re.compile(
    r"(?<!!)\[[^\]]*\]\([^)]*\)|(?<!!)\[[^\]]+\]\[[^\]]*\]|<https?://[^>\s]*>|https?://\S+|www\.\S+"
    r"|<a\b[^>]*>.*?</a\s*>",
    re.I,
)
# Between links in an item: separators and emphasis, no words ("[A](a.md) · [B](b.md)", "**[A](a.md)**").
_ONLY_SEPARATORS = re.compile(r"[\s*_~,;:|/.\-\u00b7\u2022\u2013\u2014()\[\]]*")


def without_link_items(body: str) -> str:
    """body without its list items that are only a link (or links), as in a "Related articles" or
    "See also" list: their words are the linked articles' titles, so as search evidence they would make
    this article win the linked one's questions. An item with words of its own ("[Refunds](refunds.md)
    for annual plans"), or with a continuation line, stays; code blocks are never touched."""
    if "[" not in body and "<a" not in body.lower() and "http" not in body and "www." not in body:
        return body
    defined = {label.strip().lower() for label in _LINK_DEFINITION.findall(body)}
    lines = body.split("\n")
    drop: set[int] = set()
    fence = ""
    for i, line in enumerate(lines):
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            continue
        if opened:
            fence = opened.group(1)
            continue
        item = _LIST_ITEM.match(line)
        if not item or not _only_links(item.group(1), defined):
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if following.strip() and not _LIST_ITEM.match(following) and not HEADING.match(following):
            continue  # the item goes on below: text of its own
        drop.add(i)
    return "\n".join(line for i, line in enumerate(lines) if i not in drop) if drop else body


def _only_links(text: str, defined: set[str]) -> bool:
    found = False

    def gone(match: re.Match) -> str:
        nonlocal found
        if re.match(r"\[[^\]]*\]\(\s*#", match.group(0)):
            return match.group(0)  # "[Fees](#fees)", a table of contents: this article's own words
        found = True
        return " "

    rest = _ITEM_LINKS.sub(gone, text)
    if defined:  # "[Refunds]" alone is a link when "[refunds]: ..." is defined
        rest = _SHORTCUT_LINK.sub(lambda m: gone(m) if m.group(1).strip().lower() in defined else m.group(0), rest)
    return found and _ONLY_SEPARATORS.fullmatch(rest) is not None


def _section_texts(section: str, limit: int) -> list[str]:
    """A section's passages as plain text, none longer than `limit` characters.

    The model reads only a passage's first ~256 tokens, so a paragraph longer than the
    bound is cut (at sentences or list items, then words) rather than indexed whole.
    """
    texts = []
    for chunk in _chunks(section, limit):
        texts.extend(_one_line(piece) for piece in _split_long(_strip_markup(chunk), limit, _cuts_for(chunk)))
    return [text for text in texts if text]


def _chunks(text: str, limit: int) -> list[str]:
    """Group paragraphs into chunks of at most `limit` characters (a longer paragraph is its own chunk)."""
    chunks: list[str] = []
    current = ""
    for para in re.split(r"\n\s*\n", text):
        if not para.strip():
            continue
        if current and len(current) + 2 + len(para) > limit:
            chunks.append(current)
            current = para
        else:
            current = f"{current}\n\n{para}" if current else para
    if current:
        chunks.append(current)
    return chunks


# Where an over-long paragraph may be cut: after a sentence, after a line, before a space;
# past those, anywhere. Prose is cut at sentences first (hard-wrapped lines end
# mid-sentence); a list or table written without blank lines at its lines (items) first.
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])(?=\s)|(?<=[\u3002\uff01\uff1f])")
_LINE_END = re.compile(r"(?<=\n)")
_SPACE = re.compile(r"(?=\s)")
_PROSE_CUTS = (_SENTENCE_END, _LINE_END, _SPACE)
_LIST_CUTS = (_LINE_END, _SENTENCE_END, _SPACE)
_LIST_LINE = re.compile(r"^\s{0,3}([-*+]|\d+[.)]|\|)\s", re.M)


def _cuts_for(markdown_text: str) -> tuple[re.Pattern, ...]:
    """Lines first for a list or table (two or more item lines), sentences first for prose."""
    return _LIST_CUTS if len(_LIST_LINE.findall(markdown_text)) >= 2 else _PROSE_CUTS


def _split_long(text: str, limit: int, cuts: tuple[re.Pattern, ...] = _PROSE_CUTS) -> list[str]:
    """Cut text into pieces of at most `limit` characters, packing as much as fits between cuts."""
    limit = max(limit, 1)
    if len(text) <= limit:
        return [text] if text else []
    if not cuts:
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    pieces: list[str] = []
    current = ""
    for unit in cuts[0].split(text):
        if len(current) + len(unit) <= limit:
            current += unit
            continue
        pieces.append(current)
        current = unit
        if len(unit.strip()) > limit:
            pieces.extend(_split_long(unit.strip(), limit, cuts[1:]))
            current = ""
    pieces.append(current)
    return [piece.strip() for piece in pieces if piece.strip()]
