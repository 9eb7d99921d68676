"""Taking in an event on a search: check it against the search, store it, maybe teach an alias.

deflect.events stores searches and events; this module holds the rules a Runtime applies
before storing one: the search must exist (it may still be queued in this process's or
another process's background writer), an item named must have been shown or exist, only ideas
take votes (with the ideas API's rules), a click or an answer about an item must be about one the
search showed (without item_id it is about the search as a whole: "this answered my question"),
the same event twice is stored once, and a helpful event on an item may confirm a learned alias,
which the engine then uses at once.
"""

from __future__ import annotations

import time

from .refresh import model_id_for

# Events about an item the visitor must have been shown (votes follow the ideas board's rules).
SHOWN_ONLY = ("click", "helpful", "not_helpful")


def record_event(
    runtime,
    search_id: str,
    event_type: str,
    item_id: str | None = None,
    item_type: str | None = None,
    requester: dict | None = None,
    client: str | None = None,
) -> dict:
    """Store one event (committed before this returns); a helpful one may teach an alias."""
    from . import aliases
    from .db import writing
    from .events import (
        WRITE_GRACE_SECONDS,
        EventError,
        add_requester,
        get_search,
        insert_event,
        lock_search,
        same_event,
        search_age,
    )
    from .ideas import IdeaError, IdeaNotFound, show_id
    from .outage import DatabaseUnavailable
    from .votes import vote

    search = get_search(runtime.db, search_id)
    if search is None:  # it may still be queued in this process's background writer...
        if not runtime.search_log.flush():
            # A backlog (searches made while the database was away) is still being written: this
            # search may be in it, so "try again shortly" (503), not "no such search" (404).
            raise DatabaseUnavailable("searches made while the database was away are still being written")
        search = get_search(runtime.db, search_id)
    age = search_age(search_id)
    while search is None and age is not None and -WRITE_GRACE_SECONDS < age < WRITE_GRACE_SECONDS:
        time.sleep(0.05)  # ...or in another server process's writer
        search = get_search(runtime.db, search_id)
        age = search_age(search_id)
    if search is None:
        raise EventError(404, "not_found", "search_id", f"no search with id {show_id(search_id)}")
    if event_type == "vote" and not item_id:
        raise EventError(400, "invalid_field", "item_id", "a vote event needs item_id (the idea voted for)")
    # Without an item the event is about the search: an item_type alone names nothing.
    item_type = _item_type(runtime, search, item_id, item_type) if item_id else None
    if event_type == "vote" and item_type != "idea":
        raise EventError(400, "invalid_field", "item_type", "only ideas can be voted on")
    if event_type in SHOWN_ONLY and item_id and (item_type, item_id) not in _shown(search):
        # A click or an answer is about something the visitor saw; anything else would let any
        # script move an article's figures, or teach it as the answer to any question.
        raise EventError(
            409, "not_shown", "item_id", f"{item_type} {show_id(item_id)} was not among this search's results"
        )
    vector = None
    if event_type == "helpful" and item_id:
        # The stored (masked) question: the alias learns that wording. A hit in the embedder's query
        # cache unless redaction changed it (the search encoded the question as typed).
        vector = runtime.engine.embedder.encode([search["query"]])[0]
    alias = voted = None
    with writing(runtime.db) as conn:
        # One writer per search at a time (PostgreSQL row lock; SQLite's writers are serialised
        # already), so that two copies of one event sent at once cannot both be stored.
        lock_search(conn, search_id)
        earlier = None if event_type == "vote" else same_event(conn, search_id, event_type, item_type, item_id)
        if earlier is not None:  # a retry or a double click: stored and counted once (votes: once per requester)
            add_requester(conn, earlier, requester)  # but who asked is kept, if only this copy says
            return _answer(earlier, search_id, event_type, item_type, item_id) | {"duplicate": True}
        if event_type == "vote":  # the same rules as POST /api/ideas/<id>/vote: closed ideas 409, one per requester
            try:
                voted = vote(conn, item_id, requester, search_id)
            except IdeaNotFound as exc:
                raise EventError(404, "not_found", "item_id", str(exc)) from None
            except IdeaError as exc:
                raise EventError(409, "conflict", "item_id", str(exc)) from None
        event_id = insert_event(conn, search, event_type, item_type, item_id, requester)
        if event_type == "helpful" and item_id:
            settings = runtime.settings
            policy = aliases.AliasPolicy(
                settings.min_confirmations,
                settings.alias_limit_per_session,
                settings.alias_limit_per_client,
                settings.overturn_confirmations,
            )
            rate_key = search.get("session") or (f"client:{client}" if client else f"search:{search_id}")
            model = model_id_for(settings)
            alias = aliases.confirm(conn, search, item_type, item_id, rate_key, policy, vector, model, client=client)
    if alias and alias["status"] == "learned":
        runtime.refresh_aliases()
    out = _answer(event_id, search_id, event_type, item_type, item_id)
    if alias:
        out["alias"] = alias
    if voted:
        out["vote"] = {"idea_id": voted["id"], "votes": voted["votes"], "counted": voted["counted"]}
    return out


def _answer(event_id: int, search_id: str, event_type: str, item_type: str | None, item_id: str | None) -> dict:
    out = {"event_id": event_id, "search_id": search_id, "type": event_type}
    if item_id:
        out |= {"item_type": item_type, "item_id": item_id}
    return out


def _shown(search: dict) -> set[tuple[str, str]]:
    return {(r["item_type"], r["item_id"]) for r in search["results"]}


def _item_type(runtime, search: dict, item_id: str, item_type: str | None) -> str:
    """The type of a known item (shown in the search, an indexed article or an idea)."""
    from .events import EventError
    from .ideas import get_idea, show_id

    shown = _shown(search)
    candidates = [item_type] if item_type else ["article", "idea"]
    for kind in candidates:  # what the search showed first: an idea and an article may share an id
        if (kind, item_id) in shown:
            return kind
    for kind in candidates:
        if kind == "article" and item_id in runtime.engine.articles.position:
            return kind
        if kind == "idea" and get_idea(runtime.db, item_id) is not None:
            return kind
    raise EventError(404, "not_found", "item_id", f"no {item_type or 'article or idea'} with id {show_id(item_id)}")
