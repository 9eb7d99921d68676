"""One alias per wording: queries that differ only by case, spacing or punctuation are one learned
alias of an item, a second one a confirmation of the first (wording.alias_key), and migration 0009
merges the duplicates stored before. On a SQLite file and PostgreSQL; over HTTP with the real model.
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import requests
import sqlalchemy as sa
from click.testing import CliRunner
from test_events import ADMIN, ODD_QUERY, suggest
from test_review_aliases import make_candidate

from deflect import aliases, db, review
from deflect.cli import main
from deflect.events import record_search
from deflect.ideas import create_idea
from deflect.wording import alias_key

EXPORT = ["How do I export my data?", "how do I export my data", "HOW do I  export my data ?!", "how do i export my data."]


def _migration():
    path = Path(db.__file__).with_name("migrations") / "versions" / "0009_alias_keys.py"
    spec = importlib.util.spec_from_file_location("migration_0009", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_alias_key_ignores_case_spacing_and_punctuation_and_the_migration_computes_the_same():
    assert {alias_key(q) for q in EXPORT} == {"how do i export my data"}
    assert alias_key("Ｅｘｐｏｒｔ　ｍｙ　ｄａｔａ？") == "export my data"  # full-width forms
    assert alias_key("e-mail / sms alerts") == "e mail sms alerts"
    assert alias_key("C++ or C#?") == "c++ or c#"  # symbols and # carry meaning
    assert alias_key("???") == "???" and alias_key("!!!") == "!!!"
    frozen = _migration()
    for text in EXPORT + ["Ｅｘｐｏｒｔ？", "e-mail / sms alerts", "C++ or C#?", "???", "x" * 1200 + "?", "¿Cómo exporto?"]:
        assert frozen.alias_key(text) == alias_key(text), text


def confirm(store, text: str, session: str, policy: aliases.AliasPolicy, item_id: str = "data/export") -> dict:
    search_id = record_search(store, text, session, None, False, [], "v1")
    with db.writing(store) as conn:
        return aliases.confirm(conn, {"id": search_id, "query": text}, "article", item_id, session, policy, None, "m")


def test_a_wording_of_an_alias_confirms_it_instead_of_adding_another(store):
    policy = aliases.AliasPolicy(min_confirmations=2)
    first = confirm(store, EXPORT[0], "s1", policy)
    assert first["status"] == "confirmed"
    assert confirm(store, EXPORT[1], "s1", policy) == {"status": "already_confirmed", "alias_id": first["alias_id"]}
    assert confirm(store, EXPORT[2], "s2", policy) == {"status": "learned", "alias_id": first["alias_id"]}
    assert confirm(store, EXPORT[3], "s3", policy) == {"status": "confirmed", "alias_id": first["alias_id"]}
    [row] = aliases.list_aliases(store)
    assert (row["query"], row["confirmations"], row["active"]) == (EXPORT[0], 3, True)  # the first wording stays
    assert confirm(store, EXPORT[1], "s4", policy, item_id="other")["alias_id"] != first["alias_id"]  # per item


def test_a_wording_already_confirmed_does_not_use_up_the_hourly_limit(store):
    policy = aliases.AliasPolicy(min_confirmations=1, per_session_hour=2)
    statuses = [confirm(store, text, "s1", policy)["status"]
                for text in (EXPORT[0], EXPORT[1], "cancel my plan", "reset my password")]
    assert statuses == ["learned", "already_confirmed", "learned", "rate_limited"]
    assert sorted(r["query"] for r in aliases.list_aliases(store)) == [EXPORT[0], "cancel my plan"]


def test_review_and_import_aliases_are_one_per_wording_too(store, tmp_path):
    with db.writing(store) as conn:
        create_idea(conn, {"id": "dark-mode", "title": "Dark mode"})
    make_candidate(store, "c-dark", ["Is there a dark mode?", "is there a dark mode", "dark mode!!", "black theme"])
    assert review.merge(store, "c-dark", "dark-mode")["aliases_added"] == 3  # two wordings of one question: one alias
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text('{"text": "IS THERE A DARK MODE", "idea": "dark-mode"}\n{"text": "Black theme?", "idea": "dark-mode"}\n')
    assert aliases.import_aliases(store, feedback, set(), 500) == (0, 2, [])
    assert sorted(alias_key(r["query"]) for r in aliases.list_aliases(store)) == ["black theme", "dark mode", "is there a dark mode"]


def _insert(conn, item_id: str, query: str, confirmations: int, active: bool, sessions: list[tuple[str, str | None]]) -> int:
    now = time.time()
    alias_id = conn.execute(db.aliases.insert().values(
        item_type="article", item_id=item_id, query=query, query_key=re.sub(r"\s+", " ", query).strip().casefold(),
        confirmations=confirmations, active=active, source="feedback", created_at=now, updated_at=now,
    )).inserted_primary_key[0]
    for n, (session, client) in enumerate(sessions):
        conn.execute(db.alias_confirmations.insert().values(
            alias_id=alias_id, search_id=f"{alias_id}-{n}", session=session, client=client, created_at=now))
    return alias_id


def test_migration_0009_merges_the_wordings_stored_before(database_url):
    from alembic import command
    from alembic.config import Config

    engine = db.make_engine(database_url)
    db.upgrade(engine, "0008")
    with db.writing(engine) as conn:
        pending = _insert(conn, "billing/refunds", "money back", 1, False, [("s2", "10.0.0.2")])
        learned = _insert(conn, "billing/refunds", "Money back?", 1, True, [("s1", "10.0.0.1")])
        _insert(conn, "billing/refunds", "MONEY  BACK!!", 1, False, [("s1-renamed", "10.0.0.1")])  # the same address
        elsewhere = _insert(conn, "account/close", "Money back?", 1, True, [("s3", None)])
        plain = _insert(conn, "billing/refunds", "Refund?", 2, False, [("s4", None), ("s5", None)])
    generation = aliases.generation(engine)
    db.upgrade(engine)
    rows = {(r["item_id"], r["id"]): r for r in aliases.list_aliases(engine)}
    assert set(rows) == {("billing/refunds", learned), ("account/close", elsewhere), ("billing/refunds", plain)}
    kept = rows[("billing/refunds", learned)]  # the active one, with the others' confirmations: two people
    assert (kept["query"], kept["active"], kept["confirmations"]) == ("Money back?", True, 2)
    with engine.connect() as conn:
        keys = dict(conn.execute(sa.select(db.aliases.c.id, db.aliases.c.query_key)).all())
        moved = conn.execute(sa.select(sa.func.count()).select_from(db.alias_confirmations)
                             .where(db.alias_confirmations.c.alias_id == learned)).scalar_one()
    assert keys == {learned: "money back", elsewhere: "money back", plain: "refund"} and moved == 3
    assert aliases.generation(engine) == generation + 1  # running servers drop the merged rows
    assert pending not in keys
    # From now on a wording of it confirms it; a person who confirmed another wording is counted once.
    policy = aliases.AliasPolicy(min_confirmations=2)
    with db.writing(engine) as conn:
        search = {"id": "new-search", "query": "money back."}
        assert aliases.confirm(conn, search, "article", "billing/refunds", "s2", policy, None, "m")["status"] == "already_confirmed"
        assert aliases.confirm(conn, search, "article", "billing/refunds", "s9", policy, None, "m") == {
            "status": "confirmed", "alias_id": learned}
        search = {"id": "newer-search", "query": "REFUND"}
        assert aliases.confirm(conn, search, "article", "billing/refunds", "s9", policy, None, "m")["alias_id"] == plain
    # Down to 0008: the keys are what its code computes again (the merged rows stay merged); up again.
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).with_name("migrations")))
    with db.writing(engine) as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0008")
    with engine.connect() as conn:
        assert dict(conn.execute(sa.select(db.aliases.c.id, db.aliases.c.query_key)).all()) == {
            learned: "money back?", elsewhere: "money back?", plain: "refund?"}
    db.upgrade(engine)
    assert db.current_revision(engine) == "0010"
    engine.dispose()


def test_wordings_of_one_question_over_http_are_one_alias(served, clean_env, tmp_path):
    base, runtime = served(min_confirmations=2, trusted_proxies="127.0.0.1")
    wordings = [ODD_QUERY[0].upper() + ODD_QUERY[1:] + "?", ODD_QUERY, f"  {ODD_QUERY.upper()} !!"]

    def helpful(text, session, address):
        shown = suggest(base, text, session=session, types=["article"])
        body = {"search_id": shown["search_id"], "type": "helpful", "item_id": "billing/refunds"}
        r = requests.post(f"{base}/api/events", json=body, headers={"X-Forwarded-For": address}, timeout=30)
        assert r.status_code == 202, r.text
        return r.json()["alias"]["status"]

    assert helpful(wordings[0], "first", "198.51.100.1") == "confirmed"
    assert helpful(wordings[1], "first", "198.51.100.2") == "already_confirmed"  # the same person, another wording
    assert helpful(wordings[1], "second", "198.51.100.3") == "learned"
    assert helpful(wordings[2], "third", "198.51.100.4") == "confirmed"
    [alias] = requests.get(f"{base}/api/aliases", headers=ADMIN, timeout=30).json()["aliases"]
    assert (alias["query"], alias["confirmations"], alias["active"]) == (wordings[0], 3, True)
    assert runtime.engine.alias_count == 1
    assert suggest(base, ODD_QUERY, types=["article"])["results"][0]["id"] == "billing/refunds"
    listed = CliRunner().invoke(main, ["aliases", "list", "--all", "--database-url", str(runtime.db.url.render_as_string(
        hide_password=False))], catch_exceptions=False)
    assert listed.exit_code == 0 and listed.stdout.count("billing/refunds") == 1, listed.stdout
    assert requests.delete(f"{base}/api/aliases/{alias['id']}", headers=ADMIN, timeout=30).status_code == 200
    assert requests.get(f"{base}/api/aliases", headers=ADMIN, timeout=30).json()["aliases"] == []
