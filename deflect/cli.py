"""The `deflect` command. Heavy libraries load inside commands, so --help stays fast."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

import click

from .cli_errors import DeflectGroup
from .cli_options import (
    cli_settings,
    existing_store,
    migrated_store,
    options_as_given,
    parse_period_options,
    path_options,
    period_options,
    skipped_lines,
)

_settings = cli_settings
LOG_LINE = "%(levelname)s %(name)s: %(message)s"
LOG_DATE = "%Y-%m-%d %H:%M:%S"


@click.group(cls=DeflectGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deflect", message="deflect %(version)s", help="Show the version and exit.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress and warnings in detail.")
def main(verbose: bool) -> None:
    """deflect: suggest help articles and ideas while users type, and measure deflection."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=f"%(asctime)s {LOG_LINE}",  # 2026-11-23 03:41:07 INFO deflect.runtime: ...
        datefmt=LOG_DATE,
    )


@main.command()
@click.option("--host", default=None, help="Address to listen on (setting host, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (setting port, default 8000).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Worker threads of the WSGI server: requests in flight at once, whose queries are encoded together.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Run N server processes sharing the port, each with its own model and index in memory, under a "
    "supervisor that replaces one that dies and reloads them all, one at a time, on SIGHUP. Without it: "
    "one process, no supervisor. One worker is the fastest on 2 cores; on more, about one per 2 cores "
    "(README: Scaling out).",
)
@click.option(
    "--watch/--no-watch",
    "watch_kb",
    default=None,
    help="Reindex when files in the KB folder change (setting watch_kb, default on).",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Log one line per request: client address, method, path (no query string), status, bytes, milliseconds.",
)
@path_options
@click.pass_context
def serve(ctx, host, port, threads, workers, watch_kb, access_log, **paths):
    """Build or refresh the index, then serve the API with waitress (and follow KB edits)."""
    settings = _settings(host=host, port=port, watch_kb=watch_kb, **paths)
    from .workers import follow_supervisor, inherited_socket, tell_ready

    sock = inherited_socket()  # set when this process is one of `--workers N`
    _log_deflect_info()
    if workers is not None or sock is not None:
        _log_with_pid()
    if workers is not None and sock is None:
        return _supervise_workers(ctx, settings, workers)
    # From now on, also while indexing: SIGTERM (its default until serving, then a clean stop).
    follow_supervisor(lambda: os.kill(os.getpid(), signal.SIGTERM))
    if sock is not None:  # a reload is the supervisor's: a SIGHUP sent to the whole group is not for workers
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from .runtime import Runtime
    from .web import create_app

    if sock is None:
        _check_can_listen(settings.host, settings.port)  # before indexing, which can take minutes
    click.echo(f"deflect: indexing {settings.kb_dir} ...", err=True)
    runtime = Runtime(settings, progress=True)  # skipped files are logged as warnings, once
    app = create_app(settings, runtime, access_log=access_log)
    runtime.engine.embedder.encode(["warm up"])  # load the model before the first visitor, not during
    from .web import make_server

    try:
        server = make_server(app, settings.host, settings.port, threads, sock=sock)
    except OSError as exc:
        runtime.close()
        raise _cannot_listen(settings.host, settings.port, exc) from None
    if settings.watch_kb:
        runtime.watch_kb()
    base = f"http://{settings.host}:{settings.port}"
    who = f" (worker, pid {os.getpid()})" if sock is not None else ""
    click.echo(f"deflect: serving {runtime.health()['articles']} articles on {base}{who} (help form: {base}/help)", err=True)
    if sock is None:  # said by the supervisor of --workers, not by each worker
        _say_where_and_who(settings)
    tell_ready()

    from .web.draining import Drain

    drain = Drain(server, stop=lambda: os.kill(os.getpid(), signal.SIGTERM))

    def _terminate(_signum, _frame):
        # The first SIGTERM drains (deflect.web.draining); the drain's own one, once the requests
        # in flight are answered, stops the loop. Any other is the same request again (systemd
        # signals the whole group: a worker gets one from it and one from its supervisor).
        if drain.finished:
            raise SystemExit(0)  # queued searches are written on the way out
        if not drain.started:
            drain.start()

    signal.signal(signal.SIGTERM, _terminate)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping already: a late one must not cut the cleanup
        drain.close()
        server.close()
        runtime.close()


