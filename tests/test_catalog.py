"""The engine's search catalog: built once per index version, updated cheaply after small edits.

Real model, real faiss; the index is a tiny KB built in tmp_path.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from conftest import TINY_KB, write_kb

from deflect import calibration as calibration_module
from deflect import catalog as catalog_module
from deflect import scoring
from deflect.calibration import _fused_scores, _top_margin, fit_calibration
from deflect.catalog import Catalog, _fused, _sum_by_item
from deflect.index import build_index
from deflect.lexical import tokenize, unspaced_share
from deflect.suggest import Engine

EXTRA = {
    f"guides/topic-{i}.md": f"# Topic {i}: {word} settings\n\nHow to change the {word} settings of a board.\n\n"
    f"- change {word} for every member\n- reset {word} to the default\n"
    for i, word in enumerate(["colour", "language", "time zone", "email digest", "sidebar", "calendar sync"])
}


@pytest.fixture
def kb(tmp_path):
    return write_kb(tmp_path / "kb", TINY_KB | EXTRA)


@pytest.fixture
def built(kb, tmp_path, embedder):
    index, _ = build_index(kb, tmp_path / "index", embedder, "test-model")
    return index


def test_item_sums_equal_add_at_exactly():
    rng = np.random.default_rng(0)
    for n_items in (1, 7, 300):
        owners = rng.integers(0, n_items, size=rng.integers(0, 2000))  # unsorted, some items empty
        vectors = rng.standard_normal((len(owners), 16)).astype(np.float32)
        expected = np.zeros((n_items, 16), dtype=np.float32)
        np.add.at(expected, owners, vectors)
        assert np.array_equal(_sum_by_item(vectors, owners, n_items, 16), expected)


def test_catalog_search_is_faiss_flat_inner_product(built, embedder, monkeypatch):
    """Dense candidates are faiss's exact top-K (a plain product when every passage is a candidate)."""
    flat = faiss.IndexFlatIP(built.vectors.shape[1])
    flat.add(built.vectors)
    catalog = Catalog.for_index(built)
    vectors = embedder.encode(["I forgot my password", "refund for the annual plan", "change the sidebar"])
    for vector in vectors:
        scores, ids = flat.search(vector.reshape(1, -1), len(built.passages))
        assert np.allclose(catalog.passage_sims(vector)[ids[0]], scores[0], atol=1e-6)
    monkeypatch.setattr(catalog_module, "DENSE_CANDIDATES", 5)  # more passages than candidates: faiss's top 5
    for vector in vectors:
        scores, ids = flat.search(vector.reshape(1, -1), 5)
        top = catalog.passage_sims(vector)
        assert np.flatnonzero(np.isfinite(top)).tolist() == sorted(ids[0].tolist())
        assert np.array_equal(top[ids[0]], scores[0].astype(np.float64))


def test_catalog_is_built_once_per_index_version(built):
    assert Catalog.for_index(built) is Catalog.for_index(built)
    assert Catalog.for_index(built).vectors is built.vectors  # shares the index's vectors, no copy


def test_catalog_for_an_edited_index_reuses_tokens_and_matches_a_fresh_build(
    kb, tmp_path, built, embedder, monkeypatch
):
    previous = Catalog.for_index(built)
    path = kb / "guides/topic-2.md"
    path.write_text(path.read_text() + "\n- show the time zone of each member\n")
    edited, report = build_index(kb, tmp_path / "index", embedder, "test-model")
    assert report.changed == ["guides/topic-2.md"]
    tokenized: list[str] = []
    monkeypatch.setattr(catalog_module, "tokenize", lambda text: tokenized.append(text) or tokenize(text))
    updated = Catalog.for_index(edited, previous)
    assert tokenized == [p["text"] for p in edited.passages if p["text"] not in {q["text"] for q in built.passages}]
    monkeypatch.undo()
    fresh = Catalog(edited.articles, edited.passages, edited.vectors)
    assert updated.tokens_by_passage == fresh.tokens_by_passage
    assert np.array_equal(updated.centroids, fresh.centroids)
    assert np.array_equal(updated.first_section, fresh.first_section)
    for query in ["time zone of each member", "refund", "password reset link"]:
        assert np.array_equal(updated.bm25.scores(tokenize(query)), fresh.bm25.scores(tokenize(query)))


def test_replace_index_answers_like_a_new_engine(kb, tmp_path, built, embedder):
    engine = Engine(embedder, built)
    (kb / "integrations/slack.md").unlink()
    write_kb(kb, {"guides/export.md": "# Export your data\n\nDownload every task as a CSV file.\n"})
    edited, _ = build_index(kb, tmp_path / "index", embedder, "test-model")
    engine.replace_index(edited)
    fresh = Engine(embedder, edited)
    for question in ["export my tasks to csv", "slack notifications", "change the sidebar", "refund"]:
        got, want = engine.suggest(question, k=5), fresh.suggest(question, k=5)
        assert [(r.id, r.score, r.snippet) for r in got.results] == [(r.id, r.score, r.snippet) for r in want.results]


