"""`deflect person show|forget` and `deflect searches forget`: data-protection requests and retention."""

from __future__ import annotations

import json
import time

import click

from .cli_options import cli_settings, existing_store


def _person_options(func):
    for option in reversed([
        click.option("--email", "emails", multiple=True, help="An email address the person gave (with a ticket, a vote, an import); any case; repeatable."),
        click.option("--customer-id", "customer_ids", multiple=True, help="A customer id the person was given as; repeatable."),
        click.option("--session", "sessions", multiple=True, help="A widget session id of theirs; repeatable."),
        click.option("--mentioning", multiple=True, metavar="WORDS",
                     help="Words their questions held, such as their name (3 characters at least, 2 in Korean and other "
                          "non-Latin scripts; any case): every "
                          "search, alias and candidate whose text holds them; repeatable."),
        click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url)."),
    ]):
        func = option(func)
    return func


def _person(emails, customer_ids, sessions, mentioning):
    from .erasure import Person, too_short

    for words in mentioning:
        if too_short(words):
            raise click.BadParameter(f"{words.strip()!r} is too short to look for (it would be found inside other "
                                     "words): give at least 3 characters (2 in Korean and other scripts), such as "
                                     "a full name", param_hint="--mentioning")  # fmt: skip
    person = Person(tuple(emails), tuple(customer_ids), tuple(sessions), tuple(mentioning))
    if person.empty:
        raise click.UsageError("name the person: --email, --customer-id, --session or --mentioning")
    return person


@click.group()
def person():
    """One person's data: show it (a request for access) or forget it (a request for erasure)."""


@person.command("show")
@_person_options
def person_show(emails, customer_ids, sessions, mentioning, database_url):
    """Print, as JSON, everything deflect holds tied to the person: searches, events that name them,
    votes, notifications, and the aliases and idea candidates made from their questions."""
    from .erasure import show_person

    who = _person(emails, customer_ids, sessions, mentioning)
    engine = existing_store(cli_settings(database_url=database_url))
    click.echo(json.dumps(show_person(engine, who), ensure_ascii=False, indent=2, default=str))


@person.command("forget")
@_person_options
@click.option("--yes", is_flag=True, help="Do it without asking first (scripts).")
def person_forget(emails, customer_ids, sessions, mentioning, database_url, yes):
    """Erase the person: their questions read [erased], their email and customer id on events and
    votes become a pseudonym (votes and MRR still count, nothing is sent to it), notifications to
    them are deleted, and aliases and candidate labels made from their questions go. Every figure
    stays as it was. Nothing undoes it."""
    from .erasure import forget_person, show_person

    who = _person(emails, customer_ids, sessions, mentioning)
    engine = existing_store(cli_settings(database_url=database_url))
    shown = show_person(engine, who)
    counts = shown["counts"]
    click.echo("found: " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items()))
    others = shown["other_identifiers"]
    if others["emails"] or others["customer_ids"]:
        named = [f"--email {e}" for e in others["emails"]] + [f"--customer-id {c}" for c in others["customer_ids"]]
        click.echo("their rows also name " + " ".join(named) + ": add those to forget their other rows too (a "
                   "customer id may be an account others share)")
    for idea in shown["ideas_mentioning"]:
        click.echo(f"idea {idea['id']} ({idea['title']!r}) mentions them: it is the team's text, edit it yourself "
                   f"(PATCH /api/ideas/{idea['id']})")
    if not any(counts.values()):
        return
    if not yes:
        click.confirm("Forget all of it? Nothing undoes this", abort=True)
    done = forget_person(engine, who)
    click.echo("forgotten: " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in done.items()))
    click.echo("Running servers drop the aliases within sync_interval_seconds; backups and exports made "
               "before still hold the data.")


@click.command("forget")
@click.option("--before", required=True, metavar="DATE",
              help="Forget every search made before this day (ISO 8601 date or date/time, or epoch seconds; UTC).")
@click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url).")
@click.option("--yes", is_flag=True, help="Do it without asking first (cron).")
def searches_forget(before, database_url, yes):
    """Retention: every search before DATE (with the rest of its typing) reads [erased], its session
    is replaced and its events' requester becomes a pseudonym; figures stay, content gaps and
    candidates lose those questions. Learned aliases stay (what deflect learned, not who asked).
    Nothing undoes it."""
    from .erasure import forget_before
    from .periods import PeriodError, parse_period

    try:
        start, _ = parse_period(before, None)
    except PeriodError as exc:
        raise click.BadParameter(exc.reason, param_hint="--before") from None
    # A second of slack: "now", written with its fractions rounded up, is not the future.
    if start > time.time() + 1:  # a sign slipped in a cron job's date arithmetic: every search would go
        raise click.BadParameter(f"{before} is in the future: every search up to now would be forgotten; give a "
                                 "day in the past (e.g. 90 days ago)", param_hint="--before")
    engine = existing_store(cli_settings(database_url=database_url))
    if not yes:
        click.confirm(f"Forget every search before {before}? Nothing undoes this", abort=True)
    done = forget_before(engine, start)
    click.echo("forgotten: " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in done.items()))