# Shorter than this, an admin token (which guards requesters' emails and every question asked)
# could be guessed; `python -c "import secrets; print(secrets.token_urlsafe(32))"` makes a good one.
STRONG_TOKEN_CHARS = 20


def _say_where_and_who(settings) -> None:
    """Where this server keeps what it records (a mistyped DEFLECT_DATABASE_URL, only warned about,
    would otherwise send a replica's searches to a new, empty SQLite file unnoticed), then the admin token."""
    from .errors import mask_url

    click.echo(f"deflect: database {mask_url(settings.database_url)}, index {settings.index_dir}", err=True)
    _say_if_admin_disabled(settings)


def _say_if_admin_disabled(settings) -> None:
    if not settings.admin_token:
        click.echo("deflect: admin_token is not set, so the admin API and pages answer 401 admin_disabled "
                   "(set DEFLECT_ADMIN_TOKEN to review candidates, read metrics and manage aliases)", err=True)  # fmt: skip
    elif len(settings.admin_token) < STRONG_TOKEN_CHARS:
        click.echo(f"deflect: admin_token has {len(settings.admin_token)} characters; one of at least "
                   f"{STRONG_TOKEN_CHARS} random ones cannot be guessed: python -c \"import secrets; "
                   "print(secrets.token_urlsafe(32))\"", err=True)  # fmt: skip


def _supervise_workers(ctx: click.Context, settings, workers: int) -> None:
    """`deflect serve --workers N`: open the port once, run N workers on it (deflect.workers)."""
    from .workers import Supervisor, WorkerError, listening_socket, worker_command

    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        raise _cannot_listen(settings.host, settings.port, exc) from None
    port = sock.getsockname()[1]  # the one the system chose for --port 0
    args = options_as_given(ctx, skip=("workers", "host", "port")) + ["--host", settings.host, "--port", str(port)]
    verbose = bool(ctx.find_root().params.get("verbose"))

    def command(number: int) -> list[str]:
        # The first worker follows KB edits; the others load each new version it builds.
        return worker_command(args + (["--no-watch"] if number > 1 else []), verbose)

    base = f"http://{settings.host}:{port}"
    supervisor = Supervisor(command, workers, sock)
    try:
        def ready() -> None:
            plural = "s" if workers > 1 else ""
            click.echo(f"deflect: {workers} worker{plural} serving on {base} (help form: {base}/help); "
                       f"kill -HUP {os.getpid()} reloads them one at a time", err=True)  # fmt: skip
            _say_where_and_who(settings)

        supervisor.run(on_ready=ready)
    except WorkerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        sock.close()


def _log_deflect_info() -> None:
    """A server's log shows deflect's own INFO lines (reindexes, versions loaded) even without -v.

    Other libraries stay at WARNING; deflect logs nothing per request at INFO.
    """
    ours = logging.getLogger("deflect")
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)


