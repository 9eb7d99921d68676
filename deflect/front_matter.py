"""An article's YAML front matter (DESIGN section 2): the keys deflect reads, and what a writer is told.

A file that cannot be read is an ArticleError (the KB skips it with a warning naming the file);
a mistake that leaves it readable (a key given twice, a true/false tag) is a warning returned
with the article, which load_kb reports the same way.
"""

from __future__ import annotations

import ast
import re

import yaml

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?:(.*?)\r?\n)?---[ \t]*(?:\r?\n|\Z)", re.S)  # may be empty
# The front matter deflect reads (DESIGN section 2). Keys are matched in any case ("Draft:"); any
# other key is ignored with a warning naming the file (a mistyped "draf:" would publish a draft).
FRONT_MATTER_KEYS = ("id", "title", "locale", "tags", "url", "draft")


class ArticleError(ValueError):
    """A file that cannot be read as an article; the KB skips it with a warning."""


def read_front_matter(text: str, rel_path: str = "") -> tuple[dict, str, list[str]]:
    """The front matter's keys deflect reads (in lower case), the body after it, and warnings
    about the front matter (without the file's name: load_kb adds it and logs them once); ArticleError
    when it cannot be read. `rel_path` is no longer needed (a key not read was logged here once)."""
    if not text.startswith("---"):
        return {}, text, []
    match = _FRONT_MATTER.match(text)
    if not match:
        raise ArticleError("front matter opened with --- but never closed")
    try:
        loaded, keys = _load_front_matter(match.group(1) or "")
    except yaml.YAMLError as exc:
        raise ArticleError(f"bad YAML front matter, {_yaml_problem(exc)}") from None
    except RecursionError:  # PyYAML recurses once per nesting level
        raise ArticleError("YAML front matter is nested too deeply") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ArticleError("front matter is not a mapping of keys to values")
    known, unknown = _known_keys(loaded or {})
    return known, text[match.end() :], unknown + _repeated_keys(keys)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's reason with line numbers of the file (its marks count from the front matter's
    first line, the one after the opening ---), so a writer can find the mistake."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if not problem or mark is None:
        return str(exc).splitlines()[0]
    where = f"line {mark.line + 2}: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark.line != mark.line:
        where += f" ({context} opened on line {context_mark.line + 2})"
    return where


