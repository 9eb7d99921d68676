"""One person's data, found, shown and forgotten; and old searches forgotten (retention).

A data-protection request names a person by what deflect may hold of them: an email address or
customer id (given with a ticket, a vote, an import), widget sessions, and words their questions
held (their name). `find` gathers everything tied to them; `describe` shows it (a request for
access), with the other identifiers their rows carry (an email given with a customer id) for the
operator to add; `forget` removes it (a request for erasure). `forget_before` forgets every
search older than a date, for a retention period.

Forgetting anonymises rather than deletes, so every figure deflect reports stays as it was:
- a search keeps its time, answer and events, but its question reads `[erased]` and its session
  becomes a fresh one of its own. A question is forgotten whole: the prefixes recorded while it
  was typed and the searches typed on from it go with it, and share one fresh session, so what
  was superseded stays superseded and what was final stays final;
- the requester's email and customer id on events and votes become a pseudonym (`erased-...`),
  one per requester, so each still counts once and their MRR still adds up; nothing is ever sent
  to a pseudonym;
- pending and sent notifications to the person are deleted;
- what was built from their questions goes: cached vectors, idea-candidate membership (a
  candidate labelled with their words is relabelled from its other questions), left-out
  wordings and learned aliases worded as their questions (unless someone else asked alike;
  `forget_before` keeps aliases: they are what deflect learned, not who asked).
"""

from __future__ import annotations

import bisect
import json
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from .aliases import bump_generation
from .candidates import candidate_exclusions, candidate_history, candidate_members, candidates, lock_candidates
from .db import advisory_lock, alias_confirmations, aliases, events, idea_votes, ideas, searches, writing
from .events import normalize_query
from .metrics import ERASED, superseding
from .outbox import PSEUDONYM_PREFIX, outbox, requester_key
from .pool import chunks, pool_vectors
from .wording import alias_key


def too_short(words: str) -> bool:
    """Words too short to look for: they would be found inside other people's words ("li" in
    "click"). Three characters, or two outside ASCII (a two-syllable Korean name is a whole name)."""
    words = words.strip()
    return len(words) < (3 if words.isascii() else 2)


@dataclass
class Person:
    """Who a request is about; any of these may be given, each widens what is found."""

    emails: tuple[str, ...] = ()
    customer_ids: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    mentioning: tuple[str, ...] = ()  # words their questions held, such as their name

    def __post_init__(self) -> None:
        self.emails = tuple(sorted({e.strip().lower() for e in self.emails if e.strip()}))
        self.customer_ids = tuple(sorted({c.strip() for c in self.customer_ids if c.strip()}))
        self.sessions = tuple(s.strip() for s in self.sessions if s.strip())
        self.mentioning = tuple(m.strip() for m in self.mentioning if not too_short(m))

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


def _ids_where(conn: sa.Connection, column: sa.Column, wanted: sa.Column, values: Iterable) -> set:
    """`column` of the rows whose `wanted` is one of `values`, asked in chunks (bound-parameter limits)."""
    out: set = set()
    for part in chunks(sorted(values)):
        out |= {v for v in conn.execute(sa.select(column).where(wanted.in_(part))).scalars() if v is not None}
    return out


def other_identifiers(conn: sa.Connection, person: Person) -> dict[str, list[str]]:
    """Emails and customer ids that the person's own rows also carry, not given in the request. Not
    followed on their own: a customer id can be an account several people share, so the operator
    decides (person show lists them; forget names them)."""
    emails: set[str] = set()
    customer_ids: set[str] = set()
    for table in (events, idea_votes, outbox):
        for row in conn.execute(sa.select(table.c.email, table.c.customer_id).where(person.requester_clause(table)).distinct()):
            if row.email and row.email.lower() not in person.emails:
                emails.add(row.email.lower())
            if row.customer_id and row.customer_id not in person.customer_ids and not row.customer_id.startswith(PSEUDONYM_PREFIX):
                customer_ids.add(row.customer_id)
    return {"emails": sorted(emails), "customer_ids": sorted(customer_ids)}


