"""`deflect aliases ...`: learned aliases from the command line (list, delete, import)."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_options import cli_settings, existing_store, migrated_store, skipped_lines

_settings = cli_settings
_database_option = click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url).")


@click.group()
def aliases():
    """Learned aliases (queries users confirmed an item answers, an admin's review did, or were imported)."""


@aliases.command("list")
@_database_option
@click.option("--all", "show_all", is_flag=True, help="Also list queries not yet confirmed often enough.")
def aliases_list(database_url, show_all):
    """List learned aliases."""
    from .aliases import list_aliases, mark_in_use
    from .ideas import SUGGESTED_STATUSES, list_ideas
    from .index_folder import load_index

    settings = _settings(database_url=database_url)
    engine = existing_store(settings)
    rows = list_aliases(engine, active=None if show_all else True)
    if not rows:
        click.echo("no learned aliases yet" if show_all else "no active learned aliases (--all also lists pending ones)")
        return
    index = load_index(settings.index_dir)
    article_ids = {a["id"] for a in index.articles} if index is not None else None
    mark_in_use(rows, article_ids, {str(i["id"]) for i in list_ideas(engine, SUGGESTED_STATUSES)})
    for row in rows:
        state = "active" if row["active"] else "pending"
        how = row["source"] if row["source"] in ("review", "import") else f"{row['confirmations']}x"
        unused = ""
        if row["active"] and not row["in_use"]:
            unused = "  (not used: " + ("article not in the KB)" if row["item_type"] == "article" else "idea not suggested)")
        click.echo(f"{row['id']:>6}  {state:<7} {how:>6}  {row['item_type']}:{row['item_id']}  {row['query']!r}{unused}")


@aliases.command("delete")
@click.argument("alias_id", type=int)
@_database_option
def aliases_delete(alias_id, database_url):
    """Delete alias ALIAS_ID (running servers drop it within sync_interval_seconds)."""
    from .aliases import delete_alias
    from .db import writing

    engine = existing_store(_settings(database_url=database_url))
    with writing(engine) as conn:
        if not delete_alias(conn, alias_id):
            raise click.ClickException(f"no alias with id {alias_id}")
    click.echo(f"alias {alias_id} deleted")


@aliases.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--kb", "kb_dir", default=None, help="Knowledge-base folder whose article ids lines may name (setting kb_dir).")
@_database_option
def aliases_import(file, kb_dir, database_url):
    """Add confirmed answers from a JSONL FILE as active aliases ({"text", "article"} or {"text", "idea"}).

    For answers your team already knows, e.g. past tickets and the article that solved each.
    Every running server uses them within sync_interval_seconds, and refits the answered
    decision with the article ones as real questions. A bad line (an article not in the KB, an
    unknown, shipped or declined idea, another field...) is skipped and named; a merged idea's
    line goes to the idea it was merged into. Exit status 1 if any line was skipped.
    """
    from .aliases import import_aliases
    from .kb_folder import load_kb

    settings = _settings(database_url=database_url, **({"kb_dir": kb_dir} if kb_dir else {}))
    if not Path(settings.kb_dir).is_dir():
        raise click.ClickException(f"no knowledge-base folder {settings.kb_dir} (setting kb_dir, or --kb)")
    engine = migrated_store(settings)
    articles, _ = load_kb(settings.kb_dir, settings.default_locale, settings.passage_chars,
                          max_article_bytes=settings.max_article_bytes)
    added, already, errors = import_aliases(engine, file, {a.id for a in articles}, settings.max_query_chars)
    for error in errors:
        click.echo(f"skipped: {error}", err=True)
    click.echo(f"{added} alias{'' if added == 1 else 'es'} added, {already} already active, {len(errors)} skipped")
    skipped_lines(file, errors, imported=added + already)
