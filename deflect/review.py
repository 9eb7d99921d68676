"""Review of idea candidates: promote, merge, dismiss; and closing the loop with their requesters.

Promoting or merging records everyone in the candidate who left contact details as a vote
(with their details) on the idea; people who ask later are added while the idea is open.
When the index changes and an article now answers most of a candidate's queries, each
requester gets one `article_published` notification in the outbox.

Promoting or merging also teaches retrieval: the candidate's questions (its
REVIEW_ALIAS_LIMIT most recent distinct ones) become active aliases of the idea, in the same
transaction, so the next customer who asks one of them is shown the idea.

Questions the admin leaves out (`exclude`) are not about the idea: their wordings are recorded
(candidate_exclusions), so neither they nor the same words asked again later become aliases,
requesters or notifications.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager

import sqlalchemy as sa

from . import aliases
from .candidate_views import answered_by_article, candidate_requesters, get_candidate, kept_members, member_queries
from .candidates import (
    CandidateError,
    candidate_exclusions,
    candidates,
    excluded_keys,
    lock_candidates,
)
from .db import search_results, searches, writing
from .events import normalize_query
from .ideas import (
    CLOSED_STATUSES,
    DuplicateTitle,
    IdeaError,
    create_idea,
    free_idea_id,
    get_idea,
    resolve_idea,
    show_id,
    slugify,
)
from .outbox import enqueue, requester_key
from .pool import chunks, pool_matrix
from .votes import add_vote, with_requesters
from .wording import alias_key


def _for_review(conn: sa.Connection, candidate_id: str, allowed: tuple[str, ...], action: str) -> dict:
    """The candidate, if its status allows `action`. Holds the candidates lock to the end of the
    transaction: two admins (or a double click on two server processes) cannot both promote it,
    nor a rebuild drop it meanwhile."""
    lock_candidates(conn)
    row = conn.execute(sa.select(candidates).where(candidates.c.id == candidate_id)).first()
    if row is None:
        raise CandidateError(404, "id", f"no candidate with id {show_id(candidate_id)}")
    if row.status not in allowed:
        raise CandidateError(409, "status", f"candidate {show_id(candidate_id)} is {row.status}; it cannot be {action}")
    return dict(row._mapping)


# Most aliases one promote or merge creates: the most recent distinct questions of the candidate.
# A very large candidate's older wordings add little, and each alias is a passage in retrieval.
REVIEW_ALIAS_LIMIT = 50


def _member_questions(conn: sa.Connection, candidate_id: str, limit: int = REVIEW_ALIAS_LIMIT) -> list[str]:
    """The candidate's distinct questions (by wording.alias_key, as their aliases are), most recent
    first, at most `limit`; none worded like a question the admin left out (candidate_exclusions,
    by normalize_query), and none an article answered when it was asked: the KB has its answer (the
    asker filed a ticket anyway, or said it did not help), and an alias would put the idea above it
    for everyone who asks alike. Their askers still become requesters."""
    skipped = excluded_keys(conn, candidate_id)
    members = member_queries(conn, candidate_id)
    by_article = answered_by_article(conn, [search_id for search_id, _ in members])
    seen: dict[str, str] = {}
    for search_id, query in members:
        key, typed = alias_key(query), normalize_query(query)
        if typed and key not in seen and typed not in skipped and search_id not in by_article:
            seen[key] = query
            if len(seen) >= limit:
                break
    return list(seen.values())


def _teach(conn: sa.Connection, candidate_id: str, idea_id: str) -> int:
    """The admin's decision confirms the candidate's questions are about the idea: aliases (but
    for those the admin left out: an outlier taught as an alias would answer with the idea)."""
    return aliases.from_review(conn, "idea", idea_id, _member_questions(conn, candidate_id), candidate_id)


def _leave_out(conn: sa.Connection, candidate_id: str, left_out: Collection[str]) -> None:
    """Record the wordings of the questions (search ids) the admin leaves out of the candidate."""
    members = dict(member_queries(conn, candidate_id))
    strangers = sorted(str(s) for s in left_out if s not in members)
    if strangers:
        raise CandidateError(400, "exclude", f"exclude names {show_id(strangers[0])}, which is no question of this candidate")
    before = excluded_keys(conn, candidate_id)
    keys = {normalize_query(members[s]) for s in left_out} - before
    if keys and {normalize_query(q) for q in members.values()} <= before | keys:
        raise CandidateError(400, "exclude", "exclude leaves out every question of this candidate; dismiss it instead")
    if keys:
        now = time.time()
        conn.execute(candidate_exclusions.insert(), [
            {"candidate_id": candidate_id, "query_key": key, "excluded_at": now} for key in sorted(keys)
        ])
        _refit(conn, candidate_id)


def _refit(conn: sa.Connection, candidate_id: str) -> None:
    """The candidate's centre and joining threshold from the questions it keeps.

    A rebuild fits them to every member; left as they were, the questions the admin left out would
    go on pulling in newcomers like them until the next rebuild (a dark-mode question left out of a
    Salesforce candidate drew more dark-mode askers, who became the Salesforce idea's requesters and
    heard when it shipped). The threshold only tightens: the old one is its floor.
    """
    import numpy as np

    from .clusters import centroid, join_threshold
    from .pool import pool_vectors

    row = conn.execute(
        sa.select(candidates.c.join_threshold, candidates.c.centroid).where(candidates.c.id == candidate_id)
    ).first()
    if row is None or row.centroid is None:
        return
    dim = len(row.centroid) // 4  # float32
    kept = [search_id for search_id, _ in kept_members(conn, candidate_id)]
    by_model: dict[str, list[np.ndarray]] = {}
    for part in chunks(kept):
        for found in conn.execute(sa.select(pool_vectors).where(pool_vectors.c.search_id.in_(part))):
            vector = np.frombuffer(found.vector, dtype=np.float32)
            if len(vector) == dim:  # after a model change some may be the new model's: never mixed in
                by_model.setdefault(found.model, []).append(vector)
    if not by_model:
        return  # no vectors kept for them in its space: the next rebuild fits it
    vectors = np.stack(max(by_model.values(), key=len))  # one model's vectors
    conn.execute(candidates.update().where(candidates.c.id == candidate_id).values(
        centroid=centroid(vectors).astype(np.float32).tobytes(),
        join_threshold=join_threshold(vectors, row.join_threshold if row.join_threshold is not None else 0.0),
    ))


def _idea_answer(engine: sa.Engine, idea_id: str) -> dict:
    """The idea as every other idea answer shows it: with its requesters' count and MRR."""
    with engine.connect() as conn:
        return with_requesters(conn, get_idea(conn, idea_id))


