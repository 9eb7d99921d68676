"""schemathesis against a real server: every operation of /api/openapi.json, valid and invalid input,
with the admin token. No answer may be a 5xx, and every answer must be one the document describes.

The server serves the sample KB (index shared with sample_runtime) with a database of its own,
on SQLite and on PostgreSQL. bench/fuzz.py is the big run.
"""

from __future__ import annotations

import pytest
from conftest import ADMIN_TOKEN, SAMPLE_KB, serve_app
from fuzz_support import fuzz_api
from pages_support import make_settings

# Inputs per operation and mode (positive, negative): about 1,500 requests on SQLite, half on PostgreSQL.
EXAMPLES = {"sqlite": 30, "postgresql": 15}


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzz_server(request, sample_runtime, tmp_path):
    from deflect.runtime import Runtime
    from deflect.web import create_app

    overrides = {}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    settings = make_settings(tmp_path, SAMPLE_KB, sample_runtime.settings.index_dir, **overrides)
    runtime = Runtime(settings)
    try:
        with serve_app(create_app(settings, runtime)) as base:
            yield request.param, base
    finally:
        runtime.close()
        runtime.db.dispose()


def test_no_input_gets_a_5xx_or_an_undocumented_answer(fuzz_server):
    database, base = fuzz_server
    report = fuzz_api(base, ADMIN_TOKEN, EXAMPLES[database], progress=print)
    assert report.failures == [], "\n".join(report.failures)
    assert report.server_errors == 0
    # every operation was exercised, and the answers were not all one kind of refusal
    assert min(n for name, n in report.per_operation.items() if "[positive]" in name) >= 1
    assert report.tried >= 20 * EXAMPLES[database]
    assert {200, 400, 401, 404} <= set(report.statuses)
