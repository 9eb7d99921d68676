"""Links and images in articles: a writer's relative path as an address a reader can open.

Writers link articles the way files link on GitHub: `[Refunds](../billing/refunds.md#fees)`,
`![Billing page](images/billing.png)`, relative to the linking file's own folder. Where such a
link leads depends on other files (the target's id, its `url`), so it is looked up in the live
index when an article is shown (LinkTargets.rewriter), never stored with the article; an index
build only checks the links to warn about those that lead nowhere (link_problems).
"""

from __future__ import annotations

import html
import logging
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from .article_html import Rewrite
from .articles import ARTICLE_SUFFIXES, Article
from .raw_html import raw_attribute

log = logging.getLogger(__name__)

# Images in kb_dir are served here (deflect.web.pages); a relative image src is rewritten to it.
IMAGE_ROUTE = "/kb-images/"
# The files served from kb_dir, by suffix (compared in lower case), with the type they are served as.
# SVG is served with a Content-Security-Policy that lets it run nothing (deflect.web.pages).
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Target:
    """Where a relative reference leads: a normalised path relative to kb_dir, and its #fragment."""

    path: str
    fragment: str

    @property
    def inside(self) -> bool:
        """False for a path that leaves kb_dir ("../../etc/x.md"), or that no file can have."""
        path = self.path
        return not (path == ".." or path.startswith(("../", "/")) or "\\" in path or "\x00" in path)


def relative_target(article_path: str, reference: str) -> Target | None:
    """The file a reference in the article at `article_path` (relative to kb_dir) points to, or None
    when it is not a relative file reference: an absolute URL, mailto:, a /site/path, a #fragment alone."""
    try:
        parts = urlsplit(reference.strip())
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
        return None
    path = unquote(parts.path)
    return Target(posixpath.normpath(posixpath.join(posixpath.dirname(article_path), path)), parts.fragment)


def is_article_path(path: str) -> bool:
    return path.lower().endswith(ARTICLE_SUFFIXES)


def image_type(path: str) -> str | None:
    """The Content-Type an image file is served with, or None if deflect does not serve that kind of file."""
    return IMAGE_TYPES.get(posixpath.splitext(path)[1].lower())


def image_url(path: str) -> str:
    """The URL of an image file (a path relative to kb_dir), each segment percent-encoded."""
    return IMAGE_ROUTE + "/".join(quote(segment, safe="") for segment in path.split("/"))


def kb_image(kb_dir: str | Path, name: str) -> tuple[Path, str] | None:
    """The image file `name` (relative to kb_dir, as asked for in a URL) and its type, or None.

    None for anything but a regular image file inside kb_dir: other suffixes, hidden files and
    folders, "..", empty segments, backslashes, absolute paths, and symlinks whose target is
    outside kb_dir or hidden.
    """
    kind = image_type(name)
    segments = name.split("/")
    if kind is None or "\\" in name or "\x00" in name or any(s in ("", ".", "..") or s.startswith(".") for s in segments):
        return None
    try:
        root = Path(kb_dir).resolve(strict=True)
        target = root.joinpath(*segments).resolve(strict=True)
        inside = target.relative_to(root)
    except (OSError, ValueError, RuntimeError):  # missing, a symlink loop, outside kb_dir
        return None
    if any(part.startswith(".") for part in inside.parts) or image_type(target.name) is None or not target.is_file():
        return None
    return target, kind


def shown_images(articles: Iterable[Mapping], bodies: Mapping[str, str]) -> frozenset[str]:
    """The image paths (relative to kb_dir) that the served articles show or link to.

    The only files /kb-images/ serves: an image beside a draft, or one that no published article
    uses yet, stays private until an article that shows it is indexed.
    """
    shown = set()
    for row in articles:
        for is_image, reference in references(bodies.get(row["id"], "")):
            target = relative_target(row.get("path", ""), reference)
            if target is not None and target.inside and (is_image or image_type(target.path)):
                shown.add(target.path)
    return frozenset(shown)


class LinkTargets:
    """What relative links lead to in one version of the index: each article file's url by path, and
    (given kb_dir) whether an image is there to show, checked when shown as /kb-images/ checks it."""

    def __init__(self, rows: Iterable[Mapping], kb_dir: str | Path | None = None):
        self.urls = {row["path"]: row["url"] for row in rows if row.get("path")}
        self.kb_dir = kb_dir

    def rewriter(self, article_path: str) -> Rewrite:
        """deflect.article_html's `rewrite` for the article at `article_path`."""

        def rewrite(attribute: str, value: str) -> str | None:
            target = relative_target(article_path, value)
            if target is None:
                return value
            if attribute == "src" or image_type(target.path):
                # One that leads nowhere (warned about by link_problems) is its alt text, or its words.
                shown = target.inside and (self.kb_dir is None or kb_image(self.kb_dir, target.path) is not None)
                return image_url(target.path) if shown else None
            if not is_article_path(target.path):
                return value  # a relative link to something else: left as written
            url = self.urls.get(target.path) if target.inside else None
            if url is None:
                return None
            return f"{url}#{target.fragment}" if target.fragment and "#" not in url else url

        return rewrite


