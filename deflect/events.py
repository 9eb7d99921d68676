"""Searches: every suggest call is recorded with the results it showed."""

from __future__ import annotations

import time
import uuid

import sqlalchemy as sa

from .db import search_results, searches


def record_search(
    engine: sa.Engine,
    query: str,
    session: str | None,
    locale: str | None,
    answered: bool,
    results: list[dict],
    index_version: str | None,
) -> str:
    """Store one search and its ranked results; returns the new search_id once committed."""
    search_id = uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(
            searches.insert().values(
                id=search_id,
                query=query,
                session=session,
                locale=locale,
                created_at=time.time(),
                answered=answered,
                top_score=results[0]["score"] if results else None,
                index_version=index_version,
            )
        )
        if results:
            conn.execute(
                search_results.insert(),
                [
                    {"search_id": search_id, "rank": rank, "item_type": r["type"], "item_id": r["id"], "score": r["score"]}
                    for rank, r in enumerate(results, 1)
                ],
            )
    return search_id


def get_search(engine: sa.Engine, search_id: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(searches).where(searches.c.id == search_id)).first()
        if row is None:
            return None
        shown = conn.execute(
            sa.select(search_results).where(search_results.c.search_id == search_id).order_by(search_results.c.rank)
        )
        return dict(row._mapping) | {"results": [dict(r._mapping) for r in shown]}