def test_calibration_shortcuts_equal_the_engine_arithmetic(built, embedder):
    catalog = Catalog.for_index(built)
    rng = np.random.default_rng(1)
    for question in ["password", "refund my plan", "calendar sync", "비밀번호 재설정"]:
        vector = embedder.encode([question])[0]
        sims = (catalog.vectors @ vector).astype(np.float64)
        sims[rng.integers(0, len(sims), 3)] = -np.inf
        centroid = catalog.centroids @ vector
        tokens = tokenize(question)
        lexical = catalog.bm25.scores(tokens).astype(np.float64)
        weight = scoring.lexical_weight(unspaced_share(tokens))
        fused, _ = _fused(catalog, sims, centroid, lexical, weight)
        assert np.array_equal(_fused_scores(catalog, sims, centroid, lexical, weight), fused)
        assert _top_margin(fused) == scoring.margins(fused)[int(np.argmax(fused))]
    assert _top_margin(np.array([0.3])) == 0.5
    tied = np.array([0.2, 0.9, 0.9, 0.1])
    assert _top_margin(tied) == scoring.margins(tied)[int(np.argmax(tied))] == 0.0


def test_calibration_does_not_depend_on_how_pseudo_queries_are_blocked(built, embedder, monkeypatch):
    blocked = fit_calibration(built, embedder)
    monkeypatch.setattr(calibration_module, "CALIBRATION_BLOCK", 1)
    one_by_one = fit_calibration(built, embedder)
    assert blocked["pseudo_queries"] == one_by_one["pseudo_queries"] > 0
    for key in ("bias", "w_score", "w_margin"):
        assert blocked[key] == pytest.approx(one_by_one[key], rel=1e-4, abs=1e-6)


def test_at_most_max_queries_aliases_join_the_calibration_fit(built, embedder):
    """An import of past tickets can bring tens of thousands of aliases: the fit samples them."""
    catalog = Catalog.for_index(built)
    ids = [item["id"] for item in catalog.items]
    questions = [f"question number {n} about {ids[n % len(ids)]}" for n in range(40)]
    rows = [{"item_type": "article", "item_id": ids[n % len(ids)], "query": q, "vector": v}
            for n, (q, v) in enumerate(zip(questions, embedder.encode(questions)))]  # fmt: skip
    base = fit_calibration(built, embedder, max_queries=10)
    capped = fit_calibration(built, embedder, max_queries=10, aliases=rows)
    assert capped["aliases"] == 40
    assert capped["pseudo_queries"] == base["pseudo_queries"] + 10
    assert fit_calibration(built, embedder, max_queries=100, aliases=rows)["pseudo_queries"] > capped["pseudo_queries"]


def test_false_answer_cap_counts_only_queries_their_own_article_wins(tmp_path, embedder, monkeypatch):
    """A pseudo-query another article wins even while its own is present is a cross-reference:
    hiding its article does not make it unanswerable, so the cap must not count it."""
    cross_reference = (
        "# Workspace admin checklist\n\nWhat a new workspace admin usually does first.\n\n"
        "- change colour for every member\n- reset language to the default\n- invite the first teammates\n"
    )
    kb = write_kb(tmp_path / "kb", TINY_KB | EXTRA | {"guides/admin-checklist.md": cross_reference})
    built, _ = build_index(kb, tmp_path / "index", embedder, "test-model")
    seen = {}
    fit, cap = scoring.fit_logistic, scoring.cap_false_answers

    def spy_fit(features, labels, **kwargs):
        seen["features"], seen["labels"] = features, labels
        return fit(features, labels, **kwargs)

    def spy_cap(weights, negatives, target, threshold=0.5):
        seen["negatives"] = negatives
        return cap(weights, negatives, target, threshold)

    monkeypatch.setattr(scoring, "fit_logistic", spy_fit)
    monkeypatch.setattr(scoring, "cap_false_answers", spy_cap)
    fit_calibration(built, embedder)
    answerable, hidden = seen["labels"][0::2], seen["features"][1::2]  # examples come in (answerable, hidden) pairs
    assert 0 < answerable.sum() < len(answerable), "the KB should have both kinds of pseudo-query"
    assert np.array_equal(seen["negatives"], hidden[answerable == 1])


