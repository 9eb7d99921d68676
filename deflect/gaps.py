"""Content gaps (DESIGN section 6): the period's unanswered searches, grouped by open idea
candidate once candidates exist (DESIGN section 7), else by query."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass

import sqlalchemy as sa

from .events import normalize_query
from .wording import alias_key

# A gap row names at most this many of its searches (the latest): enough to open a few.
SEARCH_IDS_PER_GAP = 20
# Gap rows in a report unless asked for more (`/api/metrics?gaps=N`, `deflect metrics --top N`).
DEFAULT_GAPS = 10
MAX_GAPS = 100


@dataclass(frozen=True)
class OpenCluster:
    """An open idea candidate, as the content gaps show it."""

    candidate_id: str
    label: str
    keywords: tuple[str, ...]
    total_size: int  # all its members, whatever the period
    shipped_idea: str | None = None  # a reviewed candidate's idea that shipped: questions since are gaps
    answered_by: str | None = None  # an article published since that answers its questions


def content_gaps(
    pool: list[dict],
    limit: int = DEFAULT_GAPS,
    clusters: dict[str, OpenCluster] | None = None,
    reviewed: Collection[str] = (),
    first_articles: dict[str, str] | None = None,
) -> list[dict]:
    """The period's pool searches grouped, largest group first.

    A search in an open idea candidate (`clusters`: search id -> candidate) counts for that
    candidate; one in a candidate the team already promoted, merged or dismissed
    (`reviewed`) is no gap; any other (before candidates are built, or one that joined
    none yet) is grouped with the same words (wording.alias_key). Only the period's final searches count, so
    the API and the CLI give the same gaps for the same period.
    """
    clusters = clusters or {}
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for search in pool:
        if search["id"] in reviewed:
            continue
        cluster = clusters.get(search["id"])
        # Unclustered, a question groups with the same words, case, spacing and punctuation aside
        # ("Sync with Jira?" is "sync with jira"), as a learned alias is keyed.
        key = ("candidate", cluster.candidate_id) if cluster else ("query", alias_key(search["query"]))
        groups[key].append(search)
    ranked = sorted(groups.items(), key=lambda g: (-len(g[1]), -max(r["created_at"] for r in g[1]), g[0]))
    gaps = []
    for (kind, _), rows in ranked[:limit]:
        gap = {
            "query": rows[-1]["query"],
            "count": len(rows),
            # answered, yet a ticket or a "No" followed: the article shown missed the point
            "answered": sum(bool(r["answered"]) for r in rows),
            "last_seen": max(r["created_at"] for r in rows),
            "search_ids": [r["id"] for r in sorted(rows, key=lambda r: r["created_at"])][-SEARCH_IDS_PER_GAP:],
        }
        shown_first = Counter(first_articles[r["id"]] for r in rows if r["answered"] and r["id"] in (first_articles or {}))
        if shown_first:  # the article those answered questions got first, most often: the one to rewrite
            gap["answered_with"] = shown_first.most_common(1)[0][0]
        if kind == "candidate":
            cluster = clusters[rows[0]["id"]]
            gap |= {"candidate_id": cluster.candidate_id, "label": cluster.label, "query": cluster.label,
                    "keywords": list(cluster.keywords), "total_size": cluster.total_size}
            if cluster.shipped_idea:
                gap["shipped_idea"] = cluster.shipped_idea
            if cluster.answered_by:  # the gap was real when asked; someone has written the article since
                gap["answered_by"] = cluster.answered_by
        gaps.append(gap)
    return gaps


def candidates_of(conn: sa.Connection, search_ids: list[str]) -> tuple[dict[str, OpenCluster], set[str]]:
    """For these pool searches: the open (new) candidate of each that has one, and those whose
    candidate was reviewed (promoted, merged, dismissed). Retired candidates count as none, and
    so does a reviewed one for a question the admin left out of it (it is not about the idea).

    A question asked after the candidate's idea shipped counts for the candidate again: the
    feature exists, nothing answered the question, so an article is missing."""
    import json

    from .candidates import candidate_exclusions, candidate_members, candidates
    from .db import searches
    from .pool import chunks

    found = []
    for part in chunks(sorted(search_ids)):
        found += conn.execute(
            sa.select(candidate_members.c.search_id, candidates.c.id, candidates.c.label, candidates.c.keywords,
                      candidates.c.status, candidates.c.idea_id, candidates.c.answered_by, searches.c.query,
                      searches.c.created_at)
            .join(candidates, candidates.c.id == candidate_members.c.candidate_id)
            .join(searches, searches.c.id == candidate_members.c.search_id)
            .where(candidates.c.active == sa.true(), candidate_members.c.search_id.in_(part))
        ).all()
    left_out: set[tuple[str, str]] = set()
    for part in chunks(sorted({r.id for r in found if r.status != "new"})):
        left_out.update(tuple(r) for r in conn.execute(
            sa.select(candidate_exclusions.c.candidate_id, candidate_exclusions.c.query_key)
            .where(candidate_exclusions.c.candidate_id.in_(part))
        ))
    shipped = _shipped_ideas(conn, {r.idea_id for r in found if r.status in ("promoted", "merged") and r.idea_id})

    def since_shipped(r) -> str | None:
        """The shipped idea a question of a reviewed candidate was asked after (not one left out of it)."""
        when = shipped.get(r.idea_id) if r.status in ("promoted", "merged") else None
        if when is None or r.created_at < when[1] or (r.id, normalize_query(r.query)) in left_out:
            return None
        return when[0]

    reviewed = {r.search_id for r in found if r.status != "new" and (r.id, normalize_query(r.query)) not in left_out
                and not since_shipped(r)}
    rows = [r for r in found if r.status == "new" or since_shipped(r)]
    ids = sorted({r.id for r in rows})
    sizes: dict[str, int] = {}
    for part in chunks(ids):
        sizes.update(conn.execute(
            sa.select(candidate_members.c.candidate_id, sa.func.count())
            .where(candidate_members.c.candidate_id.in_(part))
            .group_by(candidate_members.c.candidate_id)
        ).all())
    open_clusters = {
        r.search_id: OpenCluster(r.id, r.label, tuple(json.loads(r.keywords or "[]")), int(sizes.get(r.id, 0)),
                                 since_shipped(r), r.answered_by)
        for r in rows
    }
    return open_clusters, reviewed


def _shipped_ideas(conn: sa.Connection, idea_ids: set[str]) -> dict[str, tuple[str, float]]:
    """idea id -> (the idea it stands for now, when that shipped), for those whose end of the
    merged_into chain is shipped."""
    from .ideas import resolve_idea

    out = {}
    for idea_id in sorted(idea_ids):
        idea = resolve_idea(conn, idea_id)
        if idea is not None and idea["status"] == "shipped" and idea.get("shipped_at") is not None:
            out[idea_id] = (idea["id"], float(idea["shipped_at"]))
    return out
