"""Retrieval quality on the sample KB with the real model (tests/data question sets)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, read_jsonl

from deflect.evaluation import evaluate

ANSWERABLE = read_jsonl(DATA / "sample_questions.jsonl")
UNANSWERABLE = read_jsonl(DATA / "unanswerable_questions.jsonl")


def _has_hangul(text: str) -> bool:
    return any(0xAC00 <= ord(c) <= 0xD7AF for c in text)


@pytest.fixture(scope="module")
def runs(sample_runtime):
    """Every question through the engine once (articles only, top 10)."""
    engine = sample_runtime.engine

    def run(questions):
        vectors = engine.embedder.encode([q["text"] for q in questions])  # one batch: faster than one by one
        return [
            (q, engine.suggest(q["text"], k=10, types=("article",), query_vector=v)) for q, v in zip(questions, vectors)
        ]

    return run(ANSWERABLE), run(UNANSWERABLE)


def test_question_sets_are_big_enough_and_point_at_real_articles(sample_runtime):
    ids = {a["id"] for a in sample_runtime.articles()}
    assert len(ANSWERABLE) >= 40
    assert any(_has_hangul(q["text"]) for q in ANSWERABLE), "the set must include Korean questions"
    assert len(UNANSWERABLE) >= 10
    missing = sorted({q["expected"] for q in ANSWERABLE} - ids)
    assert not missing, f"expected ids not in the sample KB: {missing}"


def test_hit_at_3_on_sample_questions(runs, capsys):
    answerable, _ = runs
    hits1 = hits3 = 0
    misses = []
    for question, suggestion in answerable:
        ids = [r.id for r in suggestion.results]
        hits1 += ids[:1] == [question["expected"]]
        hits3 += question["expected"] in ids[:3]
        if ids[:1] != [question["expected"]]:
            misses.append((question["text"], question["expected"], ids[:3]))
    n = len(answerable)
    with capsys.disabled():  # always shown, not only on failure
        print(f"\nhit@1 = {hits1 / n:.3f}  hit@3 = {hits3 / n:.3f}  ({n} questions)")
        for text, expected, got in misses:
            print(f"  miss@1: {text!r}: expected {expected}, got {got}")
    assert hits3 / n >= 0.9


def test_korean_questions_find_korean_articles(runs):
    korean = [(q, s) for q, s in runs[0] if _has_hangul(q["text"])]
    assert korean
    hits3 = sum(q["expected"] in [r.id for r in s.results][:3] for q, s in korean)
    assert hits3 / len(korean) >= 0.8, [(q["text"], [r.id for r in s.results][:3]) for q, s in korean]
    # The bundled English model reads Hangul as single letters; the word-overlap channel then
    # carries Korean questions (scoring.UNSPACED_LEXICAL_WEIGHT). With the English weight, 2 of 7.
    hits1 = sum([r.id for r in s.results][:1] == [q["expected"]] for q, s in korean)
    assert hits1 / len(korean) >= 0.7, [(q["text"], [r.id for r in s.results][:3]) for q, s in korean]


def test_unanswerable_questions_score_lower_and_are_rarely_answered(runs):
    answerable, unanswerable = runs
    top_answerable = np.array([s.top_probability for _, s in answerable])
    top_unanswerable = np.array([s.top_probability for _, s in unanswerable])
    answered_unanswerable = [q["text"] for q, s in unanswerable if s.answered]
    answered_share = sum(s.answered for _, s in answerable) / len(answerable)
    print(
        f"\nmean top score: answerable {top_answerable.mean():.3f}, unanswerable {top_unanswerable.mean():.3f}; "
        f"answered=true on {answered_share:.0%} of answerable, "
        f"{len(answered_unanswerable)}/{len(unanswerable)} unanswerable: {answered_unanswerable}"
    )
    assert top_unanswerable.mean() < top_answerable.mean()
    assert len(answered_unanswerable) / len(unanswerable) < 0.3


@pytest.mark.xfail(
    strict=True,
    reason="known gap: the leave-one-out calibration is too pessimistic on prose KBs "
    "(about a quarter of these answerable sample questions get answered=true); see bench/README.md",
)
def test_answered_decision_says_yes_to_most_answerable_questions(runs):
    """DESIGN 5: "an answerable one usually should" get answered=true."""
    answerable, _ = runs
    answered_share = sum(s.answered for _, s in answerable) / len(answerable)
    assert answered_share > 0.5


def test_answered_matches_threshold_and_scores_are_probabilities(runs, sample_runtime):
    threshold = sample_runtime.settings.answer_threshold
    for _, suggestion in runs[0] + runs[1]:
        scores = [r.score for r in suggestion.results]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)
        assert suggestion.answered == (suggestion.top_probability >= threshold)


def test_evaluate_agrees_with_the_engine(sample_runtime, runs):
    """deflect.evaluation.evaluate on the same questions reports the same hit rates."""
    queries = ANSWERABLE + [{"text": q["text"], "expected": None} for q in UNANSWERABLE]
    report = evaluate(sample_runtime.engine, queries)
    answerable, unanswerable = runs
    hit1 = sum([r.id for r in s.results][:1] == [q["expected"]] for q, s in answerable) / len(answerable)
    hit3 = sum(q["expected"] in [r.id for r in s.results][:3] for q, s in answerable) / len(answerable)
    assert report.answerable == len(ANSWERABLE)
    assert report.unanswerable == len(UNANSWERABLE)
    assert report.hit_at_1 == pytest.approx(hit1)
    assert report.hit_at_3 == pytest.approx(hit3)
    assert report.hit_at_1 <= report.hit_at_3 and report.hit_at_1 <= report.mrr_at_10 <= 1
    assert 0.5 < report.auroc <= 1.0
    d = report.to_dict()
    assert {"hit_at_1", "hit_at_3", "mrr_at_10", "auroc", "answered_correct_rate", "false_answer_rate"} <= d.keys()


def test_feedback_replay_teaches_an_answer_ranked_below_the_top_ten(sample_runtime, settings_factory):
    """`deflect eval --feedback`: a confirmed answer that retrieval ranks 13th is still shown to
    the replay's search (k = the API's maximum), so it is taught, not dropped as not shown."""
    from conftest import SAMPLE_KB

    from deflect.evaluation import evaluate_with_feedback

    query = "the invoice shows my old company address"
    ranked = [r.id for r in sample_runtime.engine.suggest(query, k=20, types=("article",)).results]
    low = ranked[12]
    report, problems = evaluate_with_feedback(
        SAMPLE_KB, [{"text": query, "expected": low}], [{"text": query, "article": low}], settings_factory()
    )
    assert problems == [] and report.feedback_replayed == 1
    assert report.hit_at_1 == 1.0  # the query is now a learned alias of that article


def test_imported_confirmed_answers_make_most_answerable_questions_answered(sample_runtime, settings_factory, tmp_path):
    """The known gap above, closed the way a help center would: its past answers imported
    (`deflect aliases import`). The seeds are bench/data's development questions, written apart
    from these; the same index, a new database, the calibration refit with the imports."""
    import json
    import shutil
    from pathlib import Path

    from conftest import ROOT, SAMPLE_KB

    from deflect.aliases import import_aliases
    from deflect.runtime import Runtime

    seeds = [
        q for name in ("sample_kb_dev", "sample_kb_dev2")
        for q in read_jsonl(ROOT / "bench" / "data" / f"{name}.jsonl") if q.get("expected")
    ]  # fmt: skip
    assert not {q["text"] for q in seeds} & {q["text"] for q in ANSWERABLE + UNANSWERABLE}
    index_dir = tmp_path / "index"
    shutil.copytree(sample_runtime.settings.index_dir, index_dir)  # no re-embedding
    runtime = Runtime(settings_factory(kb_dir=str(SAMPLE_KB), index_dir=str(index_dir)), sync=False)
    try:
        path = Path(tmp_path / "answers.jsonl")
        path.write_text("".join(json.dumps({"text": q["text"], "article": q["expected"]}) + "\n" for q in seeds))
        ids = {a["id"] for a in runtime.articles()}
        assert import_aliases(runtime.db, path, ids, runtime.settings.max_query_chars)[0] == len(seeds)
        runtime.refresh_aliases(recalibrate=False)
        runtime.recalibrate()
        report = evaluate(runtime.engine, ANSWERABLE + [{"text": q["text"], "expected": None} for q in UNANSWERABLE])
    finally:
        runtime.close()
        runtime.db.dispose()
    print(f"\nwith {len(seeds)} imported answers: {report.to_dict()}")
    assert report.answered_correct_rate > 0.5  # 0.21 without them (the xfail above)
    assert report.false_answer_rate <= 0.1