def test_top_items_equal_a_full_stable_sort_ties_included():
    """Engine.suggest ranks each catalog's top items by partition, not by sorting every item."""
    from deflect.suggest import _top_items

    rng = np.random.default_rng(3)
    for n in (2, 9, 60, 2_000, 20_000):
        for _ in range(50):
            scores = rng.integers(0, 15, n).astype(np.float64)  # many ties
            keep = np.sort(rng.choice(n, size=max(2, n // 2), replace=False))
            for m in (2, 5, 20):
                expected = keep[np.argsort(-scores[keep], kind="stable")[:m]]
                assert np.array_equal(_top_items(scores, keep, m), expected)


def test_locale_mask_matches_each_item_by_language():
    from deflect.catalog import locale_matches

    items = [{"id": str(i), "locale": loc} for i, loc in enumerate(["en", "ko", "en-US", "ko_KR", "de", "en"])]
    catalog = Catalog(items, [{"article": i, "kind": "title", "text": f"t{i}"} for i in range(6)], np.eye(6, 8, dtype=np.float32))
    for wanted in ("en", "EN_us", "ko-KR", "fr", "de-AT"):
        expected = [locale_matches(item["locale"], wanted) for item in items]
        assert catalog.locale_mask(wanted).tolist() == expected
    assert catalog.locale_mask("ko").tolist() == [False, True, False, True, False, False]


def test_faiss_search_runs_on_the_calling_thread_only(built, embedder, monkeypatch):
    """One query's top-K is too small to split over cores (it cost 8x the CPU on two threads)."""
    import threading

    monkeypatch.setattr(catalog_module, "DENSE_CANDIDATES", 5)
    catalog, vector = Catalog.for_index(built), embedder.encode(["refund"])[0]
    seen = []

    def request_thread() -> None:  # OpenMP keeps the count per thread: each server thread must set it
        before = faiss.omp_get_max_threads()
        catalog.passage_sims(vector)
        seen.append((before, faiss.omp_get_max_threads()))

    for _ in range(2):
        thread = threading.Thread(target=request_thread)
        thread.start()
        thread.join()
    assert [after for _, after in seen] == [1, 1]


@pytest.mark.parametrize("rows", [3, 1000, 1001, 5000])
def test_matvec_equals_the_matrix_product_on_either_side_of_the_blas_threshold(rows):
    from deflect.catalog import matvec

    rng = np.random.default_rng(rows)
    matrix = rng.standard_normal((rows, 384)).astype(np.float32)
    vector = rng.standard_normal(384).astype(np.float32)
    assert np.allclose(matvec(matrix, vector), matrix @ vector, atol=1e-4)


SIX_MORE = [
    ("Export your data", "Download every project as CSV or JSON from Settings, then Export."),
    ("Invite teammates", "Send an invitation by email from the Members page; they join your workspace."),
    ("Change your plan", "Upgrade or downgrade at any time; the difference is prorated to the day."),
]


@pytest.mark.parametrize("scoring_version", [None, scoring.SCORING_VERSION - 1, scoring.SCORING_VERSION])
def test_a_stored_calibration_fitted_on_other_scoring_is_refit_at_start(settings_factory, tiny_kb, scoring_version):
    """An index written before the fused score's arithmetic changed must not keep its old fit."""
    from deflect.runtime import Runtime

    kb = write_kb(tiny_kb.parent / "six", TINY_KB | {f"extra/topic-{n}.md": f"# {topic}\n\n{body}\n" for n, (topic, body) in enumerate(SIX_MORE)})
    settings = settings_factory(kb_dir=str(kb))
    first = Runtime(settings, sync=False)
    fitted = first.engine.calibration
    assert first.engine.index.manifest["calibration"]["scoring"] == scoring.SCORING_VERSION
    stale = {"bias": -1.0, "w_score": 1.0, "w_margin": 1.0, "target_false_answer": settings.target_false_answer}
    if scoring_version is not None:
        stale["scoring"] = scoring_version
    first.engine.index.manifest["calibration"] = stale  # the live index the next start reuses
    again = Runtime(settings, sync=False)
    if scoring_version == scoring.SCORING_VERSION:
        assert again.engine.calibration == scoring.Calibration(-1.0, 1.0, 1.0)
    else:
        assert again.engine.calibration == fitted
    first.db.dispose()
    again.db.dispose()


def test_a_large_index_reuses_its_calibration_only_if_fitted_on_this_scoring():
    from types import SimpleNamespace

    from deflect.index import RECALIBRATE_MIN_ARTICLES, BuildReport, _reusable_calibration

    fit = {"bias": -4.0, "w_score": 3.0, "w_margin": 8.0}
    current = SimpleNamespace(manifest={"calibration": fit | {"scoring": scoring.SCORING_VERSION}})
    older = SimpleNamespace(manifest={"calibration": fit})
    report = BuildReport(changed=["a.md"])
    assert _reusable_calibration(current, report, RECALIBRATE_MIN_ARTICLES)["edits_since_fit"] == 1
    assert _reusable_calibration(older, report, RECALIBRATE_MIN_ARTICLES) is None