def _record_requesters(conn: sa.Connection, candidate_id: str, idea_id: str) -> int:
    """Each requester of the candidate becomes a vote (with their details) on the idea, once; not
    those who asked only questions the admin left out."""
    from .votes import requesters as idea_requesters

    target = resolve_idea(conn, idea_id) or {"id": idea_id}
    known = {requester_key(p) for p in idea_requesters(conn, target["id"])}  # a cheap first filter
    added = 0
    for person in candidate_requesters(conn, [search_id for search_id, _ in kept_members(conn, candidate_id)]):
        if requester_key(person) in known:
            continue  # on record: what a question says of its asker (public input) changes nothing there
        requester = {k: person.get(k) for k in ("customer_id", "email", "mrr")}
        added += add_vote(conn, idea_id, requester, person.get("search_id"))[1]
    return added


def sync_requesters(engine: sa.Engine) -> int:
    """People who asked after a candidate was promoted or merged are recorded on its idea too.

    When that idea has since been merged into another, they go where its votes went: the
    end of the merged_into chain, while that one is open, planned or in progress.
    """
    added = 0
    with writing(engine) as conn:
        reviewed = conn.execute(
            sa.select(candidates.c.id, candidates.c.idea_id)
            .where(candidates.c.status.in_(("promoted", "merged")), candidates.c.idea_id.is_not(None),
                   candidates.c.active == sa.true())
        ).all()
        for candidate_id, idea_id in reviewed:
            idea = resolve_idea(conn, idea_id)
            if idea is not None and idea["status"] not in CLOSED_STATUSES:
                added += _record_requesters(conn, candidate_id, idea["id"])
    return added


