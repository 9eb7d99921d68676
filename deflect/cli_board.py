"""`deflect clusters ...` and `deflect outbox ...`: the board from the command line."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import click

from .cli_options import cli_settings, csv_value, existing_store, path_options

_path_options = path_options
_settings = cli_settings


def _board(paths: dict):
    from .runtime import Runtime

    settings = _settings(**paths)
    runtime = Runtime(settings, sync=False, progress=True)  # a model change rebuilds the index: say so
    from .board import Board

    return runtime, Board(runtime)


@contextlib.contextmanager
def _opened(paths: dict, existing: bool = False):
    """The board over the index and store of `paths`; `existing`: the store must be one already
    (a command that only reads it creates no database where a typo points)."""
    if existing:
        existing_store(_settings(**paths)).dispose()
    runtime, board = _board(paths)
    try:
        yield board
    finally:
        runtime.close()
        runtime.db.dispose()


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _fail(exc) -> None:
    raise click.ClickException(str(exc)) from None


@click.group(invoke_without_command=True)
@click.pass_context
def clusters(ctx):
    """Idea candidates: unanswered questions grouped by meaning (alone: `list`)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(clusters_list)


@clusters.command("rebuild")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_path_options
def clusters_rebuild(as_json, **paths):
    """Re-cluster every unanswered search; ids and review decisions carry over."""
    with _opened(paths) as board:
        summary = board.rebuild()
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"{summary['candidates']} candidates from {summary['pool']} unanswered searches: {summary['new']} new, "
        f"{summary['kept']} kept their id, {summary['returned']} dismissed ones returned, {summary['retired']} retired"
        + (f", {summary['revived']} reviewed ones back with their decision" if summary.get("revived") else "")
    )


@clusters.command("list")
@click.option("--status", type=click.Choice(["new", "promoted", "merged", "dismissed", "all"]), default=None,
              help="Only candidates with this status (default: all but dismissed).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@_path_options
def clusters_list(status, as_json, **paths):
    """Candidates, largest first."""
    with _opened(paths, existing=True) as board:
        found = board.candidates(status)
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("no candidates (run `deflect clusters rebuild` after some unanswered searches)")
    for c in found:
        mrr = f", MRR {c['mrr']:g}" if c["mrr"] else ""
        click.echo(f"{c['id']}  [{c['status']}] {c['size']} queries{mrr}, last {_when(c['last_seen'])}: {c['label']}")
        click.echo(f"    keywords: {', '.join(c['keywords'])}")


@clusters.command("show")
@click.argument("candidate_id")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@_path_options
def clusters_show(candidate_id, as_json, **paths):
    """One candidate with all its queries and the nearest idea or article."""
    with _opened(paths, existing=True) as board:
        c = board.candidate(candidate_id)
    if c is None:
        raise click.ClickException(f"no candidate with id {candidate_id!r}")
    if as_json:
        click.echo(json.dumps(c, ensure_ascii=False, indent=2))
        return
    click.echo(f"{c['id']}  [{c['status']}]  {c['label']}")
    click.echo(f"keywords: {', '.join(c['keywords'])}")
    click.echo(f"size {c['size']}, first {_when(c['first_seen'])}, last {_when(c['last_seen'])}, "
               f"requesters {c['requesters']}, MRR {c['mrr']:g}")
    click.echo("weekly: " + ", ".join(f"{w['week']} {w['count']}" for w in c["weekly"]))
    if c["nearest"]:
        n = c["nearest"]
        click.echo(f"nearest: {n['type']} {n['id']} ({n['title']}), score {n['score']:.2f}")
    if c["idea_id"]:
        click.echo(f"idea: {c['idea_id']}")
    if c.get("top_requesters"):
        click.echo("asked by: " + ", ".join(_person(p) for p in c["top_requesters"])
                   + (f" and {c['requesters'] - len(c['top_requesters'])} more" if c["requesters"] > len(c["top_requesters"]) else ""))
    for q in c["queries"]:
        left_out = "  [left out]" if q.get("excluded") else ""
        click.echo(f"  - {q['text']}  ({q['search_id']}){left_out}")


def _person(p: dict) -> str:
    name = f"{p['customer_id']} ({p['email']})" if p.get("customer_id") and p.get("email") else p.get("email") or p.get("customer_id")
    return f"{name} MRR {p['mrr']:g}" if p.get("mrr") else str(name)


@click.command("requesters")
@click.argument("idea_id", required=False)
@click.option("--csv", "as_csv", is_flag=True,
              help="Print CSV (idea_id,idea_title,customer_id,email,mrr) for a spreadsheet or a mailing.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON (GET /api/ideas/<id>/requesters).")
@click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url).")
def ideas_requesters(idea_id, as_csv, as_json, database_url):
    """Who asked for idea IDEA_ID, highest MRR first; without IDEA_ID, for every idea that has any.

    A merged idea's requesters are on the idea it was merged into: those are listed, and said so."""
    from .ideas import list_ideas, resolve_idea
    from .review import sync_requesters
    from .votes import idea_requesters

    engine = existing_store(_settings(database_url=database_url))  # the store only: no index, no model
    try:
        sync_requesters(engine)  # people who asked since the review, as a server would have added them
        ids = [idea_id] if idea_id else [i["id"] for i in list_ideas(engine) if i["requesters"]]
        found = []
        with engine.connect() as conn:
            for one in ids:
                target = resolve_idea(conn, one)
                if target is not None and target["id"] != one:
                    click.echo(f"{one} was merged into {target['id']}: its requesters are listed there", err=True)
                got = idea_requesters(conn, target["id"] if target else one)
                if got is None:
                    raise click.ClickException(f"no idea with id {one!r}")
                found.append(got | {"title": (target or {}).get("title")})
    finally:
        engine.dispose()
    if not found:
        click.echo("no idea has requesters yet", err=True)
    if as_json:  # one idea: the API's object; every idea: a list of them, each with its title
        payload = {k: v for k, v in found[0].items() if k != "title"} if idea_id else found
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    elif as_csv:
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["idea_id", "idea_title", "customer_id", "email", "mrr"])
        # customer_id, email and titles are what callers of the API said: a formula is not run
        for idea in found:
            writer.writerows([csv_value(idea["idea_id"]), csv_value(idea["title"] or ""), csv_value(p["customer_id"] or ""),
                              csv_value(p["email"] or ""), "" if p["mrr"] is None else f"{p['mrr']:g}"]
                             for p in idea["requesters"])
        click.echo(out.getvalue(), nl=False)
    else:
        for idea in found:
            people = idea["requesters"]
            moved = f"; merged into {idea['merged_into']}" if idea.get("merged_into") else ""
            people_count = f"{len(people)} requester{'' if len(people) == 1 else 's'}"
            click.echo(f"{idea['idea_id']} [{idea['status']}]: {people_count}, MRR {idea['mrr']:g}{moved}")
            for p in people:
                click.echo(f"  {_person(p)}")