def _mentioning(conn: sa.Connection, words: str) -> set[str]:
    """Searches whose question holds `words`, case ignored in every script (SQL's lower() is ASCII-only
    on SQLite, so other words are compared here)."""
    if words.isascii():
        pattern = "%" + words.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return set(conn.execute(
            sa.select(searches.c.id).where(sa.func.lower(searches.c.query).like(pattern, escape="\\"))
        ).scalars())
    folded = words.casefold()
    return {r.id for r in conn.execute(sa.select(searches.c.id, searches.c.query)) if folded in r.query.casefold()}


def find(conn: sa.Connection, person: Person) -> Found:
    """Everything tied to the person: their requester rows, the searches of their sessions (a ticket
    or vote names the search, the search its session), searches mentioning their words with the rest
    of the typing they belong to, and what was built from those searches."""
    found = Found()
    if person.empty:
        return found
    found.event_ids = set(conn.execute(sa.select(events.c.id).where(person.requester_clause(events))).scalars())
    found.vote_ids = set(conn.execute(sa.select(idea_votes.c.id).where(person.requester_clause(idea_votes))).scalars())
    found.outbox_ids = set(conn.execute(sa.select(outbox.c.id).where(person.requester_clause(outbox))).scalars())
    named = _ids_where(conn, events.c.search_id, events.c.id, found.event_ids)
    named |= _ids_where(conn, idea_votes.c.search_id, idea_votes.c.id, found.vote_ids)
    sessions = set(person.sessions) | _ids_where(conn, searches.c.session, searches.c.id, named)
    found.search_ids = named | _ids_where(conn, searches.c.id, searches.c.session, sessions)
    for words in person.mentioning:
        found.search_ids |= _mentioning(conn, words)
    found.search_ids = whole_typings(conn, found.search_ids)
    _built_from(conn, found, person)
    return found


def whole_typings(conn: sa.Connection, search_ids: set[str]) -> set[str]:
    """These searches with every search of the typing each belongs to: the prefixes recorded while a
    question was typed ("is Anna Schm" before "is Anna Schmidt ...") and the searches typed on from it
    (metrics.superseding links them), so erasing never turns a prefix into a final search."""
    sessions = _ids_where(conn, searches.c.session, searches.c.id, search_ids)
    rows: list[dict] = []
    for part in chunks(sorted(sessions)):
        rows += [dict(r._mapping) for r in conn.execute(
            sa.select(searches.c.id, searches.c.query, searches.c.session, searches.c.created_at).where(searches.c.session.in_(part))
        )]
    typing = typing_of(rows)
    wanted = {typing.get(i, i) for i in search_ids}
    return set(search_ids) | {r["id"] for r in rows if typing[r["id"]] in wanted}


def typing_of(rows: list[dict]) -> dict[str, str]:
    """Search id -> one id standing for its typing: the searches metrics.superseding links (a
    prefix to what was typed on from it), joined whatever their order."""
    parent: dict[str, str] = {}

    def root(at: str) -> str:
        while parent.get(at, at) != at:
            parent[at] = parent.get(parent[at], parent[at])
            at = parent[at]
        return at

    for earlier, later in superseding(rows).items():
        parent[root(earlier)] = root(later)
    return {r["id"]: root(r["id"]) for r in rows}


def _built_from(conn: sa.Connection, found: Found, person: Person) -> None:
    """The aliases and candidates made from the found searches (or worded with the person's words)."""
    keys = {alias_key(k) for k in _query_keys(conn, found.search_ids)}
    found.alias_ids |= _ids_where(conn, alias_confirmations.c.alias_id, alias_confirmations.c.search_id, found.search_ids)
    found.candidate_ids |= _ids_where(conn, candidate_members.c.candidate_id, candidate_members.c.search_id, found.search_ids)
    found.candidate_ids |= _ids_where(conn, candidate_history.c.candidate_id, candidate_history.c.search_id, found.search_ids)
    found.alias_ids |= _ids_where(conn, aliases.c.id, aliases.c.query_key, keys)
    for words in person.mentioning:
        folded = words.casefold()
        found.alias_ids |= {a.id for a in conn.execute(sa.select(aliases.c.id, aliases.c.query)) if folded in a.query.casefold()}
        found.candidate_ids |= {c.id for c in conn.execute(sa.select(candidates.c.id, candidates.c.label, candidates.c.keywords))
                                if folded in c.label.casefold() or folded in c.keywords.casefold()}