def promote(
    engine: sa.Engine, candidate_id: str, title: str | None = None, description: str | None = None,
    exclude: Collection[str] = (),
) -> dict:
    """Create an idea from the candidate; its requesters become the idea's first votes, its questions
    aliases (but for `exclude`: search ids of questions that are not about it)."""
    with writing(engine) as conn:
        _for_review(conn, candidate_id, ("new", "dismissed"), "promoted")
        _leave_out(conn, candidate_id, exclude)
        # The title is the team's to write: a candidate's label is one customer's own question, and
        # an idea's title and id are public (the board, other visitors' suggestions, its URL).
        if title is None or (isinstance(title, str) and not title.strip()):
            raise CandidateError(400, "title", "title is required: the idea's title as the public board shows it "
                                               "(the candidate's label is a customer's own words)")
        # No description unless the admin writes one: the public board and other visitors'
        # suggestions show it, and customers' own questions may hold names, emails or order
        # numbers. The kept questions still find the idea, as its learned aliases (_teach).
        description = description if description is not None else ""
        idea_id = free_idea_id(conn, slugify(title if isinstance(title, str) else "idea"))
        try:
            idea = create_idea(conn, {"id": idea_id, "title": title, "description": description})
        except DuplicateTitle as exc:  # nothing is written: the candidate stays new, to merge into that idea
            raise _duplicate(exc) from None
        except IdeaError as exc:
            raise CandidateError(400, exc.field, str(exc)) from None
        added = _record_requesters(conn, candidate_id, idea["id"])
        taught = _teach(conn, candidate_id, idea["id"])
        now = time.time()
        conn.execute(candidates.update().where(candidates.c.id == candidate_id).values(
            status="promoted", idea_id=idea["id"], reviewed_at=now, updated_at=now
        ))
    return {"candidate": get_candidate(engine, candidate_id), "idea": _idea_answer(engine, idea["id"]), "requesters_added": added,
            "aliases_added": taught}


def _duplicate(exc: DuplicateTitle) -> CandidateError:
    """The 409 for a promote whose title another idea has: what to do instead, and that idea's id."""
    if exc.open:
        hint = f"merge the candidate into {show_id(exc.idea_id)}, or promote it with another title"
    else:
        hint = "promote the candidate with another title"
    return CandidateError(409, "title", f"{exc}; {hint}", {"idea_id": exc.idea_id})


def merge(engine: sa.Engine, candidate_id: str, idea_id, exclude: Collection[str] = ()) -> dict:
    """Fold the candidate into an existing open idea: its requesters become votes there, its questions
    aliases (but for `exclude`, as in promote)."""
    with writing(engine) as conn:
        _for_review(conn, candidate_id, ("new", "dismissed"), "merged")
        _leave_out(conn, candidate_id, exclude)
        if not isinstance(idea_id, str) or not idea_id:
            raise CandidateError(400, "idea_id", "idea_id must be the id of an existing idea")
        idea = get_idea(conn, idea_id)
        if idea is None:
            raise CandidateError(404, "idea_id", f"no idea with id {show_id(idea_id)}")
        if idea["status"] in CLOSED_STATUSES:
            raise CandidateError(409, "idea_id", f"idea {show_id(idea_id)} is {idea['status']}; merge into an open idea")
        added = _record_requesters(conn, candidate_id, idea_id)
        taught = _teach(conn, candidate_id, idea_id)
        now = time.time()
        conn.execute(candidates.update().where(candidates.c.id == candidate_id).values(
            status="merged", idea_id=idea_id, reviewed_at=now, updated_at=now
        ))
    return {"candidate": get_candidate(engine, candidate_id), "idea": _idea_answer(engine, idea_id), "requesters_added": added,
            "aliases_added": taught}


def dismiss(engine: sa.Engine, candidate_id: str) -> dict:
    """Hide the candidate until it grows markedly (cluster_regrow_factor times its size now)."""
    with writing(engine) as conn:
        row = _for_review(conn, candidate_id, ("new",), "dismissed")
        now = time.time()
        conn.execute(candidates.update().where(candidates.c.id == candidate_id).values(
            status="dismissed", dismissed_size=max(row["size"], 1), reviewed_at=now, updated_at=now
        ))
    return {"candidate": get_candidate(engine, candidate_id)}


# --- closing the loop: an article now answers a candidate ---------------------------------


