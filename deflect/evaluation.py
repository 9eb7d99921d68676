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
    answered_correct: int = 0  # the counts behind the rates: a rate of 0 of 3 is not one of 0 of 300
    answered_wrong: int = 0  # answerable, answered=true with another article first: a confident wrong answer
    answered_wrong_rate: float = 0.0  # answered_wrong, share of answerable
    false_answers: int = 0  # unanswerable, answered=true
    misses: list[dict] = field(default_factory=list)  # hit@1 misses, each with its probability and answered
    false_answer_list: list[dict] = field(default_factory=list)  # the false answers, to review
    warnings: list[str] = field(default_factory=list)  # said on stderr, not part of the figures

    def to_dict(self) -> dict:
        """The figures; `auroc` is null where a set lacks answerable or unanswerable queries (JSON has
        no NaN). The rates stay 0.0 there, as they always were, for scripts that compare them."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("misses", "false_answer_list", "warnings")}
        return {k: (round(v, 4) if isinstance(v, float) and v == v else (None if isinstance(v, float) else v))
                for k, v in out.items()}

    def lines(self) -> list[str]:
        """The report for a person: each rate with the counts it is a share of ("n/a" where there
        is nothing to measure, which to_dict reports as 0.0)."""
        figures = self.to_dict()
        answerable = f"{self.answerable} answerable"

        def share(key: str, count: int, denominator: int, of: str, note: str = "") -> str:
            if not denominator:
                return f"n/a (no {of} queries)"
            return f"{figures[key]} ({count} of {denominator} {of}{': ' + note if note else ''})"

        rows = {
            "queries": f"{self.queries} ({answerable}, {self.unanswerable} unanswerable)",
            "hit_at_1": share("hit_at_1", round(self.hit_at_1 * self.answerable), self.answerable, "answerable"),
            "hit_at_3": share("hit_at_3", round(self.hit_at_3 * self.answerable), self.answerable, "answerable"),
            "mrr_at_10": figures["mrr_at_10"] if self.answerable else "n/a (no answerable queries)",
            "auroc": (f"{figures['auroc']} ({answerable} vs {self.unanswerable} unanswerable, by top probability)"
                      if figures["auroc"] is not None else "n/a (needs answerable and unanswerable queries)"),
            "answered_correct_rate": share("answered_correct_rate", self.answered_correct, self.answerable,
                                           "answerable", "answered=true, right article first"),
            "answered_wrong_rate": share("answered_wrong_rate", self.answered_wrong, self.answerable,
                                         "answerable", "answered=true, wrong article first"),
            "false_answer_rate": share("false_answer_rate", self.false_answers, self.unanswerable,
                                       "unanswerable", "answered=true"),
            "feedback_replayed": self.feedback_replayed,
        }  # fmt: skip
        return [f"{key:>24}: {value}" for key, value in rows.items()]


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
    non-empty string `text` and an `expected` article id (a non-empty string) or null/absent (unanswerable;
    absent is warned of by unknown_expected).
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
        elif problem is None and isinstance(row.get("expected"), str) and not row["expected"].strip():
            problem = "expected: empty; an article id, or null for a question no article answers"
        if problem:
            problems.append(f"{path}:{number}: {problem}")
        else:
            rows.append(row | {"line": number})
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ValueError("; ".join(problems[:10]) + more)
    return rows


QUERY_KEYS = ("text", "expected", "label")  # DESIGN section 8; label is the benchmark's own, not read
FEEDBACK_KEYS = ("text", "article")  # DESIGN section 8, the form `deflect aliases import` also takes
WARNINGS_PER_KIND = 10  # a set laid out wrongly repeats one warning per line: the first ten, then a count


class BenchmarkError(ValueError):
    """The benchmark cannot measure anything (no queries, no articles, no expected id in the KB):
    its figures would be zeros that look like results."""


def unknown_expected(engine_or_ids, queries: list[dict], source: str | None = None) -> list[str]:
    """Warnings about lines that would be scored otherwise than their writer meant: an expected
    article not in the benchmark's KB (a miss), no `expected` key (unanswerable, perhaps by a slip;
    null says so), a key a query line does not have (a misspelt `expected`). At most
    WARNINGS_PER_KIND of each kind, then how many more; `source` (the file) names each line."""
    known = engine_or_ids.articles.position if hasattr(engine_or_ids, "articles") else set(engine_or_ids)
    unknown_ids, no_expected, unread = [], [], []
    for q in queries:
        where = f"{source}:{q.get('line', '?')}" if source else f"queries line {q.get('line', '?')}"
        unknown = sorted(k for k in q if k not in (*QUERY_KEYS, "line"))
        expected = q.get("expected")
        if expected is not None and expected not in known:
            hint = _id_hint(expected, known)
            unknown_ids.append(f"{where}: expected {expected!r} is no article of the KB (counted as a miss)"
                               + (f"; did you mean {hint!r}?" if hint else ""))  # fmt: skip
        if "expected" not in q:
            said = f'{where}: no "expected": counted as unanswerable; write "expected": null to say so'
            if unknown:
                said += f" (not read: {', '.join(map(repr, unknown))})"
            elif isinstance(q.get("label"), str) and q["label"] in known:
                said += f" (its label {q['label']!r} is an article id: should it be expected?)"
            no_expected.append(said)
        elif unknown:
            what = "unanswerable" if expected is None else "read as given"
            unread.append(f"{where}: not read: {', '.join(map(repr, unknown))} "
                          f"(a line has text, expected, label; this one is {what})")  # fmt: skip
    return [*_capped(unknown_ids, "with an expected id not in the KB"), *_capped(no_expected, 'without "expected"'),
            *_capped(unread, "with keys not read")]  # fmt: skip


def _capped(warnings: list[str], what: str) -> list[str]:
    if len(warnings) <= WARNINGS_PER_KIND:
        return warnings
    return [*warnings[:WARNINGS_PER_KIND], f"... and {len(warnings) - WARNINGS_PER_KIND} more lines {what}"]


def _id_hint(expected: str, known) -> str | None:
    """The KB id a wrong expected id most likely means: a .md suffix, another case, a folder too
    many or too few (--kb one level off), surrounding slashes."""
    stem = expected.strip().strip("/")
    for suffix in (".md", ".markdown"):
        stem = stem.removesuffix(suffix)
    if stem in known:
        return stem
    lowered = {k.lower(): k for k in known}
    if stem.lower() in lowered:
        return lowered[stem.lower()]
    longer = sorted(k for k in known if k.endswith("/" + stem))
    if longer:
        return longer[0]
    parts = stem.split("/")
    for cut in range(1, len(parts)):
        if "/".join(parts[cut:]) in known:
            return "/".join(parts[cut:])
    return None


def check_benchmark(kb_dir: str | Path, kb_ids: set[str], queries: list[dict], queries_path: str | Path) -> None:
    """Raise BenchmarkError where the set cannot measure anything: no queries, no article in the
    KB, or expected ids of which none is in the KB (every answerable query a miss, as when --kb
    names the folder above the KB and every id gets a prefix). Some unknown ids are warnings."""
    if not queries:
        raise BenchmarkError(f"{queries_path} has no queries (no non-blank line)")
    if not kb_ids:
        raise BenchmarkError(
            f"the KB at {kb_dir} has no articles: deflect reads the .md (and .markdown) files in it and its "
            "subfolders; is --kb the right folder?"
        )
    expected = [q["expected"] for q in queries if q.get("expected") is not None]
    if not expected or set(expected) & kb_ids:
        return
    distinct = sorted(set(expected))
    hints = {e: _id_hint(e, kb_ids) for e in distinct}
    first = next((e for e in distinct if hints[e]), distinct[0])  # an example the KB has a near miss of
    hint = hints[first]
    example = (f"e.g. the expected {first!r} is not in it, the KB's {hint!r} is" if hint
               else f"e.g. the expected {first!r}; the KB has {sorted(kb_ids)[0]!r}")  # fmt: skip
    fix = ""
    if hint and hint.endswith("/" + first.strip("/")):
        inner = Path(kb_dir) / hint[: -len(first.strip("/")) - 1]
        fix = f": --kb names a folder above the KB; try --kb {inner}"
    elif hint and first.strip("/").endswith("/" + hint):
        fix = f": --kb names a folder inside the KB; try --kb {Path(kb_dir).parent}"
    raise BenchmarkError(
        f"none of the {len(distinct)} expected article ids ({len(expected)} queries) is in the KB at {kb_dir}: "
        f"ids are paths relative to --kb, without .md (or the front matter's id); {example}{fix}"
    )


def read_feedback(path: str | Path) -> tuple[list[dict], list[str]]:
    """A feedback.jsonl ({"text", "article"} lines, as `deflect aliases import` takes), read as that
    command reads it (jsonl.numbered_records: a BOM allowed, a file that is not UTF-8 or is one JSON
    document is one error). Returns (good lines, each with its `line`; warnings naming the lines
    skipped or the keys not read). BenchmarkError if no line is good: replaying nothing would
    report the figures without feedback as if with it (a queries file passed by mistake)."""
    from .jsonl import numbered_records

    rows, skipped, unread = [], [], []
    looks_like_queries = 0
    for number, row, problem in numbered_records(path):
        if problem is None and not isinstance(row, dict):
            problem = 'not a JSON object {"text": ..., "article": ...}'
        elif problem is None and (not isinstance(row.get("text"), str) or not row["text"].strip()):
            problem = "text: the question, a non-empty string"
        elif problem is None and (not isinstance(row.get("article"), str) or not row["article"].strip()):
            looks_like_queries += "expected" in row
            problem = "article: the id of the article that answered it" + (
                ' (this line has "expected", as queries lines do)' if "expected" in row else "")
        if problem:
            skipped.append(f"{path}:{number}: {problem}; not replayed")
            continue
        unknown = sorted(k for k in row if k not in FEEDBACK_KEYS)
        if unknown:
            unread.append(f"{path}:{number}: not read: {', '.join(map(repr, unknown))} (a feedback line has text and article)")
        rows.append(row | {"line": number})
    if not rows:
        if looks_like_queries:
            why = ': its lines have "expected", as queries lines do; is it a queries file?'
        else:
            why = f" ({skipped[0]})" if skipped else " (no non-blank line)"
        raise BenchmarkError(f'no line of {path} is a feedback line {{"text": ..., "article": ...}}{why}')
    return rows, [*_capped(skipped, "skipped"), *_capped(unread, "with keys not read")]


def evaluate(engine, queries: list[dict], k: int = 10, source: str | None = None) -> EvalReport:
    """Score an engine (articles only) on labelled queries; queries are embedded in one batch.
    `source` (the queries file) names the lines in the warnings."""
    report = EvalReport(queries=len(queries), warnings=unknown_expected(engine, queries, source))
    vectors = engine.embedder.encode([q["text"] for q in queries])
    hits1 = hits3 = 0
    rr = 0.0
    pos_scores, neg_scores = [], []
    for query, vector in zip(queries, vectors):
        suggestion = engine.suggest(query["text"], k=k, types=("article",), query_vector=vector)
        ids = [r.id for r in suggestion.results]
        expected = query.get("expected")
        probability = round(float(suggestion.top_probability), 4)
        if expected is None:
            report.unanswerable += 1
            neg_scores.append(suggestion.top_probability)
            if suggestion.answered:
                report.false_answers += 1
                report.false_answer_list.append({"text": query["text"], "got": ids[:1], "probability": probability})
            continue
        report.answerable += 1
        pos_scores.append(suggestion.top_probability)
        if ids[:1] == [expected]:
            hits1 += 1
            report.answered_correct += suggestion.answered
        else:
            report.answered_wrong += suggestion.answered
            report.misses.append({"text": query["text"], "expected": expected, "got": ids[:3],
                                  "probability": probability, "answered": bool(suggestion.answered)})  # fmt: skip
        hits3 += expected in ids[:3]
        if expected in ids[:10]:
            rr += 1 / (ids.index(expected) + 1)
    if report.answerable:
        report.hit_at_1 = hits1 / report.answerable
        report.hit_at_3 = hits3 / report.answerable
        report.mrr_at_10 = rr / report.answerable
        report.answered_correct_rate = report.answered_correct / report.answerable
        report.answered_wrong_rate = report.answered_wrong / report.answerable
    if report.unanswerable:
        report.false_answer_rate = report.false_answers / report.unanswerable
    if report.unanswerable and report.answerable:
        report.auroc = auroc(np.array(pos_scores), np.array(neg_scores))
    return report


def replay_feedback(
    runtime, feedback: list[dict], progress: bool = False, source: str | None = None
) -> tuple[int, list[str]]:
    """Replay confirmed answers exactly as a help form would: a search, then a `helpful` event.

    Each line gets its own session, as if from a different customer. The search lists the
    API's maximum of results, so that a confirmed article retrieval ranks low is still shown
    (a helpful event must be about a shown item) and taught, not dropped. Returns (replayed,
    problems) where problems name the lines that could not be replayed (in `source`, the file).
    """
    from tqdm import tqdm

    from .events import EventError
    from .suggest import MAX_K

    replayed, problems = 0, []
    for index, row in enumerate(tqdm(feedback, desc="replaying feedback", disable=not progress, unit="q"), 1):
        number = row.get("line", index)  # the file's line, from read_feedback
        where = f"{source}:{number}" if source else f"feedback line {number}"
        text, article = row.get("text"), row.get("article")
        if not isinstance(text, str) or not text.strip() or not isinstance(article, str):
            problems.append(f"{where}: needs text and article")
            continue
        answer = runtime.suggest(text.strip(), k=MAX_K, types=("article",), session=f"feedback-{number}")
        try:
            runtime.record_event(answer["search_id"], "helpful", item_id=article, item_type="article")
        except EventError as exc:
            problems.append(f"{where}: {exc}")
            continue
        replayed += 1
    return replayed, problems


def evaluate_with_feedback(
    kb_dir,
    queries: list[dict],
    feedback: list[dict],
    settings,
    progress: bool = False,
    source: str | None = None,
    feedback_source: str | None = None,
):
    """Index the benchmark in a scratch folder with its own SQLite store, replay feedback, evaluate.
    `source` and `feedback_source` (the files) name the lines in warnings."""
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
            replayed, problems = replay_feedback(runtime, feedback, progress=progress, source=feedback_source)
            runtime.recalibrate()
            report = evaluate(runtime.engine, queries, source=source)
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
