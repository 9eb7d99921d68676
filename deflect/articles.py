"""Markdown knowledge base: one file read as an article, its id and url (the folder: deflect.kb_folder;
front matter: deflect.front_matter; passages: deflect.passages; HTML: deflect.article_html)."""

from __future__ import annotations

import hashlib
import html
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from .article_html import is_safe_url
from .article_html import render_html as render_html  # where it was before deflect.article_html
from .front_matter import FRONT_MATTER_KEYS as FRONT_MATTER_KEYS
from .front_matter import ArticleError, front_matter_tags, read_front_matter
from .gfm import FOOTNOTE_REFERENCE
from .locales import is_language_tag
from .passages import HEADING, Passage, code_aside, escapes_aside, restore_literal, split_passages, without_hidden_html
from .raw_html import tags_as_text

log = logging.getLogger(__name__)

# Files read as articles (compared in lower case); deflect.watcher reindexes when one changes.
ARTICLE_SUFFIXES = (".md", ".markdown")
MAX_ID_CHARS = 200  # also the longest item_id /api/events accepts
# Bump when parse_article would read the same file differently (passages, id, url): an
# index records it, and one built with another value is rebuilt, as its unchanged files'
# articles are reused without being parsed again. 2: ids checked, urls percent-encoded;
# 3: long paragraphs cut at passage_chars; 4: "4. " kept inside a hard-wrapped paragraph,
# tables read as one line per row ("Price: Free $0; Team $8"); 5: front-matter keys in any case,
# a title from a "# " heading without its inline markup, no hidden files; 6: a list right after
# a line ("To export:" then "1. Open Settings") loses its numbers, as it renders as a list;
# 7: reference-style links ("[the guide][g]" and "[g]: https://...") read as their words;
# 8: warnings about indexed files (a front-matter key given twice, a true/false tag) kept in the
# index, "tags: billing, refunds" read as two tags, GitHub's Markdown read as shown: task markers
# ("- [ ] ") and footnote markers ("[^1]") dropped, URLs (also "<https://...>") kept as written;
# 9: raw HTML and entities read as the page shows them: entities decoded ("&gt;" is ">", "&nbsp;" a
# space), script, style and comments gone, inline tags leave no space ("<b>Invite</b>." is "Invite."),
# an <img> reads as its alt text, code spans read exactly as written ("`parent_key`", "`&amp;`");
# a title from the file name starts with a capital ("reset-password" is "Reset password");
# 10: a list item that is only a link ("- [Lost your 2FA device?](lost-2fa-device.md)") is no search
# evidence for the linking article, and a front-matter key deflect does not read is a warning kept
# with the article (listed by every build until fixed);
# 11: a title from a heading read as the page shows it (raw tags gone, entities decoded: "<span>Hours</span>"
# and "Orders &amp; returns" are "Hours" and "Orders & returns"), or from a raw <h1> when there is no
# "# " heading; backslash escapes read as their character ("1\. Go to" is "1. Go to"); warnings about
# front-matter keys not read split into a not-public one, a typo one and the rest (counted over the KB).
PARSER_VERSION = 11


@dataclass
class Article:
    id: str
    title: str
    body: str
    path: str
    locale: str = "en"
    tags: list[str] = field(default_factory=list)
    url: str = ""
    draft: bool = False
    content_hash: str = ""
    passages: list[Passage] = field(default_factory=list)
    # The file's stat when it was read (file_signature), so that the next scan can reuse it
    # without reading it again (load_kb's `known`); empty when unknown.
    file_stat: tuple[int, ...] = ()
    # What a writer should fix although the file is indexed (a key given twice), without the file's
    # name: load_kb reports them with the skip warnings, and the index keeps them for unchanged files.
    warnings: tuple[str, ...] = ()

    def to_summary(self) -> dict:
        return {"id": self.id, "title": self.title, "url": self.url, "locale": self.locale, "tags": self.tags}


def parse_article(
    raw: bytes, rel_path: str, default_locale: str = "en", passage_chars: int = 700
) -> Article:
    """Parse one Markdown file; raise ArticleError with a readable reason when it is malformed."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise ArticleError("empty file")
    meta, body, warnings = read_front_matter(text, rel_path)
    if not body.strip():
        raise ArticleError("no content after the front matter")
    default_id = _without_suffix(rel_path)
    article_id = _front_matter_id(meta) if "id" in meta else default_id.strip().strip("/")
    title = meta.get("title")
    if isinstance(title, (list, dict)):
        raise ArticleError("title must be text, not a list or mapping")
    if not title:
        title = _first_h1(body)  # "# Export to **CSV**" is titled "Export to CSV"
    title = str(title or _title_from_name(Path(default_id).name)).strip()
    tags = front_matter_tags(meta.get("tags"), warnings)
    url = str(meta.get("url") or article_url(article_id))
    if not is_safe_url(url):  # pages neutralise it, but API clients may render it as a link
        log.warning("%s: url %.80r is not http(s), mailto or relative; using %s", rel_path, url, article_url(article_id))
        url = article_url(article_id)
    draft = meta.get("draft", False)
    if not isinstance(draft, bool):
        raise ArticleError("draft must be true or false")
    locale = meta.get("locale") or default_locale
    if not isinstance(locale, str) or not is_language_tag(locale):
        # Queries with a locale would never find it; said now rather than found out later.
        raise ArticleError(f"locale must be a language tag such as en or ko-KR, not {str(locale)[:40]!r}")
    article = Article(
        id=article_id,
        title=title,
        body=body,
        path=rel_path,
        locale=locale.replace("_", "-"),  # en_US (POSIX style) is served as en-US, as queries are read
        tags=tags,
        url=url,
        draft=draft,
        content_hash=hashlib.sha256(raw).hexdigest(),
        warnings=tuple(warnings),
    )
    article.passages = split_passages(title, body, passage_chars)
    return article


def _title_from_name(name: str) -> str:
    """A title from a file name, as a writer would type it: "reset-password" is "Reset password";
    a first word with capitals of its own ("iOS-setup", "SSO_login") is kept as it is."""
    words = name.replace("-", " ").replace("_", " ").strip()
    first = words.split(" ", 1)[0]
    return words[:1].upper() + words[1:] if first.islower() else words


def _front_matter_id(meta: dict) -> str:
    """The front matter's id, checked (see id_problem); an unusable one skips the file."""
    raw = meta["id"]
    if raw is None or (isinstance(raw, str) and not raw.strip().strip("/")):
        raise ArticleError("id is empty (leave it out to use the file's path)")
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ArticleError("id must be a string")
    article_id = str(raw).strip().strip("/")
    problem = id_problem(article_id)
    if problem:
        raise ArticleError(f"id {str(raw)[:80]!r} {problem}")
    return article_id


