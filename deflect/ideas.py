"""Ideas: the feature-request board suggested alongside articles."""

from __future__ import annotations

import re
import time
import uuid

import sqlalchemy as sa

from .db import advisory_lock, bump_sync_counter, sync_counter
from .db import ideas as ideas_table

STATUSES = ("open", "planned", "in_progress", "shipped", "declined", "merged")
SUGGESTED_STATUSES = ("open", "planned", "in_progress")
# Shared counter bumped by every change to what ideas are suggested (sync_state): each server
# process reloads its suggested ideas when it moves, whoever made the change (another
# replica, `deflect ideas import`).
GENERATION = "ideas"


def idea_url(idea_id: str) -> str:
    """An idea's place on deflect's public board, relative to the server's address."""
    return f"/ideas#idea-{idea_id}"


class IdeaError(ValueError):
    """Bad idea data; `field` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


MAX_VOTES = 10**9  # far past any real board, well inside a 64-bit database integer


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
    # A null is "not given" (the default); any other value must be of the right type: an empty
    # list or a false is a mistake in the caller, not a way to say "none".
    description = _given(data, "description", "")
    if not isinstance(description, str):
        raise IdeaError("description", "description must be a string")
    status = _given(data, "status", "open")
    if status not in STATUSES:
        raise IdeaError("status", f"status must be one of {', '.join(STATUSES)}")
    votes = _given(data, "votes", 0)
    if not isinstance(votes, int) or isinstance(votes, bool) or not 0 <= votes <= MAX_VOTES:
        raise IdeaError("votes", f"votes must be an integer from 0 to {MAX_VOTES}")
    idea_id = slugify(title) if data.get("id") is None else data["id"]
    if not isinstance(idea_id, str) or not re.fullmatch(r"[\w.-]{1,200}", idea_id):
        raise IdeaError("id", "id must be 1-200 letters, digits, '-', '_' or '.'")
    return {"id": idea_id, "title": title.strip(), "description": description.strip(), "status": status, "votes": votes}


def _given(data: dict, key: str, default):
    value = data.get(key)
    return default if value is None else value


def shipped_at(record: dict, now: float) -> float | None:
    return now if record["status"] == "shipped" else None


def generation(conn_or_engine) -> int:
    """How many changes to the suggested ideas there have been (see GENERATION)."""
    return sync_counter(conn_or_engine, GENERATION)


def list_ideas(engine: sa.Engine, statuses: tuple[str, ...] | None = None) -> list[dict]:
    """Ideas, most votes first, each with its requester count and cumulative MRR."""
    from .votes import requesters_by_idea  # votes build on ideas (imported here to avoid a cycle)

    query = sa.select(ideas_table).order_by(ideas_table.c.votes.desc(), ideas_table.c.id)
    if statuses:
        query = query.where(ideas_table.c.status.in_(statuses))
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
        people = requesters_by_idea(conn)
    for row in rows:
        mine = people.get(row["id"], {})
        row["requesters"] = len(mine)
        row["mrr"] = round(sum(p["mrr"] or 0.0 for p in mine.values()), 2)
    return rows


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


def show_id(value, limit: int = 100) -> str:
    """An id as quoted in an error message: repr, cut to `limit` characters (ids come from users)."""
    text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def resolve_idea(conn: sa.Connection, idea_id: str) -> dict | None:
    """The idea that `idea_id` stands for now: itself, or the end of its merged_into chain.

    None when there is no such idea, or the chain is broken (points nowhere) or loops.
    """
    idea = get_idea(conn, idea_id)
    seen = {idea_id}
    while idea is not None and idea["status"] == "merged" and idea["merged_into"]:
        if idea["merged_into"] in seen:
            return None
        seen.add(idea["merged_into"])
        idea = get_idea(conn, idea["merged_into"])
    return idea


# --- the board: create, edit, merge (votes and requesters: deflect.votes) -----------------------------------

CLOSED_STATUSES = ("shipped", "declined", "merged")  # no new votes, nothing merges into them


class IdeaConflict(IdeaError):
    """A change the idea's state does not allow (HTTP 409)."""