_FENCED_CODE = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?^ {0,3}\1[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)[^\n]+?\1")
# Link text may be hard-wrapped over lines; its length is bounded so that a stray "[" costs little.
_INLINE = re.compile(r"(!?)\[[^\]]{0,1000}\]\(\s*<?([^)\s>]+)")
_DEFINITION = re.compile(r"^ {0,3}\[(?!\^)[^\]\n]+\]:[ \t]*<?([^\s>]+)", re.M)  # not a footnote's [^1]:
# <img src="..."> and <a href="..."> in raw HTML, which renders (deflect.raw_html) and resolves as Markdown does.
_RAW = re.compile(r"<(img|a)(?=[\s/>])([^<>]*)>", re.I)


def references(body: str) -> list[tuple[bool, str]]:
    """(is an image, target) of each inline link, image, link definition and raw <img>/<a> outside code.

    A pattern match, not a Markdown parse: an index build checks every article's links, and
    parsing 10,000 articles would take longer than the rest of a one-file reindex.
    """
    if "](" not in body and "]:" not in body and "<" not in body:
        return []
    text = _FENCED_CODE.sub("", body) if "```" in body or "~~~" in body else body
    text = _CODE_SPAN.sub("", text) if "`" in text else text
    found = [(bang == "!", target) for bang, target in _INLINE.findall(text)]
    found += [(False, target) for target in _DEFINITION.findall(text)]
    if "<" in text:  # a browser (and the sanitiser) reads the attribute with its entities decoded
        for tag, attributes in _RAW.findall(text):
            target = raw_attribute(attributes, "src" if tag.lower() == "img" else "href")
            if target:
                found.append((tag.lower() == "img", html.unescape(target)))
    return found


# An article's links worth checking: (is an image, the reference as written, its target).
Checked = tuple[tuple[bool, str, Target], ...]


def _checked(article: Article) -> Checked:
    """The relative links to articles and images of one article (what depends on its path and text only)."""
    checked = []
    for is_image, reference in dict.fromkeys(references(article.body)):
        target = relative_target(article.path, reference)
        if target is not None and (is_image or image_type(target.path) or is_article_path(target.path)):
            checked.append((is_image, reference, target))
    return tuple(checked)


def link_problems(
    articles: Sequence[Article], kb_dir: str | Path, known: Mapping[tuple[str, str], Checked] | None = None,
    checked: dict[tuple[str, str], Checked] | None = None,
) -> list[str]:  # fmt: skip
    """One warning per relative link or image that leads nowhere, naming the file and the link.

    `known` ((path, content hash) -> links, from the previous build's `checked`) spares reading
    unchanged articles again: on a 10,000-article KB that reading takes most of a second.
    """
    known = known or {}
    paths = {article.path for article in articles}
    images: dict[str, bool] = {}
    problems: list[str] = []
    for article in articles:
        key = (article.path, article.content_hash)
        links = known.get(key) if article.content_hash else None
        if links is None:
            links = _checked(article)
        if checked is not None:
            checked[key] = links
        for is_image, reference, target in links:
            what = f"{article.path}: {'image' if is_image else 'link'} {reference!r}"
            shown = "its alt text is shown instead" if is_image else "it is shown as plain text"
            if not target.inside:
                problems.append(f"{what} leads outside the knowledge-base folder; {shown}")
            elif is_image or image_type(target.path):
                if target.path not in images:
                    images[target.path] = kb_image(kb_dir, target.path) is not None
                if not images[target.path]:
                    kinds = ", ".join(suffix[1:] for suffix in IMAGE_TYPES)
                    problems.append(f"{what}: {target.path} is missing, hidden or not an image deflect serves "
                                    f"({kinds}); {shown}")
            elif target.path not in paths:
                problems.append(f"{what} leads to no article ({target.path} is not in the knowledge base); {shown}")
    return problems


def log_new(problems: list[str], reported: Iterable[str]) -> None:
    """Log the problems not logged for the previous version, as load_kb does with skipped files."""
    already = set(reported)
    for problem in problems:
        if problem not in already:
            log.warning(problem)
