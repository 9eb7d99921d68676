"""Ideas: the feature-request board suggested alongside articles."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import sqlalchemy as sa

from .db import idea_votes
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


def get_idea(conn_or_engine, idea_id: str) -> dict | None:
    query = sa.select(ideas_table).where(ideas_table.c.id == idea_id)
    if isinstance(conn_or_engine, sa.Engine):
        with conn_or_engine.connect() as conn:
            row = conn.execute(query).first()
    else:
        row = conn_or_engine.execute(query).first()
    return dict(row._mapping) if row else None


def add_vote(conn: sa.Connection, idea_id: str, requester: dict | None = None, search_id: str | None = None) -> str:
    """Count one vote (with its optional requester); a merged idea's votes go to its target."""
    idea = get_idea(conn, idea_id)
    seen = {idea_id}
    while idea and idea["status"] == "merged" and idea["merged_into"] and idea["merged_into"] not in seen:
        seen.add(idea["merged_into"])
        idea = get_idea(conn, idea["merged_into"]) or idea
    target = idea["id"] if idea else idea_id
    requester = requester or {}
    now = time.time()
    conn.execute(
        idea_votes.insert().values(
            idea_id=target,
            customer_id=requester.get("customer_id"),
            email=requester.get("email"),
            mrr=requester.get("mrr"),
            search_id=search_id,
            created_at=now,
        )
    )
    conn.execute(
        ideas_table.update().where(ideas_table.c.id == target).values(votes=ideas_table.c.votes + 1, updated_at=now)
    )
    return target
