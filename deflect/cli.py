"""The `deflect` command. Heavy libraries load inside commands, so --help stays fast."""

from __future__ import annotations

import json
import logging
import sys

import click

from .settings import load_settings

_PATH_OPTIONS = [
    click.option("--kb", "kb_dir", help="Knowledge-base folder (setting kb_dir).", default=None),
    click.option("--index-dir", help="Index folder (setting index_dir).", default=None),
    click.option("--database-url", help="SQLAlchemy database URL (setting database_url).", default=None),
    click.option("--model", help="Sentence-transformers model name or path (setting model).", default=None),
]


def path_options(func):
    for option in reversed(_PATH_OPTIONS):
        func = option(func)
    return func


def _settings(**overrides):
    try:
        return load_settings(**overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress and warnings in detail.")
def main(verbose: bool) -> None:
    """deflect: suggest help articles and ideas while users type, and measure deflection."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--host", default=None, help="Address to listen on (setting host, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (setting port, default 8000).")
@click.option("--threads", type=int, default=8, show_default=True, help="Worker threads of the WSGI server.")
@path_options
def serve(host, port, threads, **paths):
    """Build or refresh the index, then serve the API with waitress."""
    settings = _settings(host=host, port=port, **paths)
    from .runtime import Runtime
    from .web import create_app

    click.echo(f"deflect: indexing {settings.kb_dir} ...", err=True)
    runtime = Runtime(settings, progress=True)
    for warning in runtime.last_report.warnings:
        click.echo(f"warning: {warning}", err=True)
    app = create_app(settings, runtime)
    from waitress import serve as waitress_serve

    click.echo(f"deflect: serving {runtime.health()['articles']} articles on http://{settings.host}:{settings.port}", err=True)
    waitress_serve(app, host=settings.host, port=settings.port, threads=threads, ident="deflect")


@main.command()
@path_options
def index(**paths):
    """Re-embed only added, changed or removed articles (full rebuild after a model change)."""
    settings = _settings(**paths)
    from .runtime import refresh_index

    _, report = refresh_index(settings, progress=True)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"index {report.version}: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.removed)} removed, {report.unchanged} unchanged, "
        f"{report.embedded_passages} passages embedded" + (" (full rebuild)" if report.rebuilt else "")
    )


@main.command()
@click.argument("question")
@click.option("-k", type=click.IntRange(1, 20), default=5, show_default=True, help="How many results.")
@click.option("--type", "types", multiple=True, type=click.Choice(["article", "idea"]), help="Limit to a result type (repeatable).")
@click.option("--locale", default=None, help="Only articles in this locale (e.g. ko).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")
@path_options
def suggest(question, k, types, locale, as_json, **paths):
    """Show what /api/suggest would answer for QUESTION (the search is recorded)."""
    settings = _settings(**paths)
    from .runtime import Runtime

    answer = Runtime(settings).suggest(question, k=k, types=tuple(types) or ("article", "idea"), locale=locale)
    if as_json:
        click.echo(json.dumps(answer, ensure_ascii=False, indent=2))
        return
    click.echo(f"answered: {'yes' if answer['answered'] else 'no'}")
    for rank, r in enumerate(answer["results"], 1):
        click.echo(f"{rank}. [{r['type']}] {r['title']}  ({r['id']}, score {r['score']:.2f})")
        if r["snippet"]:
            click.echo(f"   {r['snippet']}")


@main.group()
def ideas():
    """Manage the ideas board."""


@ideas.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url).")
def ideas_import(file, database_url):
    """Load ideas from a JSONL FILE ({"id"?, "title", "description"?, "status"?, "votes"?})."""
    settings = _settings(database_url=database_url)
    from .db import make_engine, upgrade
    from .ideas import import_ideas

    engine = make_engine(settings.database_url)
    upgrade(engine)
    inserted, updated, errors = import_ideas(engine, file)
    for error in errors:
        click.echo(f"skipped: {error}", err=True)
    click.echo(f"{inserted} ideas added, {updated} updated, {len(errors)} skipped")


@main.command("eval")
@click.option("--kb", "kb_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Benchmark KB folder.")
@click.option("--queries", required=True, type=click.Path(exists=True, dir_okay=False), help="queries.jsonl ({text, expected, label}).")
@click.option("--feedback", type=click.Path(exists=True, dir_okay=False), default=None, help="feedback.jsonl of confirmed answers to replay first (needs the events issue).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--model", default=None, help="Sentence-transformers model name or path.")
@click.option("--show-misses", type=int, default=0, help="Also list this many missed queries.")
def eval_command(kb_dir, queries, feedback, as_json, model, show_misses):
    """Measure hit@1/3, MRR@10, AUROC and the answered decision on a benchmark (DESIGN section 8)."""
    settings = _settings(model=model)
    from .evaluation import build_benchmark_engine, evaluate, read_jsonl

    if feedback:
        raise click.UsageError("--feedback replay needs learned aliases, which are not built yet (events issue)")
    engine, _ = build_benchmark_engine(kb_dir, settings, progress=not as_json)
    report = evaluate(engine, read_jsonl(queries))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for key, value in report.to_dict().items():
            click.echo(f"{key:>24}: {value}")
    for miss in report.misses[:show_misses]:
        click.echo(f"miss: {miss['text']!r} expected {miss['expected']} got {miss['got']}")


@main.command()
def settings():
    """List every setting with its environment variable, default and help."""
    from .settings import settings_table

    click.echo(settings_table())


from .cli_board import clusters, outbox  # noqa: E402

main.add_command(clusters)
main.add_command(outbox)


if __name__ == "__main__":
    sys.exit(main())