def _log_with_pid() -> None:
    """With `--workers N` several processes write to one log: each line names the one that wrote it."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"%(asctime)s [%(process)d] {LOG_LINE}", LOG_DATE))


def _check_can_listen(host: str, port: int) -> None:
    """Fail at once, with a one-line error, when host:port cannot be listened on (in use, bad host)."""
    from .workers import listening_socket

    try:
        listening_socket(host, port).close()
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None


def _cannot_listen(host: str, port: int, exc: OSError) -> click.ClickException:
    return click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


@main.command()
@path_options
def index(**paths):
    """Re-embed only added, changed or removed articles (full rebuild after a model change)."""
    settings = _settings(**paths)
    from .refresh import publish_index, refresh_index

    # Running servers on this folder and database load the new version within seconds.
    index, report = refresh_index(settings, progress=True, publish=lambda version: publish_index(settings, version))
    click.echo(report.summary())  # skipped files were logged as warnings as they were read
    _warn_stranded_aliases(settings, {a["id"] for a in index.articles})


def _warn_stranded_aliases(settings, article_ids: set[str]) -> None:
    """Say which learned aliases the KB no longer has articles for (a file renamed or moved)."""
    from .aliases import stranded_by

    try:
        engine = existing_store(settings)
    except click.ClickException:
        return  # no database yet: nothing was learned
    try:
        warning = stranded_by(engine, article_ids)
    finally:
        engine.dispose()
    if warning:
        click.echo(f"warning: {warning}", err=True)


def _question(ctx, param, value: str) -> str:
    from .suggest import is_blank_question

    if is_blank_question(value):
        raise click.BadParameter("must not be empty, nor only spaces or invisible characters (the API answers 400 too)")
    return value.strip()


def _locale(ctx, param, value: str | None) -> str | None:
    from .locales import MAX_LOCALE_CHARS, is_language_tag

    if value is not None and not is_language_tag(value):
        raise click.BadParameter(f"must be a language tag such as en or ko-KR (at most {MAX_LOCALE_CHARS} characters)")
    return value.replace("_", "-") if value is not None else None


@main.command()
@click.argument("question", callback=_question)
@click.option("-k", type=click.IntRange(1, 20), default=5, show_default=True, help="How many results.")
@click.option("--type", "types", multiple=True, type=click.Choice(["article", "idea"]), help="Limit to a result type (repeatable).")
@click.option("--locale", default=None, callback=_locale,
              help="Articles in this locale (e.g. ko); one without articles falls back to default_locale, as the API does.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Record the search, as the API does (it then counts in the metrics and the unanswered pool).")
@path_options
def suggest(question, k, types, locale, as_json, record, **paths):
    """Show what /api/suggest would answer for QUESTION (recorded as a search unless --no-record).

    QUESTION is checked as the API checks `query`: not empty, at most max_query_chars.
    """
    settings = _settings(**paths)
    if len(question) > settings.max_query_chars:
        raise click.BadParameter(f"must be at most {settings.max_query_chars} characters (setting max_query_chars)",
                                 param_hint="'QUESTION'")  # fmt: skip
    from .runtime import Runtime

    runtime = Runtime(settings, sync=False, progress=True)  # a model change rebuilds the index: say so
    try:
        answer = runtime.suggest(question, k=k, types=tuple(types) or ("article", "idea"), locale=locale, record=record)
    finally:
        runtime.close()  # the search is written before the command exits
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
    """Load ideas from a JSONL FILE ({"id"?, "title", "description"?, "status"?, "votes"?, "requesters"?}).

    Importing the same file again changes nothing. A bad line is skipped and named, and the
    rest is imported; exit status 1 if any line was skipped.
    """
    settings = _settings(database_url=database_url)
    from .idea_import import import_ideas

    engine = migrated_store(settings)
    report = import_ideas(engine, file)
    for error in report.errors:
        click.echo(f"skipped: {error}", err=True)
    for note in report.notes:
        click.echo(f"warning: {note}", err=True)
    click.echo(f"{report.inserted} ideas added, {report.updated} updated, {len(report.errors)} skipped")
    skipped_lines(file, report.errors, imported=report.inserted + report.updated)


@main.group()
def db():
    """Manage the database schema."""


@db.command("upgrade")
@click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url).")
@click.option("--revision", default="head", show_default=True,
              help="Alembic revision to upgrade to (a number such as 0008, or head); migrations go forward only.")
def db_upgrade(database_url, revision):
    """Apply the Alembic migrations (deflect serve also does this on start)."""
    settings = _settings(database_url=database_url)
    from .db import current_revision, known_revisions, make_engine, upgrade

    engine = make_engine(settings.database_url)
    before = current_revision(engine)
    upgrade(engine, revision)
    after = current_revision(engine)
    click.echo(f"database at revision {after} (was {before or 'empty'})")
    if after == before and revision not in ("head", "heads", after) and revision in known_revisions():
        # An older revision than the database's: alembic upgrades only, so it did nothing.
        raise click.ClickException(
            f"the database is already past revision {revision}: deflect migrates forward only. To go back, "
            "restore a backup taken before the upgrade (README, Backups and upgrades)"
        )


@db.command("current")
@click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url).")
def db_current(database_url):
    """Say which schema revision the database is at, and which this deflect would migrate it to."""
    from .cli_options import existing_store
    from .db import current_revision, head_revision

    at, head = current_revision(existing_store(_settings(database_url=database_url), migrate=False)), head_revision()
    if at is None:  # deflect's table, but no revision recorded in it
        state = "no revision recorded: deflect db upgrade sets it up"
    elif at == head:
        state = "up to date"
    else:  # revisions are numbered 0001, 0002...
        state = "newer: written by a newer deflect" if at > head else f"older: deflect db upgrade migrates it to {head}"
    click.echo(f"database at revision {at or '-'}; this deflect's schema is {head} ({state})")


@main.command()
@period_options
@click.option("--json", "as_json", is_flag=True, help="Print the /api/metrics JSON instead of tables.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows per table (articles, ideas, content gaps: at most 100, days).")
@click.option("--index-dir", default=None, help="Index folder, for article titles (setting index_dir).")
def metrics(since, until, database_url, as_json, top, index_dir):
    """Deflection metrics for a period (README: Events and metrics), as readable tables."""
    settings = _settings(database_url=database_url, index_dir=index_dir)
    from .metrics import compute_metrics

    engine = existing_store(settings)
    start, end = parse_period_options(since, until)
    from .gaps import MAX_GAPS

    report = compute_metrics(engine, start, end, settings.assumed_window_seconds, gaps=min(top, MAX_GAPS))
    from .ideas import list_ideas
    from .index_folder import load_index
    from .metrics import add_titles

    index = load_index(settings.index_dir)  # titles only: no model needed
    articles = {a["id"]: a["title"] for a in index.articles} if index else {}
    add_titles(report, articles, {i["id"]: i["title"] for i in list_ideas(engine)})
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    from .metrics_table import format_report

    click.echo(format_report(report, top))


@main.command()
@click.option("--values", "show_values", is_flag=True,
              help="Print the value each setting has here (config file, environment) and where it comes from.")
def settings(show_values):
    """List every setting with its environment variable, default and help; a bad configuration is an error."""
    from urllib.parse import urlsplit

    from .errors import mask_url
    from .settings import SETTINGS, setting_sources, settings_table

    current = _settings()  # a bad value, file or variable: `Error: ...` naming it, exit 2
    if not show_values:
        click.echo(settings_table())
        return
    sources = setting_sources()
    for setting in SETTINGS:
        value = getattr(current, setting.name)
        if setting.name == "database_url":
            value = mask_url(value)
        elif setting.name in ("admin_token", "webhook_secret") and value:
            value = "*** (set)"
        elif setting.name == "webhook_url" and value:  # a hook's path is often its secret (Slack's are)
            parts = urlsplit(value)
            value = f"{parts.scheme}://{parts.hostname}/*** (set)"
        click.echo(f"{setting.name} = {value!r}  ({sources[setting.name]})")


from .cli_aliases import aliases  # noqa: E402
from .cli_board import clusters, ideas_requesters, outbox  # noqa: E402
from .cli_eval import eval_command  # noqa: E402
from .cli_exports import events, ideas_export, searches  # noqa: E402
from .cli_people import person, searches_forget  # noqa: E402

main.add_command(aliases)
main.add_command(eval_command)
main.add_command(events)
main.add_command(searches)
searches.add_command(searches_forget)
main.add_command(person)
main.add_command(clusters)
ideas.add_command(ideas_requesters)
ideas.add_command(ideas_export)
main.add_command(outbox)


if __name__ == "__main__":
    sys.exit(main())
