"""One person's data, found, shown and forgotten; and old searches forgotten (retention).

A data-protection request names a person by what deflect may hold of them: an email address or
customer id (given with a ticket, a vote, an import), widget sessions, and words their questions
held (their name). `find` gathers everything tied to them; `describe` shows it (a request for
access); `forget` removes it (a request for erasure). `forget_before` forgets every search
older than a date, for a retention period.

Forgetting anonymises rather than deletes, so every figure deflect reports stays as it was:
- a search keeps its time, answer and events, but its question reads `[erased]` and its session
  becomes a fresh one of its own (searches typed on from one another keep sharing one, so the
  superseded prefixes stay superseded);
- events, votes and their MRR keep counting, without the requester's email, id or MRR;
- pending and sent notifications to the person are deleted;
- what was built from their questions goes: cached vectors, idea-candidate membership (a
  candidate labelled with their words is relabelled from its other questions), left-out
  wordings, and learned aliases worded as their questions (unless someone else asked alike;
  `forget_before` keeps aliases: they are what deflect learned, not who asked).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from .aliases import bump_generation
from .candidates import candidate_exclusions, candidate_members, candidates
from .db import alias_confirmations, aliases, events, idea_votes, ideas, searches, writing
from .events import normalize_query
from .metrics import ERASED, superseding
from .outbox import outbox
from .pool import chunks, pool_vectors
from .wording import alias_key


@dataclass
class Person:
    """Who a request is about; any of these may be given, each widens what is found."""

    emails: tuple[str, ...] = ()
    customer_ids: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    mentioning: tuple[str, ...] = ()  # words their questions held, such as their name

    def __post_init__(self) -> None:
        self.emails = tuple(e.strip().lower() for e in self.emails if e.strip())
        self.customer_ids = tuple(c.strip() for c in self.customer_ids if c.strip())
        self.sessions = tuple(s.strip() for s in self.sessions if s.strip())
        self.mentioning = tuple(m.strip() for m in self.mentioning if len(m.strip()) >= 3)

    @property
    def empty(self) -> bool:
        return not (self.emails or self.customer_ids or self.sessions or self.mentioning)

    def requester_clause(self, table: sa.Table) -> sa.ColumnElement:
        """Rows of `table` (events, idea_votes, outbox) that carry this person's email or customer id."""
        clauses = []
        if self.emails:
            clauses.append(sa.func.lower(table.c.email).in_(self.emails))
        if self.customer_ids:
            clauses.append(table.c.customer_id.in_(self.customer_ids))
        return sa.or_(*clauses) if clauses else sa.false()


@dataclass
class Found:
    """Row ids of everything tied to one person."""

    search_ids: set[str] = field(default_factory=set)
    event_ids: set[int] = field(default_factory=set)  # events that carry the person's email or id
    vote_ids: set[int] = field(default_factory=set)
    outbox_ids: set[int] = field(default_factory=set)
    alias_ids: set[int] = field(default_factory=set)
    candidate_ids: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        return {"searches": len(self.search_ids), "requester_events": len(self.event_ids), "votes": len(self.vote_ids),
                "notifications": len(self.outbox_ids), "aliases": len(self.alias_ids),
                "candidates": len(self.candidate_ids)}


