"""Options and helpers shared by every `deflect` command group (kept apart to avoid import cycles)."""

from __future__ import annotations

import click

from .settings import load_settings

_PATH_OPTIONS = [
    click.option("--kb", "kb_dir", help="Knowledge-base folder (setting kb_dir).", default=None),
    click.option("--index-dir", help="Index folder (setting index_dir).", default=None),
    click.option("--database-url", help="SQLAlchemy database URL (setting database_url).", default=None),
    click.option("--model", help="Sentence-transformers model name or path (setting model).", default=None),
]


def path_options(func):
    """Add --kb, --index-dir, --database-url and --model to a command."""
    for option in reversed(_PATH_OPTIONS):
        func = option(func)
    return func


def settings_or_usage_error(**overrides):
    """Settings from defaults, deflect.toml, env and these overrides; a bad value is a usage error."""
    try:
        return load_settings(**overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
