"""`deflect eval`: retrieval quality and the answered decision on a benchmark (DESIGN section 8)."""

from __future__ import annotations

import json

import click

from .cli_options import cli_settings


@click.command("eval")
@click.option("--kb", "kb_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Benchmark KB folder (expected ids are article paths relative to it, without .md).")
@click.option("--queries", required=True, type=click.Path(exists=True, dir_okay=False), help='queries.jsonl, one object per line: {"text", "expected": <article id> or null, "label"}.')
@click.option("--feedback", type=click.Path(exists=True, dir_okay=False), default=None, help="feedback.jsonl ({text, article}) of confirmed answers, replayed first as helpful events.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--model", default=None, help="Model (setting model): a sentence-transformers folder or name, all-mpnet-base-v2 (the opt-in extra), or empty for the bundled all-MiniLM-L6-v2.")
@click.option("--show-misses", type=click.IntRange(min=0), default=0,
              help="Also list up to this many false answers (unanswerable, answered=true), and this many hit@1 "
                   "misses, wrong answers (answered=true) first; with --json, as the keys false_answer_list and misses.")  # fmt: skip
def eval_command(kb_dir, queries, feedback, as_json, model, show_misses):
    """Measure hit@1/3, MRR@10, AUROC and the answered decision on a benchmark (README: Benchmarks).

    Rates come with their counts: answered_correct_rate and answered_wrong_rate are shares of the
    answerable queries answered=true with the right or a wrong article first, false_answer_rate
    the share of unanswerable ones answered=true. No queries, no articles in --kb, or no expected
    id in it is a usage error.
    """
    settings = cli_settings(model=model)
    from .evaluation import (
        build_benchmark_engine,
        check_benchmark,
        evaluate,
        evaluate_with_feedback,
        read_feedback,
        read_queries,
    )
    from .jsonl import UnreadableJsonl
    from .kb_folder import load_kb

    try:
        query_rows = read_queries(queries)
        feedback_rows, feedback_warnings = read_feedback(feedback) if feedback else (None, [])
        articles, _ = load_kb(kb_dir, settings.default_locale, settings.passage_chars,
                              max_article_bytes=settings.max_article_bytes)  # fmt: skip
        check_benchmark(kb_dir, {a.id for a in articles}, query_rows, queries)
    except UnreadableJsonl as exc:
        raise click.UsageError(exc.problem) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for warning in feedback_warnings:
        click.echo(f"warning: {warning}", err=True)
    if feedback_rows is not None:
        report, problems = evaluate_with_feedback(kb_dir, query_rows, feedback_rows, settings, progress=not as_json,
                                                  source=queries, feedback_source=feedback)  # fmt: skip
        for problem in problems:
            click.echo(f"warning: {problem}", err=True)
    else:
        engine, _ = build_benchmark_engine(kb_dir, settings, progress=not as_json)
        report = evaluate(engine, query_rows, source=queries)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    # The most confident first: those a buyer must look at before trusting the answered decision.
    false_answers = sorted(report.false_answer_list, key=lambda a: -a["probability"])[:show_misses]
    misses = sorted(report.misses, key=lambda m: not m["answered"])[:show_misses]  # wrong answers first
    if as_json:
        listed = {"false_answer_list": false_answers, "misses": misses} if show_misses else {}
        click.echo(json.dumps(report.to_dict() | listed, indent=2))
        return
    for line in report.lines():
        click.echo(line)
    click.echo(f"{'settings':>24}: answer_threshold {settings.answer_threshold}, "
               f"target_false_answer {settings.target_false_answer}")  # fmt: skip
    for answer in false_answers:
        click.echo(f"false answer: {answer['text']!r} got {answer['got'][0]} (probability {answer['probability']})")
    for miss in misses:
        what = "wrong answer" if miss["answered"] else "miss"
        click.echo(f"{what}: {miss['text']!r} expected {miss['expected']} got {miss['got']} "
                   f"(probability {miss['probability']})")  # fmt: skip