def find(conn: sa.Connection, person: Person) -> Found:
    """Everything tied to the person: their requester rows, the searches of their sessions (a ticket
    or vote names the search, the search its session), searches mentioning their words, and what
    was built from those searches."""
    found = Found()
    if person.empty:
        return found
    found.event_ids = set(conn.execute(sa.select(events.c.id).where(person.requester_clause(events))).scalars())
    found.vote_ids = set(conn.execute(sa.select(idea_votes.c.id).where(person.requester_clause(idea_votes))).scalars())
    found.outbox_ids = set(conn.execute(sa.select(outbox.c.id).where(person.requester_clause(outbox))).scalars())
    named = set(conn.execute(sa.select(events.c.search_id).where(events.c.id.in_(found.event_ids))).scalars())
    named |= {s for s in conn.execute(sa.select(idea_votes.c.search_id).where(idea_votes.c.id.in_(found.vote_ids))).scalars() if s}
    sessions = set(person.sessions)
    for part in chunks(sorted(named)):
        sessions |= {s for s in conn.execute(sa.select(searches.c.session).where(searches.c.id.in_(part))).scalars() if s}
    found.search_ids = named
    for part in chunks(sorted(sessions)):
        found.search_ids |= set(conn.execute(sa.select(searches.c.id).where(searches.c.session.in_(part))).scalars())
    mentioned: set[str] = set()
    for words in person.mentioning:
        pattern = "%" + words.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        mentioned |= set(conn.execute(
            sa.select(searches.c.id).where(sa.func.lower(searches.c.query).like(pattern, escape="\\"))
        ).scalars())
    found.search_ids |= mentioned | _typed_before(conn, mentioned)
    _built_from(conn, found, person)
    return found


def _typed_before(conn: sa.Connection, search_ids: set[str]) -> set[str]:
    """The prefixes recorded while these searches were typed ("is Anna Schm" before "is Anna Schmidt ...")."""
    sessions: set[str] = set()
    for part in chunks(sorted(search_ids)):
        sessions |= {s for s in conn.execute(sa.select(searches.c.session).where(searches.c.id.in_(part))).scalars() if s}
    rows: list[dict] = []
    for part in chunks(sorted(sessions)):
        rows += [dict(r._mapping) for r in conn.execute(
            sa.select(searches.c.id, searches.c.query, searches.c.session, searches.c.created_at).where(searches.c.session.in_(part))
        )]
    superseded_by = superseding(rows)
    out = set()
    for row in rows:
        at = row["id"]
        while at in superseded_by and at not in search_ids:
            at = superseded_by[at]
        if at in search_ids and row["id"] not in search_ids:
            out.add(row["id"])
    return out


def _built_from(conn: sa.Connection, found: Found, person: Person) -> None:
    """The aliases and candidates made from the found searches (or worded with the person's words)."""
    keys = {alias_key(k) for k in _query_keys(conn, found.search_ids)}
    for part in chunks(sorted(found.search_ids)):
        found.alias_ids |= set(conn.execute(
            sa.select(alias_confirmations.c.alias_id).where(alias_confirmations.c.search_id.in_(part))
        ).scalars())
        found.candidate_ids |= set(conn.execute(
            sa.select(candidate_members.c.candidate_id).where(candidate_members.c.search_id.in_(part))
        ).scalars())
    for part in chunks(sorted(keys)):
        found.alias_ids |= set(conn.execute(sa.select(aliases.c.id).where(aliases.c.query_key.in_(part))).scalars())
    for words in person.mentioning:
        lowered = words.lower()
        found.alias_ids |= {a.id for a in conn.execute(sa.select(aliases.c.id, aliases.c.query)) if lowered in a.query.lower()}
        found.candidate_ids |= {c.id for c in conn.execute(sa.select(candidates.c.id, candidates.c.label, candidates.c.keywords))
                                if lowered in c.label.lower() or lowered in c.keywords.lower()}


def _query_keys(conn: sa.Connection, search_ids: Iterable[str]) -> set[str]:
    keys: set[str] = set()
    for part in chunks(sorted(search_ids)):
        keys |= {normalize_query(q) for q in conn.execute(sa.select(searches.c.query).where(searches.c.id.in_(part))).scalars()}
    keys.discard(ERASED)
    return keys