def _without_suffix(rel_path: str) -> str:
    """The default id: the relative path without its .md or .markdown suffix."""
    lower = rel_path.lower()
    suffix = next((s for s in ARTICLE_SUFFIXES if lower.endswith(s)), "")
    return rel_path[: len(rel_path) - len(suffix)]


def id_problem(article_id: str) -> str | None:
    """Why a front-matter id cannot be used, or None.

    An id is a URL path (/articles/<id>, /api/articles/<id>, each segment percent-encoded)
    and an item_id in events. Any character a file name may hold is fine (ids taken from
    file names are not restricted either, and benchmark KBs use ids such as
    "reverted-card-payment?"); what is refused would resolve to another path or could not
    be told apart when read: empty, "." and ".." segments, control characters, backslashes,
    and spaces at a segment's ends.
    """
    if not article_id:
        return "is empty"
    if len(article_id) > MAX_ID_CHARS:
        return f"is longer than {MAX_ID_CHARS} characters"
    for segment in article_id.split("/"):
        if segment in ("", ".", ".."):
            return f"has an empty, '.' or '..' path segment ({segment!r})"
        if segment != segment.strip():
            return f"has a path segment that starts or ends with a space ({segment!r})"
        bad = next((c for c in segment if c == "\\" or unicodedata.category(c)[0] == "C"), None)
        if bad is not None:
            return f"contains {bad!r} (no control characters or backslashes)"
    return None


def article_url(article_id: str) -> str:
    """deflect's own page for an article: /articles/<id> with each path segment percent-encoded."""
    return "/articles/" + "/".join(quote(segment, safe="") for segment in article_id.split("/"))


_INLINE_MARKUP = (
    (re.compile(r"!?\[([^\]]*)\]\([^)]*\)"), r"\1"),  # [text](url), ![alt](src)
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # **strong**, __strong__
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *emphasis*
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),  # _emphasis_, not snake_case
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # ~~strikethrough~~
    (FOOTNOTE_REFERENCE, ""),  # a footnote's marker, [^1]
)


def _plain_text(markdown_text: str) -> str:
    """A heading's inline Markdown as the text the page shows in it: emphasis and links without
    their markup, raw tags gone ("<span style=...>Hours</span>" is "Hours"), entities decoded
    ("&amp;" is "&"), backslash escapes as their character; code spans exactly as written.
    Empty when nothing shows (a heading that is only an image without alt text)."""
    text, literal = code_aside(without_hidden_html(markdown_text))
    text = escapes_aside(text, literal)
    for pattern, replacement in _INLINE_MARKUP:
        text = pattern.sub(replacement, text)
    return " ".join(restore_literal(_entities_decoded(tags_as_text(text)), literal).split())


def _html_text(raw_html: str) -> str:
    """Raw HTML's text as the page shows it: tags gone, entities decoded, on one line."""
    return " ".join(_entities_decoded(tags_as_text(without_hidden_html(raw_html))).split())


# An entity as Markdown and browsers read one in a heading: with its ";" ("Ads &notifications" stays).
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def _entities_decoded(text: str) -> str:
    return _ENTITY.sub(lambda entity: html.unescape(entity.group(0)), text).replace("\xa0", " ")


# A raw <h1> on a line of its own (Zendesk's exported bodies), read as the title when no "# " heading is.
_RAW_H1 = re.compile(r"^ {0,3}<h1(?:\s[^>]*)?>(.*?)</h1\s*>", re.I)


def _first_h1(body: str) -> str | None:
    """The first "# " heading outside fenced code blocks, as plain text; else the first raw <h1>'s text."""
    in_code = False
    raw_h1 = None
    for line in body.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
        elif not in_code and (match := HEADING.match(line)) and len(match.group(1)) == 1:
            return _plain_text(match.group(2))
        elif not in_code and raw_h1 is None and (match := _RAW_H1.match(line)):
            raw_h1 = _html_text(match.group(1))
    return raw_h1


# A file changed this close to (or after) the scan that recorded its stat may have changed
# again within the same timestamp tick without changing its size, so its stat alone is not
# trusted: it is read and hashed (git's "racy clean" rule).
