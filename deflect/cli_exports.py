"""`deflect events export` and `deflect searches export`: the rows behind the metrics, for analysts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable

import click

from .cli_options import cli_settings, csv_value, existing_store, parse_period_options, period_options

_FORMAT = click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True,
                       help="Output format.")  # fmt: skip
_OUTPUT = click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="-",
                       help="File to write (default: stdout).")  # fmt: skip


_BOM = click.option("--bom", is_flag=True,
                    help="Start the CSV with a UTF-8 byte-order mark, so Excel shows Korean and accented text "
                         "right instead of guessing the computer's own encoding (--format csv only).")  # fmt: skip


def export_options(func):
    """--since, --until, --database-url, --format, --bom and -o, as both exports take them."""
    return period_options(_FORMAT(_BOM(_OUTPUT(func))))


@click.group()
def events():
    """Deflection events (click, helpful, not_helpful, ticket_created, vote)."""


@events.command("export")
@export_options
@click.option("--by-search-time", is_flag=True,
              help="Take the period by the search's time, as the metrics do: the period's searches with all "
                   "their events, a ticket filed after the period's end included (default: by the event's time).")
def events_export(since, until, database_url, fmt, bom, output, by_search_time):
    """Write every event of the period (by event time, or by its search's with --by-search-time) with its
    search (query, session, answered...)."""
    from functools import partial

    from .exports import event_rows

    _export(partial(event_rows, by_search_time=by_search_time), "events", since, until, database_url, fmt, bom, output)


@click.group()
def searches():
    """Searches: every suggest call, with what it showed."""


@searches.command("export")
@export_options
def searches_export(since, until, database_url, fmt, bom, output):
    """Write every search of the period (by search time, as `deflect metrics` counts), with its results."""
    from .exports import search_rows

    _export(search_rows, "searches", since, until, database_url, fmt, bom, output)


@click.command("export")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["open", "planned", "in_progress", "shipped", "declined", "merged"]),
              help="Only ideas with this status; repeatable (default: every idea).")
@click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url).")
@_FORMAT
@_BOM
@_OUTPUT
def ideas_export(statuses, database_url, fmt, bom, output):
    """Write the board for a roadmap spreadsheet: each idea with its status, votes, requesters and
    their MRR (as the board counts them), the customer questions its candidates brought, and when it
    was created and shipped."""
    from .exports import idea_rows
    from .review import sync_requesters

    if bom and fmt != "csv":
        raise click.UsageError("--bom is for --format csv (JSON lines are read by programs, which want none)")
    engine = existing_store(cli_settings(database_url=database_url))
    sync_requesters(engine)  # people who asked since the review, as a server would have added them
    _write(idea_rows(engine, tuple(statuses) or None), fmt, output, "ideas", bom)


def _export(rows_of, noun: str, since, until, database_url, fmt: str, bom: bool, output: str) -> None:
    """`rows_of(engine, start, end)` of the store and period the options name, written out."""
    if bom and fmt != "csv":
        raise click.UsageError("--bom is for --format csv (JSON lines are read by programs, which want none)")
    engine = existing_store(cli_settings(database_url=database_url))
    start, end = parse_period_options(since, until)
    _write(rows_of(engine, start, end), fmt, output, noun, bom)


def _write(rows: Iterable[dict], fmt: str, output: str, noun: str, bom: bool = False) -> None:
    """Rows as JSON lines or CSV (header from the first row); the count on stderr when writing a file."""
    import csv

    count = 0
    if output != "-":
        from pathlib import Path

        from .db import create_private

        with contextlib.suppress(OSError):  # a folder that is not there: open_file says so below
            create_private(Path(output))  # people's questions and emails: the owner's to share
    with click.open_file(output, "w", encoding="utf-8-sig" if bom else "utf-8") as out:
        writer = None
        for row in rows:
            if fmt == "jsonl":
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow({k: csv_value(json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v)
                                 for k, v in row.items()})
            count += 1
    if output != "-":
        click.echo(f"{count} {noun} written to {output}", err=True)
