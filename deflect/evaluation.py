"""`deflect eval`: retrieval and answered-decision quality on a benchmark (DESIGN section 8)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .scoring import auroc


@dataclass
class EvalReport:
    queries: int = 0
    answerable: int = 0
    unanswerable: int = 0
    hit_at_1: float = 0.0
    hit_at_3: float = 0.0
    mrr_at_10: float = 0.0
    auroc: float | None = None  # None: no unanswerable queries (or no answerable ones) to tell apart
    answered_correct_rate: float = 0.0  # answered=true with the right top article, share of answerable
    false_answer_rate: float = 0.0  # answered=true on unanswerable, share of unanswerable
    feedback_replayed: int = 0
    misses: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # said on stderr, not part of the figures

    def to_dict(self) -> dict:
        """The figures; `auroc` is null where a set lacks answerable or unanswerable queries (JSON has
        no NaN). The rates stay 0.0 there, as they always were, for scripts that compare them."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("misses", "warnings")}
        return {k: (round(v, 4) if isinstance(v, float) and v == v else (None if isinstance(v, float) else v))
                for k, v in out.items()}


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
    return rows


def read_queries(path: str | Path) -> list[dict]:
    """A benchmark's queries.jsonl, checked before anything is embedded: every line an object with a
    non-empty string `text` and an `expected` article id (a string) or null/absent (unanswerable).
    ValueError names the file, the line and the field of each bad line (the first ten)."""
    from .jsonl import numbered_records

    rows, problems = [], []
    for number, row, problem in numbered_records(path):
        if problem is None and not isinstance(row, dict):
            problem = "not a JSON object"
        elif problem is None and (not isinstance(row.get("text"), str) or not row["text"].strip()):
            problem = "text: must be a non-empty string"
        elif problem is None and not isinstance(row.get("expected"), (str, type(None))):
            problem = "expected: must be an article id (a string) or null"
        if problem:
            problems.append(f"{path}:{number}: {problem}")
        else:
            rows.append(row | {"line": number})
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ValueError("; ".join(problems[:10]) + more)
    return rows


QUERY_KEYS = ("text", "expected", "label")  # DESIGN section 8; label is the benchmark's own, not read


def unknown_expected(engine, queries: list[dict]) -> list[str]:
    """Lines whose expected article is not in the benchmark's KB (each would count as a miss), and
    lines with a key a query line does not have: a misspelt `expected` would make it unanswerable."""
    known = engine.articles.position
    said = [
        f"queries line {q.get('line', '?')}: expected {q['expected']!r} is no article of the KB (counted as a miss)"
        for q in queries
        if q.get("expected") is not None and q["expected"] not in known
    ]
    for q in queries:
        unknown = sorted(k for k in q if k not in (*QUERY_KEYS, "line"))
        if unknown:
            what = "unanswerable" if q.get("expected") is None else "read as given"
            said.append(f"queries line {q.get('line', '?')}: not read: {', '.join(map(repr, unknown))} "
                        f"(a line has text, expected, label; this one is {what})")  # fmt: skip
    return said


def evaluate(engine, queries: list[dict], k: int = 10) -> EvalReport:
    """Score an engine (articles only) on labelled queries; queries are embedded in one batch."""
    report = EvalReport(queries=len(queries), warnings=unknown_expected(engine, queries))
    vectors = engine.embedder.encode([q["text"] for q in queries])
    hits1 = hits3 = 0
    rr = 0.0
    pos_scores, neg_scores = [], []
    answered_right = answered_wrong_unanswerable = 0
    for query, vector in zip(queries, vectors):
        suggestion = engine.suggest(query["text"], k=k, types=("article",), query_vector=vector)
        ids = [r.id for r in suggestion.results]
        expected = query.get("expected")
        if expected is None:
            report.unanswerable += 1
            neg_scores.append(suggestion.top_probability)
            answered_wrong_unanswerable += suggestion.answered
            continue
        report.answerable += 1
        pos_scores.append(suggestion.top_probability)
        if ids[:1] == [expected]:
            hits1 += 1
            answered_right += suggestion.answered
        else:
            report.misses.append({"text": query["text"], "expected": expected, "got": ids[:3]})
        hits3 += expected in ids[:3]
        if expected in ids[:10]:
            rr += 1 / (ids.index(expected) + 1)
    if report.answerable:
        report.hit_at_1 = hits1 / report.answerable
        report.hit_at_3 = hits3 / report.answerable
        report.mrr_at_10 = rr / report.answerable
        report.answered_correct_rate = answered_right / report.answerable
    if report.unanswerable:
        report.false_answer_rate = answered_wrong_unanswerable / report.unanswerable
    if report.unanswerable and report.answerable:
        report.auroc = auroc(np.array(pos_scores), np.array(neg_scores))
    return report


