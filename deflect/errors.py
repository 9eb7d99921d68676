"""Errors whose message is meant for the operator as is: the cause and what to do, on one line.

The CLI prints them as `Error: <message>` without a traceback (deflect/cli_errors.py); a
configuration error exits with status 2, any other with status 1.
"""

from __future__ import annotations

import re


class DeflectError(Exception):
    """A failure the operator can fix (unreachable database, missing model...), said in one line."""

    exit_code = 1


class ConfigError(DeflectError, ValueError):
    """A setting, or the config file, is wrong; names the setting and where its value came from."""

    exit_code = 2


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def mask_url(url: str) -> str:
    """The URL with its password shown as ***, for messages and logs."""
    try:
        import sqlalchemy as sa

        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: mask user:password@ by hand
        return _PASSWORD_IN_URL.sub(r"\1***@", url)


def url_password(url: str) -> str | None:
    try:
        import sqlalchemy as sa

        return sa.make_url(url).password
    except Exception:
        match = _PASSWORD_IN_URL.search(url)
        return match.group(0)[len(match.group(1)):-1] if match else None