def _review(action: str):
    @clusters.command(action)
    @click.argument("candidate_id")
    @_path_options
    def command(candidate_id, idea_id=None, title=None, exclude=(), **paths):
        from .candidates import CandidateError

        with _opened(paths) as board:
            try:
                if action == "promote":
                    out = board.promote(candidate_id, title, exclude=tuple(exclude))
                elif action == "merge":
                    out = board.merge(candidate_id, idea_id, tuple(exclude))
                else:
                    out = board.dismiss(candidate_id)
            except CandidateError as exc:
                _fail(exc)
        idea = out.get("idea")
        taught = f" ({out['aliases_added']} of its questions now aliases of the idea)" if out.get("aliases_added") else ""
        click.echo(f"{candidate_id}: {out['candidate']['status']}" + (f" -> idea {idea['id']}" if idea else "") + taught)

    return command


_promote = _review("promote")
_promote.help = "Create an idea from candidate CANDIDATE_ID (its requesters become votes)."
click.option("--title", required=True,
             help="Idea title, as the public board shows it (the candidate's label is a customer's own words).")(_promote)
_merge = _review("merge")
_merge.help = "Fold candidate CANDIDATE_ID into an existing open idea."
click.option("--idea", "idea_id", required=True, help="Id of the idea to merge into.")(_merge)
for _command in (_promote, _merge):
    click.option(
        "--exclude", multiple=True, metavar="SEARCH_ID",
        help="A question of the candidate (its search id, from `clusters show`) that is not about the idea: "
             "it does not become an alias of it, and whoever asked only such questions is not its requester (repeatable).",
    )(_command)  # fmt: skip
_dismiss = _review("dismiss")
_dismiss.help = "Hide candidate CANDIDATE_ID until it grows markedly."


@click.group()
def outbox():
    """Notifications to requesters and their webhook delivery state."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]), default=None,
              help="Only notifications in this state (default: all).")
@click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url).")
def outbox_list(status, database_url):
    """Recent notifications with attempts and the last error."""
    from .outbox import list_outbox

    engine = existing_store(_settings(database_url=database_url))
    found = list_outbox(engine, status)
    click.echo(", ".join(f"{k} {v}" for k, v in found["counts"].items()))
    for n in found["notifications"]:
        who = n["email"] or n["customer_id"]
        error = f"  last error: {n['last_error']}" if n["last_error"] else ""
        item = n["payload"].get("idea") or n["payload"].get("article") or {}  # what it is about
        about = f" ({item.get('title') or item.get('id')})" if item else ""
        tries = f"{n['attempts']} attempt{'' if n['attempts'] == 1 else 's'}"
        click.echo(f"#{n['id']} {n['kind']}{about} -> {who} [{n['status']}, {tries}]{error}")


@outbox.command("deliver")
@click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url).")
def outbox_deliver(database_url):
    """Send every due notification once (for a cron job instead of a running server)."""
    from .db import make_engine, upgrade
    from .outbox import deliver_due

    settings = _settings(database_url=database_url)
    if not settings.webhook_url:
        raise click.UsageError("set webhook_url (DEFLECT_WEBHOOK_URL) first")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    result = deliver_due(engine, settings)
    click.echo(f"{result['delivered']} delivered, {result['retrying']} will be retried, {result['failed']} failed")
