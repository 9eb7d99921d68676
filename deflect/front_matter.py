"""An article's YAML front matter (DESIGN section 2): the keys deflect reads, and what a writer is told.

A file that cannot be read is an ArticleError (the KB skips it with a warning naming the file);
a mistake that leaves it readable (a key given twice, a true/false tag) is a warning returned
with the article, which load_kb reports the same way.
"""

from __future__ import annotations

import re
from difflib import get_close_matches

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
    """The front matter with its keys in lower case, and a warning naming the keys deflect does not read.

    The warning is returned with the article (not only logged once), so that `deflect index` and
    `POST /api/reindex` list it until it is fixed, as a key given twice is: a mistyped "draf: true"
    publishes what was meant to be a draft.
    """
    known = {str(key).lower(): value for key, value in meta.items() if str(key).lower() in FRONT_MATTER_KEYS}
    unknown = [str(key)[:40] for key in meta if str(key).lower() not in FRONT_MATTER_KEYS]
    if not unknown:
        return known, []
    hints = [f"{key!r} for {close[0]!r}" for key in unknown if (close := get_close_matches(key.lower(), FRONT_MATTER_KEYS, n=1))]
    warning = (
        f"front matter key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} ignored; "
        f"deflect reads {', '.join(FRONT_MATTER_KEYS)}" + (f" (a typo? {', '.join(hints)})" if hints else "")
    )
    return known, [warning]