def replay_feedback(runtime, feedback: list[dict], progress: bool = False) -> tuple[int, list[str]]:
    """Replay confirmed answers exactly as a help form would: a search, then a `helpful` event.

    Each line gets its own session, as if from a different customer. The search lists the
    API's maximum of results, so that a confirmed article retrieval ranks low is still shown
    (a helpful event must be about a shown item) and taught, not dropped. Returns (replayed,
    problems) where problems name the lines that could not be replayed.
    """
    from tqdm import tqdm

    from .events import EventError
    from .suggest import MAX_K

    replayed, problems = 0, []
    for number, row in enumerate(tqdm(feedback, desc="replaying feedback", disable=not progress, unit="q"), 1):
        text, article = row.get("text"), row.get("article")
        if not isinstance(text, str) or not text.strip() or not isinstance(article, str):
            problems.append(f"feedback line {number}: needs text and article")
            continue
        answer = runtime.suggest(text.strip(), k=MAX_K, types=("article",), session=f"feedback-{number}")
        try:
            runtime.record_event(answer["search_id"], "helpful", item_id=article, item_type="article")
        except EventError as exc:
            problems.append(f"feedback line {number}: {exc}")
            continue
        replayed += 1
    return replayed, problems


def evaluate_with_feedback(kb_dir, queries: list[dict], feedback: list[dict], settings, progress: bool = False):
    """Index the benchmark in a scratch folder with its own SQLite store, replay feedback, evaluate."""
    from .runtime import Runtime

    settings = _model_resolved(settings)
    with tempfile.TemporaryDirectory(prefix="deflect-eval-") as scratch:
        runtime = Runtime(
            settings.with_overrides(
                kb_dir=str(kb_dir),
                index_dir=f"{scratch}/index",
                database_url=f"sqlite:///{scratch}/eval.db",
                ideas_file=os.devnull,  # a benchmark has articles only
            ),
            progress=progress,
            sync=False,
        )
        try:
            replayed, problems = replay_feedback(runtime, feedback, progress=progress)
            runtime.recalibrate()
            report = evaluate(runtime.engine, queries)
        finally:
            runtime.close()
            runtime.db.dispose()
    report.feedback_replayed = replayed
    return report, problems


def build_benchmark_engine(kb_dir: str | Path, settings, progress: bool = False, index_dir: str | None = None):
    """Index a benchmark KB in a throwaway folder and return an engine over it (no ideas)."""
    from .refresh import make_embedder, refresh_index
    from .suggest import Engine

    settings = _model_resolved(settings)
    scratch = None if index_dir else tempfile.TemporaryDirectory(prefix="deflect-eval-")
    index, report = refresh_index(
        settings.with_overrides(kb_dir=str(kb_dir), index_dir=index_dir or scratch.name), progress=progress
    )
    embedder = make_embedder(settings)
    if scratch is not None:
        scratch.cleanup()  # the index is in memory now
    return Engine(embedder, index, [], settings.answer_threshold), report


def _model_resolved(settings):
    """The settings with `model` as the folder it names: a bundled model is put together once
    under the configured index folder (deflect.models), not again in every scratch index."""
    return settings.with_overrides(model=settings.model_name)