def _load_front_matter(text: str) -> tuple[object, list[tuple[str, int]]]:
    """The front matter as safe_load reads it, and its top-level keys with their lines in the file.

    YAML lets the last of two equal keys win without a word; the keys as written let
    _repeated_keys say so (a second `title:` pasted below the first is easy to miss).
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        loaded = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    keys = []
    if isinstance(node, yaml.MappingNode):
        keys = [(str(k.value), k.start_mark.line + 2) for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
    return loaded, keys


def _repeated_keys(keys: list[tuple[str, int]]) -> list[str]:
    """A warning for each front-matter key deflect reads that is given more than once (in any case,
    as keys are read); the last one is used, as YAML does."""
    lines: dict[str, list[int]] = {}
    for key, line in keys:
        if key.lower() in FRONT_MATTER_KEYS:
            lines.setdefault(key.lower(), []).append(line)
    return [
        f"front matter key {key!r} given {len(at)} times (lines {', '.join(map(str, at))}); the last one is used"
        for key, at in lines.items()
        if len(at) > 1
    ]


def front_matter_tags(value: object, warnings: list[str]) -> list[str]:
    """The front matter's tags as text: a list, or one string of comma-separated tags
    ("billing, refunds", as writers type them elsewhere); empty ones are dropped.

    true/false is left out with a warning rather than shown as "True": YAML reads an unquoted
    yes, no, on, off, true or false so, and what was typed cannot be told any more.
    """
    if not value and not isinstance(value, bool):  # none, "", [], {} (and 0, as before)
        return []
    if isinstance(value, str):
        value = value.split(",")
    elif not isinstance(value, list):
        value = [value]
    if any(isinstance(tag, (list, dict)) for tag in value):
        raise ArticleError("tags must be a list of words")
    if any(isinstance(tag, bool) for tag in value):
        warnings.append(
            "tags: true or false is not a tag and is left out (YAML reads an unquoted yes, no, on, off, "
            'true or false so; quote a tag such as "on")'
        )
    tags = (str(tag).strip() for tag in value if tag is not None and not isinstance(tag, bool))
    return [tag for tag in tags if tag]


def _known_keys(meta: dict) -> tuple[dict, list[str]]:
    """The front matter with its keys in lower case, and warnings about the keys deflect does not read.

    The warnings are returned with the article (not only logged once), so that `deflect index` and
    `POST /api/reindex` list them until fixed: a key that marks the article not public where it came
    from (a help-centre export's `status: notpublished`) and a likely typo ("draf: true") each get one
    of their own, since the file is published all the same; the other keys share one (ignored_keys),
    which load_kb counts over the whole KB rather than repeating for every file of an export.
    """
    known = {str(key).lower(): value for key, value in meta.items() if str(key).lower() in FRONT_MATTER_KEYS}
    # A draft is not published anyway; a key that also marks it unpublished needs no word.
    hidden = [(key, value) for key, value in meta.items() if _marks_not_public(str(key).lower(), value)]
    hidden = hidden if known.get("draft") is not True else []
    warnings = [
        f"published by deflect although {str(key)[:40]}: {_as_written(value)[:40]} marks it not public in the source; "
        "add draft: true to hold it back"
        for key, value in hidden
    ]
    said = {key for key, _ in hidden}
    unknown = [str(key)[:40] for key in meta if str(key).lower() not in FRONT_MATTER_KEYS and key not in said]
    typos = {key: close for key in unknown if (close := _typo_of(key.lower()))}
    warnings += [f"front matter key {key!r} ignored: a typo of {close!r}?" for key, close in typos.items()]
    ignored = [key for key in unknown if key not in typos]
    if ignored:
        warnings.append(
            f"front matter key{'s' if len(ignored) > 1 else ''} {', '.join(map(repr, ignored))} {_IGNORED}"
            f"{', '.join(FRONT_MATTER_KEYS)}"
        )
    return known, warnings


_IGNORED = "ignored; deflect reads "
_IGNORED_WARNING = re.compile(r"\Afront matter keys? (.+?) " + re.escape(_IGNORED))


def ignored_keys(warning: str) -> list[str] | None:
    """The keys named by an article's warning about keys deflect does not read (see _known_keys), or
    None for any other warning; load_kb counts them over the KB (the index keeps warnings as text)."""
    match = _IGNORED_WARNING.match(warning)
    if not match:
        return None
    try:
        keys = ast.literal_eval(f"[{match.group(1)}]")
    except (ValueError, SyntaxError):
        return None
    return keys if all(isinstance(key, str) for key in keys) else None


def ignored_keys_warning(key: str, files: list[str]) -> str:
    """One warning for a key deflect does not read, naming how many files have it and the first one."""
    count = f"{len(files)} files (the first: {files[0]})" if len(files) > 1 else f"1 file ({files[0]})"
    return f"front matter key {key!r} ignored in {count}; deflect reads {', '.join(FRONT_MATTER_KEYS)}"


_IGNORED_IN = re.compile(r"\Afront matter key .+ ignored in \d+ files? \(")


def is_ignored_keys_warning(warning: str) -> bool:
    """Whether a KB warning is one of ignored_keys_warning's: a key not read, no problem in itself
    (BuildReport.summary counts these apart from the warnings a writer must act on)."""
    return _IGNORED_IN.match(warning) is not None


# Keys by which help-centre exports mark an article that was not public there (Help Scout's status,
# Zendesk's user segment, other tools' visibility or internal flags), and the values that say it is.
# deflect publishes every file but a draft (DESIGN section 2), so a migrated KB would publish these
# unless the writer adds draft: true; each gets a warning of its own.
_PUBLIC = {"status": ("published", "public", "live"), "visibility": ("public", "everyone", "all", "visible")}
_NOT_PUBLIC_STATUS = ("notpublished", "unpublished", "draft", "private", "internal", "hidden", "archived")


def _marks_not_public(key: str, value: object) -> bool:
    """Whether a key deflect does not read says the article was not public in the source."""
    text = str(value).strip().lower() if value is not None else ""
    if key == "status":  # Help Scout: published or notpublished; others: draft, private...
        return re.sub(r"[\s_-]", "", text) in _NOT_PUBLIC_STATUS
    if key == "user_segment":  # Zendesk: who may see it; "Everyone" (or none) is the public
        return bool(text) and text not in ("everyone", "none", "null")
    if key == "user_segment_id":  # Zendesk's API: null is everyone
        return bool(text) and text not in ("none", "null")
    if key == "visibility":
        return bool(text) and text not in _PUBLIC["visibility"]
    if key == "internal":
        return value is True or text in ("true", "yes")
    if key == "published":
        return value is False or text in ("false", "no")
    return False


def _as_written(value: object) -> str:
    """A front-matter value as YAML writes it (true, not Python's True)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _typo_of(key: str) -> str | None:
    """The key deflect reads that `key` is most likely a mistyping of: one edit away (a letter
    missing, added, changed, or two swapped), both at least three letters long. difflib's looser
    ratio took "status" for "tags" and "slug" for "url"; two edits took "scale" for "locale"."""
    if len(key) < 3:
        return None
    for known in FRONT_MATTER_KEYS:
        if len(known) >= 3 and _edits(key, known) <= 1:
            return known
    return None


def _edits(a: str, b: str) -> int:
    """Letters to insert, delete, change or swap with the next one to turn a into b (Damerau's distance)."""
    if abs(len(a) - len(b)) > 2:
        return 3
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]