class IdeaNotFound(IdeaError):
    """No such idea (HTTP 404); `field` names where the id came from."""


class DuplicateTitle(IdeaConflict):
    """Another idea has this title (wording.title_key): a second one would split the votes, the
    requesters and the aliases of one request in two. `idea_id` is the idea to use instead:
    the one with the title, or where it was merged into; `open` says whether it takes votes
    and merges (not shipped, declined, or a merge chain that leads nowhere)."""

    def __init__(self, title: str, idea_id: str, message: str, open: bool):
        super().__init__("title", message)
        self.title, self.idea_id, self.open = title, idea_id, open


def check_title_free(conn: sa.Connection, title: str, except_id: str | None = None) -> None:
    """Raise DuplicateTitle when an idea other than `except_id` (or one merged into it) has this title.

    Titles are compared by wording.title_key: case, spacing and the punctuation around them
    ignored. Holds the idea_titles lock to the end of the transaction, so two admins (or a
    promote and an import) cannot both add the title on PostgreSQL.
    """
    from .wording import title_key

    advisory_lock(conn, "idea_titles")
    key = title_key(title)
    rows = conn.execute(sa.select(ideas_table.c.id, ideas_table.c.title, ideas_table.c.status).order_by(
        ideas_table.c.status == "merged", ideas_table.c.created_at, ideas_table.c.id))  # live ideas first
    for row in rows:
        if row.id == except_id or title_key(row.title) != key:
            continue
        target = resolve_idea(conn, row.id) if row.status == "merged" else dict(row._mapping)
        if target is not None and target["id"] == except_id:
            continue  # merged into the idea being renamed: its title is that idea's history
        named = f"an idea titled {show_id(row.title)} exists already: {show_id(row.id)}"
        if target is None:
            raise DuplicateTitle(row.title, row.id, f"{named} (merged into an idea that no longer exists)", open=False)
        if target["id"] != row.id:
            named += f", merged into {show_id(target['id'])}"
        if target["status"] in CLOSED_STATUSES:
            named += f" ({target['status']})"
        raise DuplicateTitle(row.title, target["id"], named, open=target["status"] not in CLOSED_STATUSES)


def free_idea_id(conn: sa.Connection, base: str) -> str:
    """`base`, or `base` with a short random suffix when an idea has that id already."""
    idea_id = base
    while get_idea(conn, idea_id) is not None:
        idea_id = f"{base}-{uuid.uuid4().hex[:4]}"
    return idea_id


def create_idea(conn: sa.Connection, data: dict) -> dict:
    """A new idea. Without an `id`, one is made from the title, made unique if it is taken; an `id`
    the caller chose conflicts (IdeaConflict), and so does another idea's title (DuplicateTitle)."""
    record = validate_idea(data)
    if record["status"] == "merged":
        raise IdeaError("status", "create the idea first, then merge it with PATCH")
    advisory_lock(conn, "idea_titles")  # the id and title checks below hold until the insert commits
    if data.get("id") is not None and get_idea(conn, record["id"]) is not None:
        raise IdeaConflict("id", f"an idea with id {show_id(record['id'])} exists already")
    check_title_free(conn, record["title"])
    if data.get("id") is None:
        record["id"] = free_idea_id(conn, record["id"])
    now = time.time()
    conn.execute(ideas_table.insert().values(**record, created_at=now, updated_at=now, shipped_at=shipped_at(record, now)))
    bump_sync_counter(conn, GENERATION)
    return get_idea(conn, record["id"])


def _title_changes(old: str, new: str) -> bool:
    """True when `new` is another title than `old`, not the same one re-cased or re-punctuated
    (which creates no duplicate, even among ideas that shared a title before titles were checked)."""
    from .wording import title_key

    return title_key(old) != title_key(new)