def _query_keys(conn: sa.Connection, search_ids: Iterable[str]) -> set[str]:
    keys = {normalize_query(q) for q in _ids_where(conn, searches.c.query, searches.c.id, search_ids)}
    keys.discard(ERASED)
    return keys


def describe(conn: sa.Connection, found: Found, person: Person | None = None) -> dict:
    """What deflect holds of the person, as JSON (a request for access): each row as stored."""

    def rows(table: sa.Table, ids: Collection, order) -> list[dict]:
        out: list[dict] = []
        for part in chunks(sorted(ids)):
            out += [dict(r._mapping) for r in conn.execute(sa.select(table).where(table.c.id.in_(part)).order_by(order))]
        return out

    voted = rows(idea_votes, found.vote_ids, idea_votes.c.id)
    titles = {i["id"]: i["title"] for i in rows(ideas, {v["idea_id"] for v in voted}, ideas.c.id)}
    notifications = rows(outbox, found.outbox_ids, outbox.c.id)
    for n in notifications:
        n["payload"] = json.loads(n["payload"])
    return {
        "counts": found.counts(),
        "other_identifiers": other_identifiers(conn, person) if person else {"emails": [], "customer_ids": []},
        "ideas_mentioning": _ideas_mentioning(conn, person.mentioning if person else ()),
        "searches": sorted(rows(searches, found.search_ids, searches.c.created_at), key=lambda s: (s["created_at"], s["id"])),
        "requester_events": rows(events, found.event_ids, events.c.id),
        "votes": [v | {"idea_title": titles.get(v["idea_id"])} for v in voted],
        "notifications": notifications,
        "aliases": [{k: v for k, v in a.items() if k != "vector"} for a in rows(aliases, found.alias_ids, aliases.c.id)],
        "candidates": [{"id": c["id"], "label": c["label"], "keywords": json.loads(c["keywords"]), "status": c["status"],
                        "idea_id": c["idea_id"]} for c in rows(candidates, found.candidate_ids, candidates.c.id)],
    }


def _ideas_mentioning(conn: sa.Connection, words: Collection[str]) -> list[dict]:
    """Ideas whose title or description holds the words (an idea written from a customer's question):
    the team's public text, so shown for them to edit, never changed here."""
    folded = [w.casefold() for w in words]
    if not folded:
        return []
    return [{"id": i.id, "title": i.title} for i in conn.execute(sa.select(ideas.c.id, ideas.c.title, ideas.c.description))
            if any(w in f"{i.title} {i.description or ''}".casefold() for w in folded)]


def pseudonymise(conn: sa.Connection, table: sa.Table, row_ids: Collection[int], pseudonyms: dict[str, str]) -> None:
    """Replace the email and customer id of these rows with one pseudonym per requester (MRR stays):
    each requester still counts once, and their MRR still adds up, but nobody can tell who."""
    by_pseudonym: dict[str, list[int]] = {}
    for part in chunks(sorted(row_ids)):
        for row in conn.execute(sa.select(table.c.id, table.c.email, table.c.customer_id).where(table.c.id.in_(part))):
            key = requester_key({"customer_id": row.customer_id, "email": row.email})
            name = pseudonyms.setdefault(key, f"{PSEUDONYM_PREFIX}{uuid.uuid4().hex}")
            by_pseudonym.setdefault(name, []).append(row.id)
    for name, ids in by_pseudonym.items():
        for part in chunks(ids):
            conn.execute(table.update().where(table.c.id.in_(part)).values(email=None, customer_id=name))


