"""Markdown knowledge base: files, articles, ids (front matter: deflect.front_matter; passages: deflect.passages;
HTML: deflect.article_html)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import stat as stat_module
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from .article_html import is_safe_url
from .article_html import render_html as render_html  # where it was before deflect.article_html
from .front_matter import FRONT_MATTER_KEYS as FRONT_MATTER_KEYS
from .front_matter import ArticleError, front_matter_tags, read_front_matter
from .gfm import FOOTNOTE_REFERENCE
from .locales import is_language_tag
from .passages import HEADING, Passage, split_passages

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
# with the article (listed by every build until fixed).
PARSER_VERSION = 10
# The largest article file read (setting max_article_bytes; 0: no bound). Help-centre Markdown
# makes ~4.4 passages per KB (the sample KB's articles: 1 MB of them is 4,393 passages), so 500 KB
# is at most ~2,200 passages, some 20 s of embedding at the 9 ms a passage the report measured, and
# still 170 times the sample KB's longest article (2.9 KB) and several times a long raw-HTML export.
# A whole manual pasted into one file (4.3 MB: 12,007 passages, a 109 s reindex that then took over
# unrelated searches) is refused.
MAX_ARTICLE_BYTES = 500_000


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
        heading = _first_h1(body)
        title = _plain_text(heading) if heading else None  # "# Export to **CSV**" is titled "Export to CSV"
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
    (re.compile(r"(`+)(.+?)\1"), r"\2"),  # `code`
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # **strong**, __strong__
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *emphasis*
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),  # _emphasis_, not snake_case
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # ~~strikethrough~~
    (FOOTNOTE_REFERENCE, ""),  # a footnote's marker, [^1]
)


def _plain_text(markdown_text: str) -> str:
    """Inline Markdown as the text a reader sees: emphasis, code and links without their markup
    (anything else, "<" and "&" included, is kept as written: the pages escape it)."""
    text = markdown_text
    for pattern, replacement in _INLINE_MARKUP:
        text = pattern.sub(replacement, text)
    return text.strip() or markdown_text


def _first_h1(body: str) -> str | None:
    """The first "# " heading outside fenced code blocks."""
    in_code = False
    for line in body.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
        elif not in_code and (match := HEADING.match(line)) and len(match.group(1)) == 1:
            return match.group(2)
    return None


# A file changed this close to (or after) the scan that recorded its stat may have changed
# again within the same timestamp tick without changing its size, so its stat alone is not
# trusted: it is read and hashed (git's "racy clean" rule).
RACY_NS = 2_000_000_000


def file_signature(stat: os.stat_result) -> tuple[int, int, int, int]:
    """Size, mtime, ctime (ns) and inode: what must all stay equal for a file to count as unchanged.

    ctime cannot be set back by tools that restore mtimes, and a file replaced by a rename
    gets a new inode.
    """
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def load_kb(
    kb_dir: str | Path,
    default_locale: str = "en",
    passage_chars: int = 700,
    known: Mapping[str, Article] | None = None,
    known_scanned_ns: int = 0,
    id_holders: Mapping[str, str] | None = None,
    reported: Collection[str] = (),
    held_ids: dict[str, str] | None = None,
    max_article_bytes: int = MAX_ARTICLE_BYTES,
) -> tuple[list[Article], list[str]]:
    """Read every article file under kb_dir; return the good articles and the warnings: one per bad
    file (skipped) and those of the articles read (Article.warnings, drafts' too), each naming the file.

    `known` (relative path -> Article, e.g. from the previous index, parsed with the same
    settings) makes an unchanged KB cheap to rescan: a file whose file_signature equals the
    known article's is not read at all (unless it changed within RACY_NS of
    `known_scanned_ns`, when that stat was taken), and one whose content hash equals it is
    read but not parsed again.

    Two files with one id: the file that held the id before (`id_holders`, id -> relative
    path, from the previous index) keeps it, so a new file cannot take over a published
    article's id and URL; only when neither held it does path order decide. A holder that is
    still there but cannot be read now (a half-saved edit, a typo in its front matter) keeps the
    id too: no other file takes it, and `held_ids`, if given, gets those ids (id -> holder path)
    for the caller to pass on as holders next time.

    A known file that has become malformed (a typo in its front matter, a half-saved edit) keeps
    its known, last good version, with a warning saying so (KEPT_MARK): the article stays published
    until the file is fixed or deleted. Without a known version (a new file, a full rebuild) it is
    skipped, as is a file that cannot be opened (OSError) or is Refused.

    Files never read: a file over `max_article_bytes` (0: no bound), and a symlink that leads
    outside kb_dir or into a hidden file or folder (a KB is often a shared repository, and a
    committed `notes.md -> /etc/passwd` or `-> ../.env` must not be published); a symlinked folder
    is not followed, and one that leads outside kb_dir is named in a warning.

    Every warning is returned, but only those not in `reported` (the previous scan's) are
    logged, so a broken file that stays broken is not logged again on every reindex.
    """
    root = Path(kb_dir)
    if not root.is_dir():
        return [], [f"{root}: knowledge-base folder not found"]
    known = known or {}
    trusted_before = known_scanned_ns - RACY_NS
    prefix = str(root) + "/"
    real_root = os.path.realpath(root)
    read: list[Article] = []
    warnings: list[str] = []
    unreadable: set[str] = set()
    linked_folders: list[str] = []
    for path in article_files(root, linked_folders):
        name = str(path)
        rel = name[len(prefix) :] if name.startswith(prefix) else path.relative_to(root).as_posix()
        prior = known.get(rel)
        try:
            article = _read_article(
                path, rel, default_locale, passage_chars, prior, trusted_before, real_root, max_article_bytes
            )
        except ArticleError as exc:
            if prior is None or isinstance(exc, Refused):
                warnings.append(f"{rel}: skipped: {exc}")
                unreadable.add(rel)
                continue
            # Published before and now unreadable: its last good version stays served. Its old
            # file_stat makes the next scan read the file again, so a fix is picked up.
            warnings.append(f"{rel}: {KEPT_MARK}: {exc}; {KEPT_NOTE}")
            article = prior
        except OSError as exc:
            warnings.append(f"{rel}: skipped: {exc}")
            unreadable.add(rel)
            continue
        warnings.extend(f"{rel}: {warning}" for warning in article.warnings)
        if not article.draft:
            read.append(article)
    held = {i: p for i, p in (id_holders or {}).items() if p in unreadable}
    if held_ids is not None:
        held_ids.update(held)
    articles, duplicates = _settle_ids(read, id_holders or {}, held)
    warnings.extend(duplicates + _shared_titles(articles))
    warnings.extend(_outside_folder_warning(root, real_root, folder) for folder in linked_folders)
    already = set(reported)
    for warning in warnings:
        if warning not in already:
            log.warning(warning)
    return articles, warnings


def is_article_file(name: str) -> bool:
    """Whether a file name is a KB article (.md or .markdown, any case, not hidden); the KB watcher
    uses it too. Hidden files are editors' and tools' own: lock files (.#refunds.md), scratch notes."""
    base = os.path.basename(name)
    return base.lower().endswith(ARTICLE_SUFFIXES) and not base.startswith(".")


def article_files(root: Path, linked_outside: list[str] | None = None) -> list[Path]:
    """The article files under root, in path order (compared as tuples of parts).

    os.walk already knows which entries are files, so a 10,000-article KB costs no extra
    stat per file (rglob plus is_dir took 0.3 s of a 1 s one-article re-index). Symlinked folders
    are not followed; `linked_outside`, if given, gets the paths of those that lead outside root.
    """
    entries: list[tuple[tuple[str, ...], str]] = []
    real_root = os.path.realpath(root) if linked_outside is not None else ""
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # .git, .trash (Obsidian's deleted notes)...
        if linked_outside is not None:
            linked_outside.extend(
                os.path.join(folder, d)
                for d in dirs
                if os.path.islink(os.path.join(folder, d)) and _leaves(os.path.realpath(os.path.join(folder, d)), real_root)
            )
        parts = Path(folder).parts  # once per folder, not per file
        entries.extend((parts + (name,), os.path.join(folder, name)) for name in names if is_article_file(name))
    entries.sort(key=lambda entry: entry[0])
    return [Path(path) for _, path in entries]


def _settle_ids(
    articles: list[Article], holders: Mapping[str, str], held: Mapping[str, str]
) -> tuple[list[Article], list[str]]:
    """Keep one article per id: the one at the id's previous holder's path, else the first in path
    order; none for an id `held` by an unreadable holder."""
    owner = {a.id: a.path for a in articles if holders.get(a.id) == a.path} | dict(held)
    for article in articles:
        owner.setdefault(article.id, article.path)
    kept = [a for a in articles if owner[a.id] == a.path]
    skipped = [
        f"{a.path}: skipped: id {a.id!r} already used by {owner[a.id]}"
        + (" (skipped itself until it is fixed)" if a.id in held else "")
        for a in articles
        if owner[a.id] != a.path
    ]
    return kept, skipped


def _shared_titles(articles: list[Article]) -> list[str]:
    """A warning per article titled as an earlier one of its locale (case and spacing aside): a
    searcher would be offered two suggestions alike, and a Zendesk export has many ("Overview")."""
    first: dict[tuple[str, str], str] = {}
    found = []
    for article in articles:
        key = (article.locale.lower(), " ".join(article.title.casefold().split()))
        if key in first:
            found.append(f"{article.path}: title {article.title!r} is also that of {first[key]}; suggestions would show two alike")
        else:
            first[key] = article.path
    return found


# How a warning starts when a published file has become unreadable and its last good version is kept.
KEPT_MARK = "not updated"
KEPT_NOTE = "its last good version stays published until the file is fixed (or deleted)"


class Refused(ArticleError):
    """A file not read at all (a symlink that leads outside kb_dir or into a hidden file, or one over
    max_article_bytes): skipped, even when a version of it was published before."""


def _leaves(target: str, real_root: str) -> bool:
    """Whether a resolved path is outside real_root, or inside it under a hidden file or folder."""
    if target != real_root and not target.startswith(real_root.rstrip("/") + "/"):
        return True
    return any(part.startswith(".") for part in Path(os.path.relpath(target, real_root)).parts)


def _outside_folder_warning(root: Path, real_root: str, folder: str) -> str:
    rel = Path(folder).relative_to(root).as_posix()
    target = os.path.realpath(folder)
    return f"{rel}/: skipped: a symlinked folder that leads outside the KB folder or to a hidden one (to {target}): no file in it is read"


def _size_text(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB ({size:,} bytes)"
    return f"{size / 1000:.0f} KB ({size:,} bytes)" if size >= 10_000 else f"{size:,} bytes"


def _read_article(
    path: Path,
    rel: str,
    default_locale: str,
    passage_chars: int,
    prior: Article | None,
    trusted_before: int,
    real_root: str = "",
    max_bytes: int = MAX_ARTICLE_BYTES,
) -> Article:
    """One file as an Article: `prior` itself if the file is unchanged, else read (parsed if its hash differs).

    A symlink is read only if it leads to a file inside `real_root` (kb_dir resolved), not a hidden
    one; a file over `max_bytes` (0: no bound) is not read at all."""
    stat = os.lstat(path)  # what a regular file's stat is anyway: no extra system call for most files
    if stat_module.S_ISLNK(stat.st_mode):
        stat = os.stat(path)  # a dangling link or a loop: OSError, skipped as before
        target = os.path.realpath(path)
        if real_root and _leaves(target, real_root):
            raise Refused(f"a symlink that leads outside the KB folder or to a hidden file (to {target}); it is never published")
        path = Path(target)  # read what was checked, not the link again
    if max_bytes and stat.st_size > max_bytes:
        raise Refused(
            f"{_size_text(stat.st_size)}, over the {_size_text(max_bytes)} an article may have (setting "
            "max_article_bytes): split it into articles of their own"
        )
    signature = file_signature(stat)
    if prior is not None and prior.file_stat == signature and max(stat.st_mtime_ns, stat.st_ctime_ns) < trusted_before:
        return prior
    raw = path.read_bytes()
    if prior is not None and prior.content_hash == hashlib.sha256(raw).hexdigest():
        return dataclasses.replace(prior, file_stat=signature)
    article = parse_article(raw, rel, default_locale, passage_chars)
    article.file_stat = signature
    return article
