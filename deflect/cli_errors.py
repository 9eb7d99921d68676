"""The one place where an error inside a `deflect` command becomes a one-line `Error: ...`.

Errors an operator can cause and fix (deflect.errors.DeflectError: missing model, database
written by a newer deflect...; an unreachable database; a file that cannot be written) are
said in one line with the cause and what to do, exit status 1 (2 for configuration errors).
Anything else is unexpected: one line too, and `deflect -v ...` shows its traceback.
Database URLs are shown with the password masked, and the password never appears.
"""

from __future__ import annotations

import sys

import click

from .errors import DeflectError, mask_url, url_password

# ctx.meta key under which cli_settings keeps the database URL of the command's settings.
DATABASE_URL = "deflect.database_url"


class DeflectGroup(click.Group):
    """A click group whose commands' errors are reported by describe() instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except BrokenPipeError:
            raise  # `deflect events export | head`: click's main stops quietly, as `cat` would
        except Exception as exc:
            database_url = ctx.meta.get(DATABASE_URL)
            known = describe(exc, database_url)
            if known is None and ctx.params.get("verbose"):
                raise  # unexpected, and asked for details: the traceback
            message, code = known or (_unexpected(exc), 1)
            problem = click.ClickException(_without_password(message, database_url))
            problem.exit_code = code
            raise problem from None


def describe(exc: BaseException, database_url: str | None) -> tuple[str, int] | None:
    """(one-line message, exit status) for an error the operator can act on; None if unexpected."""
    if isinstance(exc, DeflectError):
        return str(exc), exc.exit_code
    where = f" {mask_url(database_url)}" if database_url else ""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        cause = _first_line(exc.orig) if exc.orig is not None else _first_line(exc)
        if exc.statement is None or exc.connection_invalidated:  # failed while connecting
            hint = (
                "can this user read and write that file and its folder?"
                if (database_url or "").startswith("sqlite")
                else "is the database server running, and is database_url right?"
            )
            return f"cannot connect to the database{where}: {cause} ({hint})", 1
        return f"database error on{where}: {cause}", 1
    if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError):
        return f"database{where}: {_first_line(exc)}", 1
    alembic_exc = sys.modules.get("alembic.util.exc")
    if alembic_exc is not None and isinstance(exc, alembic_exc.CommandError):
        return f"database schema{where}: {_first_line(exc)}", 1
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}", 1
    return None


def _unexpected(exc: BaseException) -> str:
    return f"unexpected {type(exc).__name__}: {_first_line(exc)} (`deflect -v ...` shows the traceback)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _without_password(message: str, database_url: str | None) -> str:
    password = url_password(database_url) if database_url else None
    return message.replace(password, "***") if password else message
