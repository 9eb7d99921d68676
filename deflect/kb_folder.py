"""The knowledge-base folder: which files are articles, how each is read (never past a symlink
that leaves the folder, never more than max_article_bytes), and load_kb, which reads them all,
cheaply when most are unchanged (parsing one file: deflect.articles)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat as stat_module
from collections.abc import Collection, Mapping
from pathlib import Path

from .articles import ARTICLE_SUFFIXES, Article, ArticleError, parse_article
from .front_matter import ignored_keys, ignored_keys_warning
from .front_matter import is_ignored_keys_warning as is_ignored_keys_warning  # for BuildReport.summary
from .locales import primary_language

log = logging.getLogger(__name__)

# The largest article file read (setting max_article_bytes; 0: no bound). Help-centre Markdown
# makes ~4.4 passages per KB (the sample KB's articles: 1 MB of them is 4,393 passages), so 500 KB
# is at most ~2,200 passages, some 20 s of embedding at the 9 ms a passage the report measured, and
# still 170 times the sample KB's longest article (2.9 KB) and several times a long raw-HTML export.
# A whole manual pasted into one file (4.3 MB: 12,007 passages, a 109 s reindex that then took over
# unrelated searches) is refused.
MAX_ARTICLE_BYTES = 500_000


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
    file (skipped) and those of the articles read (Article.warnings, drafts' too), each naming the file,
    then one per front-matter key deflect does not read, with the number of files that have it and the
    first of them (a converted help-centre export has a dozen such keys in every file, and a warning
    per file buried the skipped ones).

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
    ignored: dict[str, tuple[str, list[str]]] = {}  # a key not read, in lower case -> (as first written, files)
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
        for warning in article.warnings:
            keys = ignored_keys(warning)
            if keys is None:
                warnings.append(f"{rel}: {warning}")
            for key in keys or ():
                files = ignored.setdefault(key.lower(), (key, []))[1]
                if not files or files[-1] != rel:
                    files.append(rel)
        if not article.draft:
            read.append(article)
    held = {i: p for i, p in (id_holders or {}).items() if p in unreadable}
    if held_ids is not None:
        held_ids.update(held)
    articles, duplicates = _settle_ids(read, id_holders or {}, held)
    warnings.extend(duplicates + _shared_titles(articles))
    warnings.extend(_outside_folder_warning(root, real_root, folder) for folder in linked_folders)
    by_count = sorted(ignored.values(), key=lambda key_files: (-len(key_files[1]), key_files[0].lower()))
    warnings.extend(ignored_keys_warning(key, files) for key, files in by_count)
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
    """A warning per article titled as an earlier one of its language (case and spacing aside): a
    searcher would be offered two suggestions alike, and a Zendesk export has many ("Overview").
    Compared by language, as searches match locales: en and en-us articles are offered together."""
    first: dict[tuple[str, str], str] = {}
    found = []
    for article in articles:
        key = (primary_language(article.locale), " ".join(article.title.casefold().split()))
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


def _too_big(size: int, max_bytes: int) -> Refused:
    return Refused(
        f"{_size_text(size)}, over the {_size_text(max_bytes)} an article may have (setting "
        "max_article_bytes): split it into articles of their own"
    )


def read_article_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, not following a link: what was checked is what is read (a file swapped for
    a link meanwhile fails, and is skipped); never more than `max_bytes` (0: no bound), should it
    have grown since it was checked."""
    with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as handle:
        raw = handle.read(max_bytes + 1) if max_bytes else handle.read()
        if max_bytes and len(raw) > max_bytes:
            raise _too_big(os.fstat(handle.fileno()).st_size, max_bytes)
    return raw


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
        raise _too_big(stat.st_size, max_bytes)
    signature = file_signature(stat)
    if prior is not None and prior.file_stat == signature and max(stat.st_mtime_ns, stat.st_ctime_ns) < trusted_before:
        return prior
    raw = read_article_bytes(path, max_bytes)
    if prior is not None and prior.content_hash == hashlib.sha256(raw).hexdigest():
        return dataclasses.replace(prior, file_stat=signature)
    article = parse_article(raw, rel, default_locale, passage_chars)
    article.file_stat = signature
    return article
