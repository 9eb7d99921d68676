"""Helpers shared by the page and browser tests: servers with their own database, hostile content."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from conftest import ADMIN_TOKEN, TINY_KB, serve_app, write_kb

# Every payload sets window.__pwned (or a title) if it ever runs; the tests check it never does.
HOSTILE_ARTICLE = """---
title: Export <img src=x onerror="window.__pwned='title'"> your data
url: javascript:window.__pwned='url'
tags: [data, "<script>window.__pwned='tag'</script>"]
---
# Export your data

Export all your tasks to a CSV spreadsheet from Settings, then Data export.

<script>window.__pwned = 'script'</script>

<img src="x" onerror="window.__pwned='onerror'">

<a href="javascript:window.__pwned='raw-a'" onclick="window.__pwned='onclick'">raw anchor</a>

<iframe src="javascript:window.__pwned='iframe'"></iframe>

[Download the export](javascript:window.__pwned='link')
and [the encoded one](jav&#x61;script:window.__pwned='encoded')
and ![a picture](javascript:window.__pwned='image').

- How do I export my tasks to a CSV spreadsheet?
"""
HOSTILE_ARTICLE_ID = "data/export-hostile"
HOSTILE_IDEA = {
    "id": "hostile-idea",
    "title": "Export to <img src=x onerror=\"window.__pwned='idea'\"> spreadsheets",
    "description": "<script>window.__pwned='idea-description'</script> Please let me export tasks to spreadsheets.",
    "status": "open",
    "votes": 3,
}
HOSTILE_QUERY = "<img src=x onerror=\"window.__pwned='query'\"> can I export to a spreadsheet"


def hostile_kb(base: Path) -> Path:
    """A tiny KB plus a hostile article and a hostile idea (written once per test session)."""
    kb = base / "hostile-kb"
    if not kb.exists():
        files = dict(TINY_KB)
        files[f"{HOSTILE_ARTICLE_ID}.md"] = HOSTILE_ARTICLE
        files["ideas.jsonl"] = json.dumps(HOSTILE_IDEA) + "\n"
        write_kb(kb, files)
    return kb


@contextmanager
def hostile_site(tmp_path_factory, name: str, **overrides) -> Iterator[tuple[str, object]]:
    """deflect serving the hostile KB (index shared by every test module): (base URL, runtime)."""
    from deflect.runtime import Runtime
    from deflect.web import create_app

    shared = tmp_path_factory.getbasetemp()
    settings = make_settings(tmp_path_factory.mktemp(name), hostile_kb(shared), shared / "hostile-index", **overrides)
    runtime = Runtime(settings)
    try:
        with serve_app(create_app(runtime.settings, runtime)) as base:
            yield base, runtime
    finally:
        runtime.close()
        runtime.db.dispose()


def make_settings(tmp: Path, kb_dir: Path | str, index_dir: Path | str, **overrides):
    """Hermetic settings: no environment, no deflect.toml, a database of this test module's own."""
    from deflect.settings import load_settings

    values = {
        "kb_dir": str(kb_dir),
        "index_dir": str(index_dir),
        "database_url": f"sqlite:///{tmp / 'deflect.db'}",
        "admin_token": ADMIN_TOKEN,
        # Test clients all come from 127.0.0.1 and send far more than a person: no rate limits
        # unless a test configures them (tests/test_limits.py).
        "rate_limit_per_client": 0,
        "rate_limit_per_session": 0,
    }
    values.update(overrides)
    return load_settings(config_file="none", env={}, **values)


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def suggest(base: str, query: str, **body) -> dict:
    response = requests.post(f"{base}/api/suggest", json={"query": query, **body}, timeout=60)
    response.raise_for_status()
    return response.json()
