"""`deflect aliases import`: confirmed answers a team already has, as active aliases (both databases)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
import sqlalchemy as sa

from deflect import aliases
from deflect.db import ideas as ideas_table
from deflect.db import writing
from deflect.ideas import create_idea, update_idea

ARTICLES = {"account/reset-password", "billing/refunds", "integrations/slack"}


def _write(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


def test_import_adds_active_aliases_and_names_every_skipped_line(store, tmp_path):
    with writing(store) as conn:
        create_idea(conn, {"id": "dark-mode", "title": "Dark mode"})
        create_idea(conn, {"id": "night-theme", "title": "Night theme"})
        update_idea(conn, "night-theme", {"merged_into": "dark-mode"})
    before = aliases.generation(store)
    path = _write(tmp_path / "answers.jsonl", [
        {"text": "I can't get into my account", "article": "account/reset-password"},
        {"text": "  a black   background  please ", "idea": "night-theme"},  # merged: goes to dark-mode
        {"text": "q", "article": "nope/missing"},
        {"text": "q", "idea": "no-such-idea"},
        "not json",
        "[1, 2]",
        {"text": "q", "article": "billing/refunds", "idea": "dark-mode"},
        {"text": "q", "articel": "billing/refunds"},
        {"text": "   ", "article": "billing/refunds"},
        {"text": "x" * 51, "article": "billing/refunds"},
        {"text": "q", "article": 7},
        "",
    ])  # fmt: skip
    added, already, errors = aliases.import_aliases(store, path, ARTICLES, max_query_chars=50)
    assert (added, already) == (2, 0)
    assert errors == [
        f"{path}:3: article: no article with id 'nope/missing' in the KB",
        f"{path}:4: idea: no idea with id 'no-such-idea'",
        f"{path}:5: not JSON (Expecting value)",
        f'{path}:6: line: a JSON object, {{"text": ..., "article": ...}} or {{"text": ..., "idea": ...}}',
        f"{path}:7: article: name exactly one of article or idea",
        f"{path}:8: articel: unknown field (a line has text and article or idea)",
        f"{path}:9: text: the question, a non-empty string",
        f"{path}:10: text: longer than max_query_chars (50), the longest query /api/suggest accepts",
        f"{path}:11: article: an id, a non-empty string",
    ]
    rows = aliases.list_aliases(store)
    assert [(r["item_type"], r["item_id"], r["query"], r["active"], r["source"]) for r in rows] == [
        ("article", "account/reset-password", "I can't get into my account", True, "import"),
        ("idea", "dark-mode", "a black background please", True, "import"),
    ]
    assert aliases.generation(store) > before  # running servers reload


def test_closed_ideas_unstorable_text_and_odd_line_ends(store, tmp_path):
    with writing(store) as conn:
        for idea in ("live", "gone", "nope", "folded", "loose"):
            create_idea(conn, {"id": idea, "title": idea.title()})
        update_idea(conn, "folded", {"merged_into": "gone"})  # merged, and its target shipped since
        update_idea(conn, "gone", {"status": "shipped"})
        update_idea(conn, "nope", {"status": "declined"})
        conn.execute(sa.update(ideas_table).where(ideas_table.c.id == "loose").values(status="merged", merged_into="vanished"))
    text = "\n".join([
        json.dumps({"text": "first \u2028 line", "idea": "live"}, ensure_ascii=False),  # U+2028 inside a JSON string
        json.dumps({"text": "q", "idea": "gone"}),
        json.dumps({"text": "q", "idea": "nope"}),
        json.dumps({"text": "q", "idea": "folded"}),
        json.dumps({"text": "q", "idea": "loose"}),
        json.dumps({"text": "nul\u0000here", "idea": "live"}),
        json.dumps({"text": "half \ud800 pair", "idea": "live"}),
        json.dumps({"text": "q", "idea": "li\u0000ve"}),
        json.dumps({"text": "  " + "y" * 50 + "  ", "article": "billing/refunds"}),  # 50 once its spaces are gone
    ])  # fmt: skip
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass"))  # with a BOM, as Excel writes
    added, already, errors = aliases.import_aliases(store, path, ARTICLES, max_query_chars=50)
    assert (added, already) == (2, 0), errors
    assert errors == [
        f"{path}:2: idea: 'gone' is shipped: no longer suggested, so an alias would never be used",
        f"{path}:3: idea: 'nope' is declined: no longer suggested, so an alias would never be used",
        f"{path}:4: idea: 'folded' (merged into 'gone') is shipped: no longer suggested, so an alias would never be used",
        f"{path}:5: idea: 'loose' is merged into an idea that no longer exists",
        f"{path}:6: text: contains NUL or an unpaired surrogate, which cannot be stored",
        f"{path}:7: text: contains NUL or an unpaired surrogate, which cannot be stored",
        f"{path}:8: idea: contains NUL or an unpaired surrogate, which no id has",
    ]
    # One line, not two; its spacing (U+2028 is a space too) collapsed as in every stored query.
    assert [r["query"] for r in aliases.list_aliases(store)] == ["first line", "y" * 50]


def test_importing_again_adds_nothing_and_a_pending_alias_is_activated(store, tmp_path):
    now = time.time()
    with writing(store) as conn:
        conn.execute(sa.insert(aliases.aliases).values(
            item_type="article", item_id="billing/refunds", query="Can I get my money back", query_key="can i get my money back",
            confirmations=1, active=False, source="feedback", created_at=now, updated_at=now))  # fmt: skip
    path = _write(tmp_path / "answers.jsonl", [
        {"text": "can I get my money back", "article": "billing/refunds"},  # the pending one, same query
        {"text": "post updates to our team chat", "article": "integrations/slack"},
    ])  # fmt: skip
    assert aliases.import_aliases(store, path, ARTICLES, 1000) == (2, 0, [])
    assert all(r["active"] for r in aliases.list_aliases(store))
    before = aliases.generation(store)
    assert aliases.import_aliases(store, path, ARTICLES, 1000) == (0, 2, [])
    assert len(aliases.list_aliases(store)) == 2
    assert aliases.generation(store) == before  # nothing changed: no reload


def test_a_running_server_uses_imported_answers_at_once(served, tmp_path, database_url):
    """The real CLI in its own process, against a real server on the same database."""
    base, runtime = served(sync_interval_seconds=0.2)
    question = "where do I change the colour theme of the app"

    def top() -> tuple[str, float]:
        body = requests.post(f"{base}/api/suggest", json={"query": question, "types": ["article"]}, timeout=30).json()
        return body["results"][0]["id"], body["results"][0]["score"]

    first, _ = top()
    target = sorted(ARTICLES - {first})[0]  # an article this question did not find
    path = _write(tmp_path / "answers.jsonl", [{"text": question, "article": target}])
    exe = Path(sys.executable).parent / "deflect"
    env = {**os.environ, "DEFLECT_DATABASE_URL": database_url, "DEFLECT_KB_DIR": runtime.settings.kb_dir,
           "DEFLECT_CONFIG": "none"}  # fmt: skip
    proc = subprocess.run([str(exe), "aliases", "import", str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1 alias added, 0 already active, 0 skipped"
    deadline = time.monotonic() + 20
    while top()[0] != target and time.monotonic() < deadline:
        time.sleep(0.2)
    assert top()[0] == target
    listed = requests.get(f"{base}/api/aliases", headers={"Authorization": f"Bearer {runtime.settings.admin_token}"}, timeout=30)
    assert [(a["item_id"], a["source"]) for a in listed.json()["aliases"]] == [(target, "import")]


def test_cli_import_reports_skips_and_fails_when_nothing_imports(tmp_path, tiny_kb):
    exe = Path(sys.executable).parent / "deflect"
    env = {**os.environ, "DEFLECT_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}", "DEFLECT_CONFIG": "none"}
    bad = _write(tmp_path / "bad.jsonl", [{"text": "q", "article": "nope"}])
    proc = subprocess.run([str(exe), "aliases", "import", "--kb", str(tiny_kb), str(bad)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert f"skipped: {bad}:1: article: no article with id 'nope' in the KB" in proc.stderr
    assert f"Error: no line of {bad} could be imported" in proc.stderr
    proc = subprocess.run([str(exe), "aliases", "import", "--kb", str(tmp_path / "missing"), str(bad)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "no knowledge-base folder" in proc.stderr and "Traceback" not in proc.stderr
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"text": "caf\u00e9", "article": "billing/refunds"}\n'.encode("latin-1"))
    proc = subprocess.run([str(exe), "aliases", "import", "--kb", str(tiny_kb), str(latin)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and f"{latin}: not UTF-8" in proc.stderr and "Traceback" not in proc.stderr
    empty = _write(tmp_path / "empty.jsonl", [""])
    proc = subprocess.run([str(exe), "aliases", "import", "--kb", str(tiny_kb), str(empty)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and f"no line of {empty} could be imported" in proc.stderr
    half = _write(tmp_path / "half.jsonl", [{"text": "where is my refund", "article": "billing/refunds"},
                                            {"text": "q", "article": "nope"}])  # fmt: skip
    proc = subprocess.run([str(exe), "aliases", "import", "--kb", str(tiny_kb), str(half)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout  # one good line in, one bad: a script must hear of it
    assert proc.stdout.strip() == "1 alias added, 0 already active, 1 skipped"
    assert f"Error: 1 line of {half} skipped (named above); the rest was imported" in proc.stderr


def test_a_renamed_article_file_says_which_learned_aliases_it_strands(tmp_path, tiny_kb, settings_factory, caplog):
    """A renamed file is a new article id; what people taught deflect for the old one stops counting.
    The server's reindex and `deflect index` say so, naming the old id, instead of nothing."""
    import logging

    from deflect.runtime import Runtime

    settings = settings_factory(kb_dir=str(tiny_kb))
    runtime = Runtime(settings, sync=False)
    try:
        answers = _write(tmp_path / "answers.jsonl", [{"text": "my card was charged twice", "article": "billing/refunds"},
                                                      {"text": "where is my money back", "article": "billing/refunds"}])  # fmt: skip
        assert aliases.import_aliases(runtime.db, answers, ARTICLES, max_query_chars=500)[0] == 2
        runtime.refresh_aliases(recalibrate=False)
        (tiny_kb / "billing" / "refunds.md").rename(tiny_kb / "billing" / "Refund policy.md")
        with caplog.at_level(logging.WARNING, logger="deflect.runtime"):
            runtime.reindex()
        said = [r.getMessage() for r in caplog.records if "learned alias" in r.getMessage()]
        assert len(said) == 1 and "2 learned aliases now point at articles not in the KB: 'billing/refunds' (2)" in said[0]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="deflect.runtime"):
            (tiny_kb / "integrations" / "slack.md").write_text("# Slack\n\nConnect Slack from Settings.\n")
            runtime.reindex()  # another change: the stranded aliases were said once, at the rename
        assert not [r for r in caplog.records if "learned alias" in r.getMessage()]
    finally:
        runtime.close()
        runtime.db.dispose()

    env = {**os.environ, "DEFLECT_CONFIG": "none", "DEFLECT_KB_DIR": str(tiny_kb), "DEFLECT_INDEX_DIR": settings.index_dir,
           "DEFLECT_DATABASE_URL": settings.database_url, "HF_HUB_OFFLINE": "1"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "deflect.cli", "index"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "warning: 2 learned aliases now point at articles not in the KB: 'billing/refunds' (2)" in proc.stderr
    assert "id:" in proc.stderr and "deflect aliases list --all" in proc.stderr