def _news(changed_at: Mapping[str, float | None] | None, asked: tuple[float, set[str]] | None, article: str) -> bool:
    """Whether the article is news to whoever asked (check_answered)."""
    if changed_at is None:
        return True
    asked_at, shown = asked or (0.0, set())
    when = changed_at.get(article)
    return article not in shown if when is None else when > asked_at


def _asked(engine: sa.Engine, search_ids: list[str]) -> dict[str, tuple[float, set[str]]]:
    """search id -> (when it was asked, the articles it showed)."""
    out: dict[str, tuple[float, set[str]]] = {}
    with engine.connect() as conn:
        for part in chunks(search_ids):
            for search_id, created_at in conn.execute(
                sa.select(searches.c.id, searches.c.created_at).where(searches.c.id.in_(part))
            ):
                out[search_id] = (created_at, set())
            for search_id, item_id in conn.execute(
                sa.select(search_results.c.search_id, search_results.c.item_id)
                .where(search_results.c.search_id.in_(part), search_results.c.item_type == "article")
            ):
                out[search_id][1].add(item_id)
    return out


def check_answered(engine: sa.Engine, version: str, answer, encode, model_id: str,
                   changed_at: Mapping[str, float | None] | None = None,
                   hold: Callable[[], AbstractContextManager] = contextlib.nullcontext,
                   articles: Mapping[str, dict] | None = None) -> int:
    """After the index changed, notify the requesters of candidates a published article now answers.

    `answer(vectors, texts)` returns (top article id, answered) per query. A candidate counts
    as answered when more than half of its queries get the same article with answered=true, an
    article that is news to whoever asked: published or edited after the question was asked
    (`changed_at`: article id -> epoch seconds, from the index manifest), or, where that is not
    known (None), one their search did not show them. An article that was there all along is no
    news, even when it now comes first because an idea stopped being suggested. Each candidate
    is checked inside `hold()` (the board's lock: one candidate at a time, not the whole pass).
    `articles` (id -> {"title", "url"}) names the article in the notification, for the mailer.
    """
    queued = 0
    with engine.connect() as conn:
        due = [dict(r._mapping) for r in conn.execute(
            sa.select(candidates.c.id, candidates.c.checked_version)
            .where(candidates.c.active == sa.true(), candidates.c.status != "dismissed",
                   candidates.c.answered_by.is_(None))
        ) if r.checked_version != version]
    for cand in due:
        with hold():
            queued += _check_one(engine, cand, version, answer, encode, model_id, changed_at, articles or {})
    return queued


def _check_one(engine: sa.Engine, cand: dict, version: str, answer, encode, model_id: str,
               changed_at: Mapping[str, float | None] | None, articles: Mapping[str, dict]) -> int:
    """check_answered for one candidate: the notifications it queued."""
    queued = 0
    with engine.connect() as conn:
        members = kept_members(conn, cand["id"])  # a question the admin left out is not about it
    pool = [{"id": search_id, "query": query} for search_id, query in members]
    verdicts = answer(pool_matrix(engine, pool, encode, model_id), [query for _, query in members]) if pool else []
    seen = _asked(engine, [search_id for search_id, _ in members]) if changed_at is not None else {}
    tops = [article for (search_id, _), (article, answered) in zip(members, verdicts)
            if answered and _news(changed_at, seen.get(search_id), article)]
    winner = max(set(tops), key=tops.count) if tops else None
    with writing(engine) as conn:
        # Several server processes check after the same index change: one at a time, and
        # whoever comes second finds the candidate done.
        lock_candidates(conn)
        current = conn.execute(
            sa.select(candidates.c.checked_version, candidates.c.answered_by).where(candidates.c.id == cand["id"])
        ).first()
        if current is None or current.answered_by is not None or current.checked_version == version:
            return 0
        values = {"checked_version": version}
        if winner is not None and tops.count(winner) * 2 > len(pool):
            values["answered_by"] = winner
            for person in candidate_requesters(conn, [search_id for search_id, _ in members]):
                # Not the candidate's label: it is one customer's own question, and this goes to the others.
                payload = {"article": {"id": winner} | dict(articles.get(winner, {})), "candidate": {"id": cand["id"]}}
                queued += enqueue(conn, "article_published", f"article:{winner}:candidate:{cand['id']}", person, payload)
        conn.execute(candidates.update().where(candidates.c.id == cand["id"]).values(**values))
    return queued


