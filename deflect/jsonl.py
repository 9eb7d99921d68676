"""JSONL files an admin imports (ideas, confirmed answers): read line by line, a bad line reported, not fatal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .errors import DeflectError


class NotUtf8(DeflectError):
    """The file is not UTF-8 text: no line of it can be trusted, so nothing is imported."""


def numbered_records(path: str | Path) -> Iterator[tuple[int, object, str | None]]:
    """(line number, parsed value, problem) for each non-blank line; problem is "not JSON (...)" or None.

    Lines end at \\n only: str.splitlines() would also cut at U+2028 and the like, which JSON
    allows inside a string, and the numbers would no longer be the editor's. A UTF-8 BOM (as
    spreadsheet exports write) is allowed. Raises NotUtf8 before yielding anything.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotUtf8(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start}); nothing imported") from None
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as exc:
            yield number, None, f"not JSON ({exc.msg})"