def describe(conn: sa.Connection, found: Found) -> dict:
    """What deflect holds of the person, as JSON (a request for access): each row as stored."""

    def rows(table: sa.Table, ids: Collection, order) -> list[dict]:
        out: list[dict] = []
        for part in chunks(sorted(ids)):
            out += [dict(r._mapping) for r in conn.execute(sa.select(table).where(table.c.id.in_(part)).order_by(order))]
        return out

    voted = rows(idea_votes, found.vote_ids, idea_votes.c.id)
    titles = dict(conn.execute(sa.select(ideas.c.id, ideas.c.title).where(ideas.c.id.in_(sorted({v["idea_id"] for v in voted})))).all())
    notifications = rows(outbox, found.outbox_ids, outbox.c.id)
    for n in notifications:
        n["payload"] = json.loads(n["payload"])
    return {
        "counts": found.counts(),
        "searches": sorted(rows(searches, found.search_ids, searches.c.created_at), key=lambda s: (s["created_at"], s["id"])),
        "requester_events": rows(events, found.event_ids, events.c.id),
        "votes": [v | {"idea_title": titles.get(v["idea_id"])} for v in voted],
        "notifications": notifications,
        "aliases": [{k: v for k, v in a.items() if k != "vector"} for a in rows(aliases, found.alias_ids, aliases.c.id)],
        "candidates": [{"id": c["id"], "label": c["label"], "keywords": json.loads(c["keywords"]), "status": c["status"],
                        "idea_id": c["idea_id"]} for c in rows(candidates, found.candidate_ids, candidates.c.id)],
    }


def forget(conn: sa.Connection, found: Found, person: Person) -> dict[str, int]:
    """Erase the person (see the module's docstring); returns what was changed, by kind."""
    for part in chunks(sorted(found.event_ids)):
        conn.execute(events.update().where(events.c.id.in_(part)).values(email=None, customer_id=None, mrr=None))
    for part in chunks(sorted(found.vote_ids)):
        conn.execute(idea_votes.update().where(idea_votes.c.id.in_(part)).values(email=None, customer_id=None, mrr=None))
    for part in chunks(sorted(found.outbox_ids)):
        conn.execute(outbox.delete().where(outbox.c.id.in_(part)))
    erased = erase_searches(conn, found.search_ids, also_aliases=found.alias_ids, also_candidates=found.candidate_ids,
                            words=person.mentioning)
    return {"searches": erased["searches"], "requester_events": len(found.event_ids), "votes": len(found.vote_ids),
            "notifications": len(found.outbox_ids), "aliases": erased["aliases"],
            "candidates_relabelled": erased["candidates_relabelled"]}


def erase_searches(
    conn: sa.Connection,
    search_ids: Collection[str],
    also_aliases: Collection[int] = (),
    also_candidates: Collection[str] = (),
    words: Collection[str] = (),
) -> dict[str, int]:
    """Anonymise these searches and drop what was built from their questions (module docstring)."""
    ids = sorted(set(search_ids))
    keys = _query_keys(conn, ids)
    rows: list[dict] = []
    for part in chunks(ids):
        rows += [dict(r._mapping) for r in conn.execute(
            sa.select(searches.c.id, searches.c.query, searches.c.session, searches.c.created_at).where(searches.c.id.in_(part))
        )]
    # Sessions: one fresh one per chain of searches typed on from one another, so what was
    # superseded stays superseded and the figures do not move.
    by_id = {r["id"]: r for r in rows}
    superseded_by = superseding(rows)
    fresh: dict[str, str] = {}
    for row in rows:
        end = row["id"]
        while end in superseded_by and superseded_by[end] in by_id:
            end = superseded_by[end]
        session = fresh.setdefault(end, f"erased-{uuid.uuid4().hex}") if row["session"] else None
        conn.execute(searches.update().where(searches.c.id == row["id"]).values(query=ERASED, session=session))
    for part in chunks(ids):
        conn.execute(events.update().where(events.c.search_id.in_(part)).values(session=None))
        conn.execute(pool_vectors.delete().where(pool_vectors.c.search_id.in_(part)))
        conn.execute(candidate_members.delete().where(candidate_members.c.search_id.in_(part)))
    for part in chunks(sorted(keys)):
        conn.execute(candidate_exclusions.delete().where(candidate_exclusions.c.query_key.in_(part)))
    alias_rows = []
    for part in chunks(sorted(also_aliases)):
        alias_rows += conn.execute(sa.select(aliases.c.id, aliases.c.query_key).where(aliases.c.id.in_(part))).all()
    still_asked = _keys_asked_elsewhere(conn, {a.query_key for a in alias_rows}) if alias_rows else set()
    dropped = [a.id for a in alias_rows if a.query_key not in still_asked]
    for part in chunks(ids):
        conn.execute(alias_confirmations.delete().where(alias_confirmations.c.search_id.in_(part)))
    for part in chunks(dropped):
        conn.execute(alias_confirmations.delete().where(alias_confirmations.c.alias_id.in_(part)))
        conn.execute(aliases.delete().where(aliases.c.id.in_(part)))
    if dropped:
        bump_generation(conn)  # every server process drops them at its next sync
    relabelled = _relabel(conn, set(also_candidates), keys, words)
    return {"searches": len(rows), "aliases": len(dropped), "candidates_relabelled": relabelled}


