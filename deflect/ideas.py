"""Ideas: the feature-request board suggested alongside articles."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import sqlalchemy as sa

from .db import ideas as ideas_table

STATUSES = ("open", "planned", "in_progress", "shipped", "declined", "merged")
SUGGESTED_STATUSES = ("open", "planned", "in_progress")


class IdeaError(ValueError):
    """Bad idea data; `field` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def slugify(title: str) -> str:
    slug = re.sub(r"[^\w]+", "-", title.lower(), flags=re.UNICODE).strip("-")
    return slug[:80] or "idea"


def validate_idea(data: dict) -> dict:
    """Check one idea record (from JSONL or the API) and fill defaults."""
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise IdeaError("title", "title must be a non-empty string")
    if len(title) > 300:
        raise IdeaError("title", "title must be at most 300 characters")
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        raise IdeaError("description", "description must be a string")
    status = data.get("status", "open") or "open"
    if status not in STATUSES:
        raise IdeaError("status", f"status must be one of {', '.join(STATUSES)}")
    votes = data.get("votes", 0) or 0
    if not isinstance(votes, int) or isinstance(votes, bool) or votes < 0:
        raise IdeaError("votes", "votes must be a non-negative integer")
    idea_id = data.get("id") or slugify(title)
    if not isinstance(idea_id, str) or not re.fullmatch(r"[\w.-]{1,200}", idea_id):
        raise IdeaError("id", "id must be 1-200 letters, digits, '-', '_' or '.'")
    return {"id": idea_id, "title": title.strip(), "description": description.strip(), "status": status, "votes": votes}


def import_ideas(engine: sa.Engine, path: str | Path) -> tuple[int, int, list[str]]:
    """Insert or update ideas from JSONL; returns (inserted, updated, per-line errors)."""
    inserted = updated = 0
    errors: list[str] = []
    now = time.time()
    with engine.begin() as conn:
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = validate_idea(json.loads(line))
            except json.JSONDecodeError as exc:
                errors.append(f"{path}:{number}: not JSON ({exc.msg})")
                continue
            except IdeaError as exc:
                errors.append(f"{path}:{number}: {exc.field}: {exc}")
                continue
            exists = conn.execute(sa.select(ideas_table.c.id).where(ideas_table.c.id == record["id"])).first()
            if exists:
                conn.execute(ideas_table.update().where(ideas_table.c.id == record["id"]).values(**record, updated_at=now))
                updated += 1
            else:
                conn.execute(ideas_table.insert().values(**record, created_at=now, updated_at=now))
                inserted += 1
    return inserted, updated, errors


def list_ideas(engine: sa.Engine, statuses: tuple[str, ...] | None = None) -> list[dict]:
    query = sa.select(ideas_table).order_by(ideas_table.c.votes.desc(), ideas_table.c.id)
    if statuses:
        query = query.where(ideas_table.c.status.in_(statuses))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def count_ideas(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(ideas_table)).scalar_one())
