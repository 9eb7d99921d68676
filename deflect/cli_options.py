"""Options and helpers shared by every `deflect` command group (kept apart to avoid import cycles)."""

from __future__ import annotations

import click

from .settings import load_settings

_PATH_OPTIONS = [
    click.option("--kb", "kb_dir", help="Knowledge-base folder (setting kb_dir).", default=None),
    click.option("--index-dir", help="Index folder (setting index_dir).", default=None),
    click.option("--database-url", help="SQLAlchemy database URL (setting database_url).", default=None),
    click.option("--model", help="Model (setting model): a sentence-transformers folder or name, all-mpnet-base-v2 (the opt-in extra), or empty for the bundled all-MiniLM-L6-v2.", default=None),
]


def path_options(func):
    """Add --kb, --index-dir, --database-url and --model to a command."""
    for option in reversed(_PATH_OPTIONS):
        func = option(func)
    return func


def cli_settings(**overrides):
    """Settings from defaults, deflect.toml, env and these overrides; a bad one is `Error: ...`, exit 2.

    The database URL is kept on the click context, so that a database error (deflect/cli_errors.py)
    can name it, with its password masked.
    """
    from .cli_errors import DATABASE_URL

    try:
        settings = load_settings(**overrides)
    except ValueError as exc:  # ConfigError: names the setting and where its value came from
        raise ConfigProblem(str(exc)) from None
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[DATABASE_URL] = settings.database_url
    return settings


def migrated_store(settings):
    """The settings' database (a SQLAlchemy engine), with every migration applied."""
    from .db import make_engine, upgrade

    engine = make_engine(settings.database_url)
    upgrade(engine)
    return engine


def existing_store(settings, migrate: bool = True):
    """migrated_store for a command that only reads or removes: a SQLite file that is not there,
    or a database deflect never set up (PostgreSQL's own `postgres` database, say), is an error,
    not a new empty store (a wrong working folder or a typo in database_url would otherwise print
    zeros and exit 0, or create deflect's tables where they do not belong). `migrate=False` leaves
    an older one as it is (`deflect db current` reports it)."""
    from pathlib import Path

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from .db import make_engine, upgrade
    from .errors import mask_url

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        if not url.database.startswith("file:") and not path.exists():
            raise click.ClickException(
                f"no database at {path.resolve()} (database_url {settings.database_url!r}; a relative path is "
                "read from the working folder): `deflect serve` creates it, or give --database-url"
            )
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        ours = sa.inspect(conn).has_table("alembic_version")
    if not ours:
        engine.dispose()
        raise click.ClickException(
            f"{mask_url(settings.database_url)} is no deflect database (it has no deflect tables): check "
            "database_url, or let `deflect serve` or `deflect db upgrade` set it up"
        )
    if migrate:
        upgrade(engine)  # an older deflect database (a restored backup) is brought up to date
    return engine


class ConfigProblem(click.ClickException):
    """A configuration error: `Error: ...` without click's usage lines, exit status 2."""

    exit_code = 2


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_value(value):
    """Booleans as true/false (not Python's True/False), like the JSON export.

    Text a user typed that a spreadsheet would run as a formula gets a leading ' (OWASP's
    advice against CSV injection); numbers, and the JSONL export, stay exact.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def options_as_given(ctx: click.Context, skip: tuple[str, ...]) -> list[str]:
    """This command's options as command-line arguments again (those given or defaulted), for a worker."""
    args: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if not isinstance(param, click.Option) or param.name in skip or value is None:
            continue
        if param.is_flag and param.secondary_opts:
            args.append(param.opts[-1] if value else param.secondary_opts[-1])
        elif param.is_flag:
            args += [param.opts[-1]] if value else []
        else:
            args += [param.opts[-1], str(value)]
    return args


def parse_period_options(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """--since/--until as (start, end) epoch seconds; a usage error (exit 2) naming the bad option."""
    from .periods import PeriodError, parse_period

    try:
        return parse_period(since, until)
    except PeriodError as exc:
        raise click.BadParameter(exc.reason.replace("until", "--until"), param_hint=f"--{exc.bound}") from None


_PERIOD_OPTIONS = [
    click.option("--since", default=None, help="Start of the period (ISO 8601 date/time or epoch seconds, UTC)."),
    click.option("--until", default=None, help="End of the period, exclusive (default: now); a date alone includes that day."),
    click.option("--database-url", default=None, help="SQLAlchemy database URL (setting database_url)."),
]


def period_options(func):
    """--since, --until and --database-url, as every report command takes them."""
    for option in reversed(_PERIOD_OPTIONS):
        func = option(func)
    return func


def skipped_lines(file, errors: list[str], imported: int) -> None:
    """Exit 1 after an import that skipped lines (each already named): a script must not take a
    half-imported file for a whole one (nor an empty file for a good one). The lines imported
    stay; importing again adds nothing twice."""
    if not imported:
        raise click.ClickException(f"no line of {file} could be imported")
    if not errors:
        return
    lines = "1 line" if len(errors) == 1 else f"{len(errors)} lines"
    raise click.ClickException(f"{lines} of {file} skipped (named above); the rest was imported: fix them and import the file again")