def _keys_asked_elsewhere(conn: sa.Connection, keys: set[str]) -> set[str]:
    """The alias keys that searches of other people still have (an alias worded so is theirs too)."""
    if not keys:
        return set()
    asked: set[str] = set()
    for query in conn.execute(sa.select(searches.c.query).where(searches.c.query != ERASED)).scalars():
        key = alias_key(query)
        if key in keys:
            asked.add(key)
    return asked


def _relabel(conn: sa.Connection, candidate_ids: set[str], keys: set[str], words: Collection[str]) -> int:
    """Give candidates labelled or keyworded with erased words a label from their remaining questions."""
    from .clusters import keywords as keywords_of

    lowered = [w.lower() for w in words]
    changed = 0
    for part in chunks(sorted(candidate_ids)):
        for c in conn.execute(sa.select(candidates.c.id, candidates.c.label, candidates.c.keywords).where(candidates.c.id.in_(part))).all():
            label_key = normalize_query(c.label.rstrip("…"))
            worded = any(key.startswith(label_key) for key in keys) or any(w in c.label.lower() or w in c.keywords.lower() for w in lowered)
            if not worded:
                continue
            remaining = list(conn.execute(
                sa.select(searches.c.query).join(candidate_members, candidate_members.c.search_id == searches.c.id)
                .where(candidate_members.c.candidate_id == c.id, searches.c.query != ERASED)
                .order_by(searches.c.created_at)
            ).scalars())
            remaining = [q for q in remaining if not any(w in q.lower() for w in lowered)]
            label = min(remaining, key=len)[:80] if remaining else ERASED
            found_words = keywords_of([remaining])[0] if remaining else []
            conn.execute(candidates.update().where(candidates.c.id == c.id).values(
                label=label, keywords=json.dumps(found_words), updated_at=time.time()))
            changed += 1
    return changed


def forget_person(engine: sa.Engine, person: Person) -> dict[str, int]:
    """Find and forget the person in one transaction."""
    with writing(engine) as conn:
        return forget(conn, find(conn, person), person)


def show_person(engine: sa.Engine, person: Person) -> dict:
    with engine.connect() as conn:
        return describe(conn, find(conn, person))


def forget_before(engine: sa.Engine, before: float) -> dict[str, int]:
    """Retention: forget every search made before `before` (epoch seconds) and the requesters of its
    events; the figures of those days stay as they were."""
    with writing(engine) as conn:
        ids = list(conn.execute(
            sa.select(searches.c.id).where(searches.c.created_at < before, searches.c.query != ERASED)
        ).scalars())
        found = Found(search_ids=set(ids))
        for part in chunks(ids):
            found.event_ids |= set(conn.execute(sa.select(events.c.id).where(
                events.c.search_id.in_(part), sa.or_(events.c.email.is_not(None), events.c.customer_id.is_not(None))
            )).scalars())
        _built_from(conn, found, Person())
        for part in chunks(sorted(found.event_ids)):
            conn.execute(events.update().where(events.c.id.in_(part)).values(email=None, customer_id=None, mrr=None))
        # Learned aliases stay: they are what deflect learned, worded as (masked) questions, not who asked.
        done = erase_searches(conn, found.search_ids, also_candidates=found.candidate_ids)
        return done | {"requester_events": len(found.event_ids)}