def forget(conn: sa.Connection, found: Found, person: Person) -> dict[str, int]:
    """Erase the person (see the module's docstring); returns what was changed, by kind."""
    pseudonyms: dict[str, str] = {}
    pseudonymise(conn, events, found.event_ids, pseudonyms)
    pseudonymise(conn, idea_votes, found.vote_ids, pseudonyms)
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
    """Anonymise these searches and drop what was built from their questions (module docstring).
    Callers pass whole typings (whole_typings), or a prefix left behind would become final."""
    # A cluster rebuild or join in another process re-reads, under these locks, which of its
    # questions were erased meanwhile, so it cannot write their text or vectors back.
    _lock_writers(conn)
    ids = sorted(set(search_ids))
    keys = _query_keys(conn, ids)
    rows: list[dict] = []
    for part in chunks(ids):
        rows += [dict(r._mapping) for r in conn.execute(
            sa.select(searches.c.id, searches.c.query, searches.c.session, searches.c.created_at).where(searches.c.id.in_(part))
        )]
    # Sessions: one fresh one per typing (searches typed on from one another), so what was
    # superseded stays superseded and the figures do not move.
    typing = typing_of(rows)
    fresh: dict[str, str] = {}
    changes = []
    for row in rows:
        session = fresh.setdefault(typing[row["id"]], f"erased-{uuid.uuid4().hex}") if row["session"] else None
        changes.append({"erase_id": row["id"], "erase_session": session})
    if changes:
        conn.execute(searches.update().where(searches.c.id == sa.bindparam("erase_id")).values(
            query=ERASED, session=sa.bindparam("erase_session")), changes)
    for part in chunks(ids):
        conn.execute(events.update().where(events.c.search_id.in_(part)).values(session=None))
        conn.execute(pool_vectors.delete().where(pool_vectors.c.search_id.in_(part)))
        conn.execute(candidate_members.delete().where(candidate_members.c.search_id.in_(part)))
        conn.execute(alias_confirmations.delete().where(alias_confirmations.c.search_id.in_(part)))
    alias_rows = []
    for part in chunks(sorted(also_aliases)):
        alias_rows += conn.execute(sa.select(aliases.c.id, aliases.c.query_key).where(aliases.c.id.in_(part))).all()
    asked, asked_alias = _still_asked(conn, keys, {a.query_key for a in alias_rows})
    # A wording an admin left out stays left out while someone else still asks it.
    for part in chunks(sorted(keys - asked)):
        conn.execute(candidate_exclusions.delete().where(candidate_exclusions.c.query_key.in_(part)))
    dropped = [a.id for a in alias_rows if a.query_key not in asked_alias]
    for part in chunks(dropped):
        conn.execute(alias_confirmations.delete().where(alias_confirmations.c.alias_id.in_(part)))
        conn.execute(aliases.delete().where(aliases.c.id.in_(part)))
    if dropped:
        bump_generation(conn)  # every server process drops them at its next sync
    relabelled = _relabel(conn, set(also_candidates), keys, words)
    return {"searches": len(rows), "aliases": len(dropped), "candidates_relabelled": relabelled}


def _still_asked(conn: sa.Connection, query_keys: set[str], alias_keys: set[str]) -> tuple[set[str], set[str]]:
    """Which of these wordings (normalize_query) and alias keys searches not erased still have: they
    are other people's too. One pass over the searches, only when there is something to look for."""
    asked: set[str] = set()
    asked_alias: set[str] = set()
    if not (query_keys or alias_keys):
        return asked, asked_alias
    for query in conn.execute(sa.select(searches.c.query).where(searches.c.query != ERASED)).scalars():
        key = normalize_query(query)
        if key in query_keys:
            asked.add(key)
        if alias_keys and alias_key(query) in alias_keys:
            asked_alias.add(alias_key(query))
    return asked, asked_alias