def _merge_target(conn: sa.Connection, target_id, source_id: str | None = None, field: str = "merged_into") -> dict:
    if not isinstance(target_id, str) or not target_id:
        raise IdeaError(field, f"{field} must be the id of an existing idea")
    if target_id == source_id:
        raise IdeaError(field, "an idea cannot be merged into itself")
    target = get_idea(conn, target_id)
    if target is None:
        raise IdeaNotFound(field, f"no idea with id {show_id(target_id)}")
    if target["status"] in CLOSED_STATUSES:
        raise IdeaConflict(
            field, f"idea {show_id(target_id)} is {target['status']}; merge into an open, planned or in-progress idea"
        )
    return target


def update_idea(conn: sa.Connection, idea_id: str, patch: dict) -> tuple[dict, list[dict]]:
    """Apply a PATCH (title, description, status, merged_into); returns (idea, requesters to notify).

    Merging moves votes and requesters to the target. Becoming `shipped` queues one outbox
    notification per requester in this same transaction.
    """
    from . import aliases
    from .votes import move_votes

    idea = get_idea(conn, idea_id)
    if idea is None:
        raise IdeaNotFound("id", f"no idea with id {show_id(idea_id)}")
    unknown = set(patch) - {"title", "description", "status", "merged_into"}
    if unknown:
        raise IdeaError(sorted(unknown)[0], "only title, description, status and merged_into can be changed")
    merged = {k: idea[k] for k in ("id", "title", "description", "status", "votes")} | {
        k: patch[k] for k in ("title", "description", "status") if k in patch
    }
    if "merged_into" in patch and "status" not in patch:
        merged["status"] = "merged"
    if patch.get("merged_into") is not None and merged["status"] != "merged":
        raise IdeaError("merged_into", f"merged_into goes with status merged, not {merged['status']}")
    record = validate_idea(merged)
    if idea["status"] == "merged" and record["status"] != "merged":
        # Its votes, requesters and learned questions went to the target and cannot be told apart
        # there any more: reopening it would bring back an empty idea, as if nobody had asked.
        raise IdeaConflict("status", f"idea {show_id(idea_id)} is merged into {show_id(idea['merged_into'])}, which has "
                                     "its votes and requesters; change that idea, or create a new one")  # fmt: skip
    if _title_changes(idea["title"], record["title"]):
        check_title_free(conn, record["title"], except_id=idea_id)
    now = time.time()
    values = {"title": record["title"], "description": record["description"], "status": record["status"], "updated_at": now}
    if record["status"] != idea["status"]:  # when it shipped: questions asked since are content gaps (deflect.gaps)
        values["shipped_at"] = shipped_at(record, now)
    if record["status"] == "merged" and idea["status"] != "merged":
        target = _merge_target(conn, patch.get("merged_into"), idea_id)
        twice = move_votes(conn, idea_id, target["id"])
        conn.execute(
            ideas_table.update()
            .where(ideas_table.c.id == target["id"])
            .values(votes=ideas_table.c.votes + max(idea["votes"] - twice, 0), updated_at=now)
        )
        values |= {"merged_into": target["id"], "votes": 0}
        aliases.move_to(conn, "idea", idea_id, target["id"])  # questions that found this idea find the target
    elif "merged_into" in patch and patch["merged_into"] != idea["merged_into"]:
        raise IdeaConflict("merged_into", f"idea {show_id(idea_id)} is merged already; its votes have moved")
    elif record["status"] != "merged":
        values["merged_into"] = None
    conn.execute(ideas_table.update().where(ideas_table.c.id == idea_id).values(**values))
    bump_sync_counter(conn, GENERATION)
    notified = notify_shipped(conn, idea_id) if record["status"] == "shipped" and idea["status"] != "shipped" else []
    return get_idea(conn, idea_id), notified


def notify_shipped(conn: sa.Connection, idea_id: str) -> list[dict]:
    """Queue an `idea_shipped` notification for each requester of the idea not queued one already;
    returns those newly queued (in this transaction)."""
    from .outbox import enqueue
    from .votes import requesters

    fresh = get_idea(conn, idea_id)
    payload = {"idea": {k: fresh[k] for k in ("id", "title", "description", "status")} | {"url": idea_url(idea_id)}}
    return [person for person in requesters(conn, idea_id) if enqueue(conn, "idea_shipped", f"idea:{idea_id}", person, payload)]
