"""The clustering core (deflect.clusters): real embeddings of a small labelled set, plus pure logic."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import DATA, read_jsonl

from deflect import clusters


@pytest.fixture(scope="module")
def labelled(embedder):
    rows = read_jsonl(DATA / "cluster_questions.jsonl")
    return rows, embedder.encode([r["text"] for r in rows])


def test_a_tight_group_lets_a_paraphrase_join(embedder):
    """Three copies of one question: their loosest member is ~1.0 from the centre, but a
    rewording must still be able to join between rebuilds (JOIN_CEILING)."""
    members = embedder.encode(["what is the capital of mongolia"] * 3)
    paraphrase = embedder.encode(["what's the capital city of mongolia"])
    threshold = clusters.join_threshold(members, 0.5)
    assert threshold == clusters.JOIN_CEILING
    assert clusters.assign(paraphrase, clusters.centroid(members)[None, :], np.array([threshold])).tolist() == [0]
    unrelated = embedder.encode(["how do I export my tasks to csv"])
    assert clusters.assign(unrelated, clusters.centroid(members)[None, :], np.array([threshold])).tolist() == [-1]


def test_topics_are_found_without_being_told_how_many(labelled):
    rows, vectors = labelled
    assigned = clusters.cluster_vectors(vectors)
    topics = sorted({r["label"] for r in rows if r["label"]})
    candidates = set(assigned[assigned >= 0].tolist())
    assert len(candidates) == len(topics)
    for topic in topics:
        members = [a for r, a in zip(rows, assigned) if r["label"] == topic]
        best, count = Counter(members).most_common(1)[0]
        assert best >= 0 and count >= 5, (topic, members)
        holders = [r["label"] for r, a in zip(rows, assigned) if a == best]
        assert holders.count(topic) / len(holders) >= 0.8, (topic, holders)
    # The three unrelated questions are not forced into a topic.
    strays = [a for r, a in zip(rows, assigned) if r["label"] is None]
    assert all(a == -1 for a in strays)


def test_ids_are_ordered_largest_first_and_small_groups_stay_unclustered(labelled):
    rows, vectors = labelled
    gantt = [i for i, r in enumerate(rows) if r["label"] == "gantt"][:2]
    offline = [i for i, r in enumerate(rows) if r["label"] == "offline"]
    picked = gantt + offline
    assigned = clusters.cluster_vectors(vectors[picked], clusters.ClusterParams(min_size=3))
    assert list(assigned[:2]) == [-1, -1]  # two gantt questions are below min_size
    assert set(assigned[2:]) == {0}
    sizes = Counter(clusters.cluster_vectors(vectors).tolist())
    ordered = [sizes[c] for c in sorted(c for c in sizes if c >= 0)]
    assert ordered == sorted(ordered, reverse=True)


def test_tiny_pools_do_not_break():
    assert clusters.cluster_vectors(np.zeros((0, 8), dtype=np.float32)).shape == (0,)
    one = np.eye(8, dtype=np.float32)[:1]
    assert clusters.cluster_vectors(one).tolist() == [-1]
    same = np.tile(np.eye(8, dtype=np.float32)[:1], (4, 1))
    assert clusters.cluster_vectors(same).tolist() == [0, 0, 0, 0]


def test_labels_and_keywords_are_readable(labelled):
    rows, vectors = labelled
    texts = [r["text"] for r in rows if r["label"] == "invoice_vat"]
    other = [r["text"] for r in rows if r["label"] == "gantt"]
    words = clusters.keywords([texts, other])
    assert "vat" in words[0] and "gantt" in words[1]
    assert all(w in " ".join(texts).lower() for w in words[0])  # surface words, not stems
    mask = [r["label"] == "invoice_vat" for r in rows]
    label = clusters.label_for(texts, vectors[mask], words[0])
    assert label in texts and len(label) <= 81


def test_korean_keywords_come_from_bigrams_as_words():
    groups = [
        ["비밀번호를 잊어버렸어요", "비밀번호 재설정은 어떻게 하나요", "비밀번호가 기억나지 않아요"],
        ["다크 모드가 있나요", "다크 모드 지원 계획", "화면을 어둡게 하는 모드"],
    ]
    words = clusters.keywords(groups)
    assert words[0][0] == "비밀번호"
    assert {"다크", "모드"} <= set(words[1])


def test_keywords_skip_overlong_words():
    token = "x9f3" * 20  # e.g. a pasted error id, in every question of the group
    groups = [[f"sync fails with {token}", f"sync error {token} again", "sync keeps failing"], ["dark mode please"]]
    words = clusters.keywords(groups)
    assert token not in words[0] and "sync" in words[0]
    assert all(len(w) <= clusters.MAX_KEYWORD_CHARS for group in words for w in group)
    # An unspaced script's run is longer than that, but its bigrams are shown.
    run = "請求書の会社名を変更したいのですが設定画面のどこから変更できますか教えてください"
    assert len(run) > clusters.MAX_KEYWORD_CHARS
    assert clusters.keywords([[run, run + "。", run + "！"], ["dark mode please"]])[0]


def test_long_labels_are_cut_at_a_word():
    text = "please " * 30
    vec = np.eye(4, dtype=np.float32)[:1]
    label = clusters.label_for([text], vec, ["please"], max_chars=40)
    assert label.endswith("…") and len(label) <= 41 and "  " not in label


def test_match_previous_keeps_ids_while_most_members_stay():
    old = {"a": {1, 2, 3, 4}, "b": {10, 11, 12}, "c": {20, 21, 22, 23}}
    new = [{1, 2, 3, 5, 6}, {10, 30, 31}, {20, 21, 22, 23, 24, 25, 26}]
    present = set().union(*new, *old.values())
    got = clusters.match_previous(new, old, present)
    assert got == {0: "a", 2: "c"}  # group 1 kept only one of b's three members


def test_match_previous_gives_each_old_id_once_biggest_overlap_first():
    old = {"a": {1, 2, 3, 4, 5, 6}}
    new = [{1, 2, 3, 4}, {5, 6}]
    assert clusters.match_previous(new, old, set(range(1, 7))) == {0: "a"}
    # Members that left the pool do not count against the candidate ...
    assert clusters.match_previous([{1, 2}], {"a": {1, 2, 99, 98}}, {1, 2}) == {0: "a"}
    # ... but members still in the pool, unclustered now, do.
    assert clusters.match_previous([{1, 2}], {"a": {1, 2, 99, 98}}, {1, 2, 99, 98}) == {}


def test_assign_joins_the_nearest_close_enough_centroid():
    cents = np.eye(3, dtype=np.float32)
    near_first = np.array([[0.9, 0.1, 0.0]], dtype=np.float32)
    far = np.array([[0.5, 0.5, 0.5]], dtype=np.float32)
    vectors = np.vstack([near_first / np.linalg.norm(near_first), far / np.linalg.norm(far)])
    got = clusters.assign(vectors, cents, np.array([0.8, 0.8, 0.8]))
    assert got.tolist() == [0, -1]
    assert clusters.assign(vectors[:0], cents, np.ones(3)).shape == (0,)


def test_the_loosest_member_asked_again_joins_whatever_it_is_batched_with(labelled):
    """Its similarity is the threshold itself; computed in another batch it may be a few float32
    bits under it (seen: a repeated question that joined only when read alone)."""
    rows, vectors = labelled
    members = vectors[np.array([r["label"] == "offline" for r in rows])]
    centre = clusters.centroid(members)
    threshold = clusters.join_threshold(members, 0.1)
    loosest = members[int(np.argmin(members @ centre))]
    assert clusters.assign(loosest[None, :], centre[None, :], np.array([threshold + 2e-6])).tolist() == [0]
    assert clusters.assign(loosest[None, :], centre[None, :], np.array([threshold + 1e-3])).tolist() == [-1]
    batched = np.vstack([vectors, loosest[None, :]])
    assert clusters.assign(batched, centre[None, :], np.array([threshold]))[-1] == 0


def test_join_threshold_is_the_loosest_member_or_the_floor(labelled):
    rows, vectors = labelled
    mask = np.array([r["label"] == "offline" for r in rows])
    members = vectors[mask]
    loosest = float((members @ clusters.centroid(members)).min())
    assert loosest < clusters.JOIN_CEILING  # a group with some spread: its loosest member decides
    assert clusters.join_threshold(members, 0.1) == pytest.approx(loosest)
    assert clusters.join_threshold(members, 0.99) == 0.99
    others = vectors[np.array([r["label"] == "gantt" for r in rows])]
    got = clusters.assign(others, clusters.centroid(members)[None, :], np.array([loosest]))
    assert (got == -1).all()