def _relabel(conn: sa.Connection, candidate_ids: set[str], keys: set[str], words: Collection[str]) -> int:
    """Candidates the erased questions were part of: a label worded as one of them (or holding the
    erased words) is replaced by the shortest remaining question, and keywords no remaining question
    holds are dropped; notifications that quote the label are rewritten too. Returns how many changed."""
    from .clusters import keywords as keywords_of

    folded = [w.casefold() for w in words]
    sorted_keys = sorted(keys)

    def worded_as_erased(label: str) -> bool:
        label_key = normalize_query(label.rstrip("…"))
        at = bisect.bisect_left(sorted_keys, label_key)  # keys starting with label_key sort right here
        return (at < len(sorted_keys) and sorted_keys[at].startswith(label_key)) or any(w in label.casefold() for w in folded)

    changed = 0
    for part in chunks(sorted(candidate_ids)):
        for c in conn.execute(sa.select(candidates.c.id, candidates.c.label, candidates.c.keywords).where(candidates.c.id.in_(part))).all():
            remaining = [q for table in (candidate_members, candidate_history) for q in conn.execute(
                sa.select(searches.c.query).join(table, table.c.search_id == searches.c.id)
                .where(table.c.candidate_id == c.id, searches.c.query != ERASED)
                .order_by(searches.c.created_at)
            ).scalars()]  # its current questions, or those it had when it was retired
            remaining = [q for q in remaining if not any(w in q.casefold() for w in folded)]
            asked = " ".join(remaining).casefold()
            old_words = json.loads(c.keywords)
            kept_words = [w for w in old_words if w.casefold() in asked and not any(f in w.casefold() for f in folded)]
            if old_words and not kept_words and remaining:
                kept_words = keywords_of([remaining])[0]  # none left: read afresh from the questions that are
            label = c.label
            if worded_as_erased(c.label):
                label = min(remaining, key=len)[:80] if remaining else ERASED
            if label == c.label and kept_words == old_words:
                continue
            conn.execute(candidates.update().where(candidates.c.id == c.id).values(
                label=label, keywords=json.dumps(kept_words, ensure_ascii=False), updated_at=time.time()))
            if label != c.label:
                _rewrite_notifications(conn, c.id, label)
            changed += 1
    return changed


def _rewrite_notifications(conn: sa.Connection, candidate_id: str, label: str) -> None:
    """Notifications about the candidate (article_published) quote its label: the new one, sent or not."""
    rows = conn.execute(sa.select(outbox.c.id, outbox.c.payload).where(
        outbox.c.kind == "article_published", outbox.c.dedupe_key.like(f"%:candidate:{candidate_id}:%"))).all()
    for row in rows:
        payload = json.loads(row.payload)
        if isinstance(payload.get("candidate"), dict):
            payload["candidate"]["label"] = label
            conn.execute(outbox.update().where(outbox.c.id == row.id).values(payload=json.dumps(payload, ensure_ascii=False)))


def _lock_writers(conn: sa.Connection) -> None:
    """Hold off cluster rebuilds, joins and promotes (PostgreSQL) before anything is read, so none
    can add a row of the person's between finding and forgetting (SQLite's writer lock does it)."""
    lock_candidates(conn)
    advisory_lock(conn, "pool_vectors")


def forget_person(engine: sa.Engine, person: Person) -> dict[str, int]:
    """Find and forget the person in one transaction."""
    with writing(engine) as conn:
        _lock_writers(conn)
        return forget(conn, find(conn, person), person)


def show_person(engine: sa.Engine, person: Person) -> dict:
    with engine.connect() as conn:
        return describe(conn, find(conn, person), person)


def forget_before(engine: sa.Engine, before: float) -> dict[str, int]:
    """Retention: forget every search made before `before` (epoch seconds), with the rest of its
    typing (a question typed across the cutoff goes whole: seconds after it), and the requesters of
    their events; the figures of those days stay as they were."""
    with writing(engine) as conn:
        _lock_writers(conn)
        ids = set(conn.execute(
            sa.select(searches.c.id).where(searches.c.created_at < before, searches.c.query != ERASED)
        ).scalars())
        found = Found(search_ids=whole_typings(conn, ids))
        for part in chunks(sorted(found.search_ids)):
            found.event_ids |= set(conn.execute(sa.select(events.c.id).where(
                events.c.search_id.in_(part), events.c.email.is_not(None)
                | (events.c.customer_id.is_not(None) & ~events.c.customer_id.startswith(PSEUDONYM_PREFIX))
            )).scalars())
        _built_from(conn, found, Person())
        pseudonymise(conn, events, found.event_ids, {})
        # Learned aliases stay: they are what deflect learned, worded as (masked) questions, not who asked.
        done = erase_searches(conn, found.search_ids, also_candidates=found.candidate_ids)
        return done | {"requester_events": len(found.event_ids)}
