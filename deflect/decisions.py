"""What a rebuild does with reviewed candidates' questions and with the questions near them.

A reviewed (promoted, merged, dismissed) candidate keeps its own questions wherever the
clustering puts them (deflect.candidates.reviewed_questions). It gains a question at a rebuild
only by the test a new search passes between rebuilds (clusters.assign: the nearest centre, at
least as close as the candidate's loosest own question and at least cluster_join_similarity),
never just because the clustering grouped them: that made three people requesters of an "SMS
reminders" idea they never asked for (cosines 0.69, 0.53, 0.51 against a 0.70 threshold), and
let a dismissed candidate absorb unrelated questions until it came back as `new`.

Pure functions over pool indices (no database), so the rules can be tested by hand.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import clusters


def free_groups(
    groups: list[list[int]], ids: list[str], owner: dict[str, str], together: np.ndarray | None, min_size: int
) -> list[list[int]]:
    """The clustering's groups without the questions a decision holds (`owner`: search id ->
    reviewed candidate). A group that held some is cut again without them, with the whole pool's
    votes (`together`, clusters.consensus_groups): a reviewed question must not tie the others
    together, nor make them part of its candidate. What is left over is in no group."""
    out: list[list[int]] = []
    for group in groups:
        free = [j for j in group if ids[j] not in owner]
        if len(free) == len(group):
            out.append(group)
        elif free and together is not None:
            out += clusters.consensus_groups(together, free, min_size)
    return out


def join_test(vectors: np.ndarray, ids: list[str], owner: dict[str, str], tested: list[int], floor: float) -> dict[int, str]:
    """Pool index (of `tested`) -> the reviewed candidate it joins: the nearest by the centre of
    that candidate's own questions in the pool, when at least as close as their loosest one and
    `floor` (clusters.join_threshold, as join_new's stored thresholds are made). The centres
    leave out what is being tested, so a join cannot loosen the test for the next one."""
    own: dict[str, list[int]] = defaultdict(list)
    for j, search_id in enumerate(ids):
        if search_id in owner:
            own[owner[search_id]].append(j)
    if not own or not tested:
        return {}
    cids = sorted(own)
    centres = np.stack([clusters.centroid(vectors[own[cid]]) for cid in cids])
    thresholds = np.array([clusters.join_threshold(vectors[own[cid]], floor) for cid in cids])
    got = clusters.assign(vectors[tested], centres, thresholds)
    return {j: cids[g] for j, g in zip(tested, got.tolist()) if g >= 0}


def settle(
    groups: list[list[int]], mapping: dict[int, str], ids: list[str], owner: dict[str, str], joins: dict[int, str],
    min_size: int,
) -> list[tuple[list[int], str | None]]:
    """The candidates to store, as (pool indices, id it continues or None for a new one).

    Each reviewed candidate gets its own questions in the pool and those that passed the join
    test (`joins`); a group continuing another candidate (`mapping`) stays whole; a new group
    loses its joiners and is a candidate only with `min_size` questions left (the rest wait,
    unclustered, for a join or the next rebuild).
    """
    held: dict[str, list[int]] = defaultdict(list)
    for j, search_id in enumerate(ids):
        home = owner.get(search_id, joins.get(j))
        if home is not None:
            held[home].append(j)
    out: list[tuple[list[int], str | None]] = [(members, cid) for cid, members in held.items()]
    for i, group in enumerate(groups):
        if i in mapping:
            out.append((group, mapping[i]))
            continue
        left = [j for j in group if j not in joins]
        if len(left) >= min_size:
            out.append((left, None))
    return out
