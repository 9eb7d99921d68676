"""JSONL files an admin imports (ideas, confirmed answers) or a benchmark gives: read line by line,
a bad line reported, not fatal; a file that cannot be JSON lines at all is one error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .errors import DeflectError


class UnreadableJsonl(DeflectError):
    """No line of the file can be trusted, so nothing is read from it. `problem` is the message
    without the importers' "nothing imported" (deflect eval imports nothing)."""

    def __init__(self, problem: str):
        super().__init__(f"{problem}; nothing imported")
        self.problem = problem


class NotUtf8(UnreadableJsonl):
    """The file is not UTF-8 text."""


class NotJsonLines(UnreadableJsonl):
    """The file is one JSON document (an array, or an object over several lines), not one object per line."""


def numbered_records(path: str | Path) -> Iterator[tuple[int, object, str | None]]:
    """(line number, parsed value, problem) for each non-blank line; problem is "not JSON (...)" or None.

    Lines end at \\n only: str.splitlines() would also cut at U+2028 and the like, which JSON
    allows inside a string, and the numbers would no longer be the editor's. A UTF-8 BOM (as
    spreadsheet exports write) is allowed. Raises NotUtf8, or NotJsonLines for a pretty-printed
    array or object (one error naming the mix-up, not one per line), before yielding anything.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotUtf8(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    _check_not_one_document(path, text)
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as exc:
            yield number, None, f"not JSON ({exc.msg})"


def _check_not_one_document(path: str | Path, text: str) -> None:
    """Raise NotJsonLines if the whole text is one JSON array, or one value over several lines.

    JSON lines with two or more records never parse as one document (the decoder stops at the
    second line's "Extra data", so this costs one record's parse), and one object on one line is
    a valid one-record file; an array is never a record.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return
    lines = sum(1 for line in text.split("\n") if line.strip())
    if not isinstance(document, list) and lines < 2:
        return
    kind = "array" if isinstance(document, list) else "object" if isinstance(document, dict) else "value"
    if isinstance(document, list):
        jq = "jq -c '.[]'"
    elif isinstance(document, dict) and len(document) == 1 and isinstance(next(iter(document.values())), list):
        key = next(iter(document))  # {"queries": [...]}
        jq = f"jq -c '.{key}[]'" if key.isidentifier() else f"jq -c '.[{json.dumps(key)}][]'"
    else:
        jq = "jq -c ."
    span = "on one line" if lines < 2 else f"over {lines} lines"
    raise NotJsonLines(
        f"{path}: one JSON {kind} {span}, not JSON lines: the file must have one JSON object per line "
        f"(`{jq} {Path(path).name}` writes it so)"
    )
