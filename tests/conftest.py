"""Shared fixtures: real model, real faiss, real SQLite in tmp folders, real HTTP.

The sample KB (kb_articles/, ~50 articles) takes ~30 s to embed, so it is indexed once
per session (`sample_runtime`) and served once per session (`live_server`). Tests that
index something themselves use tiny KBs written into tmp_path (`write_kb`).
"""

from __future__ import annotations

import os

# Before anything can import huggingface_hub / sentence-transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import contextlib  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402
from server_support import ADMIN_TOKEN  # noqa: E402, F401 - shared with the tests that import it from here

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_KB = ROOT / "kb_articles"
DATA = Path(__file__).resolve().parent / "data"

# Three short, clearly distinct articles: enough for indexing, CLI and eval tests.
TINY_KB = {
    "account/reset-password.md": """---
title: Reset a forgotten password
tags: [account]
---
# Reset a forgotten password

If you forgot your password, click **Forgot password?** on the sign-in page and we
email you a reset link. The link is valid for one hour.

- I forgot my password and cannot log in
""",
    "billing/refunds.md": """# How refunds work

We refund annual plans within 30 days of payment. Monthly plans are not refunded,
but you can cancel at any time so you are not charged again.

- Can I get my money back?
""",
    "integrations/slack.md": """# Connect Slack

Send task notifications to a Slack channel. Open Settings, then Integrations, click
Slack and choose the channel that should receive updates.
""",
}


def write_kb(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write {relative path: text or bytes} under root and return root."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _hermetic_settings(tmp: Path, **overrides):
    """Settings that ignore the caller's environment and any deflect.toml in the cwd."""
    from deflect.settings import load_settings

    values = {
        "kb_dir": str(tmp / "kb"),
        "index_dir": str(tmp / "index"),
        "database_url": f"sqlite:///{tmp / 'd.db'}",
        "admin_token": ADMIN_TOKEN,
        # Test clients all come from 127.0.0.1 and send far more than a person: no rate limits
        # unless a test configures them (tests/test_limits.py).
        "rate_limit_per_client": 0,
        "rate_limit_per_session": 0,
        "wrong_token_limit_per_client": 0,
    }
    values.update(overrides)
    if "kb_dir" not in overrides and tmp.is_dir():
        (tmp / "kb").mkdir(exist_ok=True)  # an empty KB unless the test writes one (a missing folder is an error)
    return load_settings(config_file="none", env={}, **values)


@pytest.fixture
def settings_factory(tmp_path):
    """settings_factory(**overrides) -> Settings rooted in this test's tmp_path."""

    def make(**overrides):
        return _hermetic_settings(tmp_path, **overrides)

    return make


@pytest.fixture
def tiny_kb(tmp_path) -> Path:
    return write_kb(tmp_path / "kb", TINY_KB)


@pytest.fixture(scope="session")
def embedder():
    """The real bundled model (one instance per process, shared with Runtime)."""
    from deflect.refresh import make_embedder

    return make_embedder(_hermetic_settings(Path("/nonexistent")))


@pytest.fixture(scope="session")
def sample_runtime(tmp_path_factory):
    """The sample KB indexed once with the real model; SQLite and index in a tmp folder."""
    from deflect.runtime import Runtime

    tmp = tmp_path_factory.mktemp("sample")
    settings = _hermetic_settings(tmp, kb_dir=str(SAMPLE_KB))
    runtime = Runtime(settings)
    yield runtime
    runtime.db.dispose()


@contextlib.contextmanager
def serve_app(app) -> Iterator[str]:
    """Serve a WSGI app on 127.0.0.1:<free port> in a thread; yield its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="deflect-test-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        requests.get(base + "/healthz", timeout=30).raise_for_status()
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def served(settings_factory, tiny_kb, database_url):
    """served(**overrides) -> (base_url, runtime): a tiny-KB deflect on the parametrised database,
    served over real HTTP; every server and runtime started is stopped after the test."""
    from deflect.runtime import Runtime
    from deflect.web import create_app

    started, contexts = [], []

    def make(**overrides):
        settings = settings_factory(database_url=database_url, **overrides)
        runtime = Runtime(settings)
        started.append(runtime)
        ctx = serve_app(create_app(settings, runtime))
        contexts.append(ctx)
        return ctx.__enter__(), runtime

    yield make
    for ctx in contexts:
        ctx.__exit__(None, None, None)
    for runtime in started:
        runtime.close()
        runtime.db.dispose()


@pytest.fixture(scope="session")
def live_server(sample_runtime) -> Iterator[str]:
    """Base URL of a real HTTP server serving sample_runtime."""
    from deflect.web import create_app

    app = create_app(sample_runtime.settings, sample_runtime)
    with serve_app(app) as base:
        yield base


# --- the browser --------------------------------------------------------------------------
# One Chromium for the whole session (Playwright's sync API allows one running instance), shared
# by test_browser.py and test_xss.py: Debian's, never Playwright's own download.
CHROMIUM = os.environ.get("DEFLECT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="session")
def browser():
    if os.environ.get("DEFLECT_SKIP_BROWSER") == "1":
        pytest.skip("DEFLECT_SKIP_BROWSER=1: browser tests skipped on purpose")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: `apt-get install -y chromium` (or DEFLECT_SKIP_BROWSER=1 to skip)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No DEFLECT_* variable from the caller's shell, and no deflect.toml from the cwd."""
    for name in list(os.environ):
        if name.startswith("DEFLECT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DEFLECT_CONFIG", "none")  # read no config file
    return monkeypatch


# --- PostgreSQL ------------------------------------------------------------------------
# Storage tests run against SQLite and a real PostgreSQL server. The server comes from
# DEFLECT_TEST_POSTGRES_URL, or is started here from Debian's postgresql binaries on
# 127.0.0.1 in a temp folder. Without either, PostgreSQL tests are skipped, unless
# DEFLECT_REQUIRE_POSTGRES=1 (set by .ci/run), where that is a failure.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL (without database name) for this test session."""
    from server_support import find_pg_bin, local_postgres

    given = os.environ.get("DEFLECT_TEST_POSTGRES_URL")
    if given:
        yield given.rstrip("/")
        return
    if not find_pg_bin("initdb") or not find_pg_bin("pg_ctl"):
        if os.environ.get("DEFLECT_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL binaries not found (apt-get install postgresql) but DEFLECT_REQUIRE_POSTGRES=1")
        pytest.skip("PostgreSQL not installed (apt-get install postgresql, or set DEFLECT_TEST_POSTGRES_URL)")
    with local_postgres() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    from server_support import fresh_database

    return fresh_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """Each storage test runs once on a SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url):
    """A migrated, empty store (SQLAlchemy engine) on the parametrised database."""
    from deflect import db

    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()
