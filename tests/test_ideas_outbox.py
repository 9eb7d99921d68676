"""The outbox: webhook delivery with retries, backoff and failure; an article that answers a
candidate notifies its requesters; the CLI over the same store."""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import ADMIN_TOKEN, DATA, TINY_KB, read_jsonl, write_kb
from test_ideas_api import Receiver

from deflect import db, outbox
from deflect.settings import Settings

GANTT_ARTICLE = """---
title: Gantt charts
---
# Gantt charts

See your project as a Gantt chart: open a project and switch the view to **Gantt** to see
every task on a timeline, with its dependencies drawn as arrows.

- Can I see my project as a gantt chart?
- Is there a gantt view for timelines?
- Show my tasks on a gantt timeline
- Do you support gantt charts?
"""


@pytest.fixture
def store(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'o.db'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()


def _queue(engine, n: int) -> None:
    with db.writing(engine) as conn:
        for i in range(n):
            outbox.enqueue(conn, "idea_shipped", "idea:x", {"email": f"u{i}@example.com", "mrr": 5.0}, {"idea": {"id": "x"}})


def _rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(outbox.outbox).order_by(outbox.outbox.c.id))]


def test_delivery_retries_with_backoff_then_succeeds(store):
    receiver = Receiver(fail_first=1)
    try:
        settings = Settings(webhook_url=receiver.url, webhook_backoff_seconds=30.0, webhook_secret="k")
        _queue(store, 2)
        first = outbox.deliver_due(store, settings)
        assert first == {"delivered": 1, "retrying": 1, "failed": 0}
        failed, ok = _rows(store)
        assert failed["status"] == "pending" and failed["attempts"] == 1 and failed["last_error"] == "HTTP 500"
        assert failed["next_attempt_at"] >= failed["created_at"] + 29  # backoff: not due again yet
        assert ok["status"] == "delivered" and ok["last_status_code"] == 200
        assert outbox.deliver_due(store, settings) == {"delivered": 0, "retrying": 0, "failed": 0}
        later = outbox.deliver_due(store, settings, now=failed["next_attempt_at"] + 1)
        assert later["delivered"] == 1
        assert [r["status"] for r in _rows(store)] == ["delivered", "delivered"]
        # Each notification was received once, signed over the exact body.
        assert len(receiver.received) == 2
        for got in receiver.received:
            body = json.dumps(got["body"], ensure_ascii=False).encode()
            assert got["headers"]["X-Deflect-Signature"] == outbox.sign(body, "k")
        # The same notification is never queued twice.
        _queue(store, 2)
        assert len(_rows(store)) == 2
    finally:
        receiver.close()


def test_unreachable_webhook_fails_after_max_attempts_and_admin_can_retry(store, tmp_path, caplog):
    receiver = Receiver(fail_first=0)
    dead_url = receiver.url
    receiver.close()  # nothing listens there any more
    settings = Settings(webhook_url=dead_url, webhook_backoff_seconds=0.0, webhook_max_attempts=3, webhook_timeout_seconds=2)
    _queue(store, 1)
    with caplog.at_level(logging.INFO, logger="deflect.outbox"):
        results = [outbox.deliver_due(store, settings) for _ in range(3)]
    assert [r["failed"] for r in results] == [0, 0, 1]
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "deflect.outbox"]
    assert [level for level, _ in said] == ["WARNING", "INFO", "WARNING"]  # the first failure is heard at once
    assert "attempt 1 of 3 failed" in said[0][1] and "Error" in said[0][1]
    assert "failed for good after 3 attempts" in said[2][1]
    (row,) = _rows(store)
    assert row["status"] == "failed" and row["attempts"] == 3 and "Error" in row["last_error"]
    assert outbox.list_outbox(store)["counts"] == {"pending": 0, "delivered": 0, "failed": 1}
    again = outbox.retry(store, row["id"])
    assert again["status"] == "pending" and again["attempts"] == 0
    assert outbox.retry(store, 999) is None
    assert outbox.backoff_seconds(1, 5) == 5 and outbox.backoff_seconds(3, 5) == 20 and outbox.backoff_seconds(30, 5) == 3600


def _ask_with_tickets(runtime) -> list[tuple[str, dict]]:
    """Every clustering question asked once, each followed by a ticket from its own requester;
    returns the gantt ones' (question, requester)."""
    from deflect.events import insert_event

    gantt = []
    for i, q in enumerate(read_jsonl(DATA / "cluster_questions.jsonl")):
        answer = runtime.suggest(q["text"], session=f"s{i}")
        runtime.search_log.flush()
        requester = {"customer_id": f"c{i}", "email": f"c{i}@example.com", "mrr": 1.0}
        with db.writing(runtime.db) as conn:
            insert_event(conn, {"id": answer["search_id"], "session": f"s{i}"}, "ticket_created", None, None, requester)
        if q["label"] == "gantt":
            gantt.append((q["text"], requester))
    return gantt


@pytest.fixture
def tiny_board(tmp_path, settings_factory):
    """(kb folder, runtime, board) on the tiny KB, closed after the test."""
    from deflect.board import Board
    from deflect.runtime import Runtime

    kb = write_kb(tmp_path / "kb", TINY_KB)
    runtime = Runtime(settings_factory(), sync=False)
    try:
        yield kb, runtime, Board(runtime)
    finally:
        runtime.close()
        runtime.db.dispose()


def test_publishing_an_answering_article_notifies_the_candidates_requesters(tiny_board):
    kb, runtime, board = tiny_board
    people = [requester for _, requester in _ask_with_tickets(runtime)]
    board.rebuild()
    gantt = next(c for c in board.candidates() if "gantt" in c["keywords"])
    assert board.check_answered() == 0  # nothing new was published

    write_kb(kb, {"views/gantt.md": GANTT_ARTICLE})
    runtime.reindex()
    queued = board.check_answered()
    rows = [r for r in _rows(runtime.db) if r["kind"] == "article_published"]
    assert queued == len(rows) == len(people)
    assert {r["email"] for r in rows} == {p["email"] for p in people}
    # What a mailer needs to write the message: the article by title and address; not the candidate's
    # label (one customer's own question, and this goes to the others).
    for row in rows:
        payload = json.loads(row["payload"])
        assert payload["article"] == {"id": "views/gantt", "title": "Gantt charts", "url": "/articles/views/gantt"}
        assert payload["candidate"] == {"id": gantt["id"]}
    assert board.candidate(gantt["id"])["answered_by"] == "views/gantt"
    assert board.check_answered() == 0  # once per candidate and article
    gap = next(g for g in board.metrics(None, None)["content_gaps"] if g.get("candidate_id") == gantt["id"])
    assert gap["answered_by"] == "views/gantt"  # still a gap of the period, but someone has written the article


def test_an_article_that_was_there_when_they_asked_is_no_news_until_it_is_edited(tmp_path, settings_factory):
    """People who filed a ticket although the gantt article was there (it did not help them) are not
    told it "now answers" them after some other change to the KB; an edit to it is news."""
    from deflect.board import Board
    from deflect.runtime import Runtime

    kb = write_kb(tmp_path / "kb", TINY_KB | {"views/gantt.md": GANTT_ARTICLE})
    runtime = Runtime(settings_factory(), sync=False)
    try:
        board = Board(runtime)
        people = [requester for _, requester in _ask_with_tickets(runtime)]
        board.rebuild()
        assert any("gantt" in c["keywords"] for c in board.candidates())
        write_kb(kb, {"billing/vat.md": VAT_ARTICLE})  # a new article: news for the VAT askers only
        runtime.reindex()
        board.check_answered()
        rows = [r for r in _rows(runtime.db) if r["kind"] == "article_published"]
        assert rows and {json.loads(r["payload"])["article"]["id"] for r in rows} == {"billing/vat"}
        write_kb(kb, {"views/gantt.md": GANTT_ARTICLE + "\nGantt charts are on every plan.\n"})
        runtime.reindex()
        assert board.check_answered() == len(people)
        told = [r for r in _rows(runtime.db) if r["kind"] == "article_published" and r not in rows]
        assert {json.loads(r["payload"])["article"]["id"] for r in told} == {"views/gantt"}
        assert {r["email"] for r in told} == {p["email"] for p in people}
    finally:
        runtime.close()
        runtime.db.dispose()


def test_an_index_built_afresh_with_the_article_still_tells_those_it_was_never_shown(tiny_board):
    """An index folder built from nothing (at image build time, say) knows no file's history: an
    article the askers' searches did not show them is news to them."""
    import shutil

    import deflect.index_folder

    kb, runtime, board = tiny_board
    people = [requester for _, requester in _ask_with_tickets(runtime)]
    board.rebuild()
    write_kb(kb, {"views/gantt.md": GANTT_ARTICLE})
    shutil.rmtree(runtime.settings.index_dir)  # a new release's image: its index built from scratch
    deflect.index_folder._LIVE.clear()
    runtime.reindex()
    assert set(runtime.engine.index.manifest["changed_at"].values()) == {None}
    assert board.check_answered() == len(people)


def test_no_article_notice_while_the_promoted_idea_still_comes_first(tiny_board):
    """The notice says an article now answers them: not while the help form still shows the idea
    promoted from their questions first (its review aliases are their very words)."""
    kb, runtime, board = tiny_board
    gantt_questions = [question for question, _ in _ask_with_tickets(runtime)]
    board.rebuild()
    gantt = next(c for c in board.candidates() if "gantt" in c["keywords"])
    idea_id = board.promote(gantt["id"], title="Gantt charts")["idea"]["id"]
    write_kb(kb, {"views/gantt.md": GANTT_ARTICLE})
    runtime.reindex()
    tops = [runtime.suggest(q, record=False)["results"][0] for q in gantt_questions]
    assert sum(t["type"] == "idea" and t["id"] == idea_id for t in tops) * 2 > len(tops)  # precondition
    assert board.check_answered() == 0
    assert not [r for r in _rows(runtime.db) if r["kind"] == "article_published"]


OFFLINE_ARTICLE = """---
title: Working offline
---
# Working offline

The mobile and desktop apps work offline: without an internet connection or signal, for
example on a plane, you can still open and edit your tasks. Your edits sync as soon as you
are back online.

- Does the app work offline?
- Can I use it without an internet connection?
- Offline mode on my phone
"""


VAT_ARTICLE = """---
title: Your VAT number on invoices
---
# Your VAT number on invoices

Add your company's VAT number (tax ID) in Billing settings and it is printed on every
invoice from then on, including the EU VAT registration number.

- How do I add our VAT number to invoices?
- Can the tax ID be printed on the bills?
- Invoices are missing our VAT ID
"""


def test_a_delivered_notification_is_not_retried(store):
    _queue(store, 1)
    (row,) = _rows(store)
    with db.writing(store) as conn:
        conn.execute(outbox.outbox.update().values(status="delivered"))
    with pytest.raises(outbox.OutboxConflict, match=f"notification {row['id']} was delivered already"):
        outbox.retry(store, row["id"])
    assert _rows(store)[0]["status"] == "delivered" and _rows(store)[0]["attempts"] == 0


def test_index_changes_fill_the_outbox_without_a_webhook_and_cron_delivers(tmp_path, settings_factory, database_url,
                                                                             clean_env):
    """No webhook_url: a reindex (API), a version another process built, and a saved file (KB watcher)
    each queue article_published for the requesters of the candidates the new article answers,
    without anyone reading the candidates; `deflect outbox deliver` from cron sends them."""
    import time

    import requests
    from conftest import ADMIN_TOKEN, serve_app

    from deflect.cli import main
    from deflect.runtime import Runtime
    from deflect.web import create_app

    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    kb = write_kb(tmp_path / "kb", TINY_KB)
    settings = settings_factory(database_url=database_url)
    assert not settings.webhook_url
    runtime = Runtime(settings)
    app = create_app(settings, runtime)
    receiver = Receiver(fail_first=0)
    try:
        with serve_app(app) as base:
            people = {}
            for i, q in enumerate(read_jsonl(DATA / "cluster_questions.jsonl")):
                search_id = requests.post(f"{base}/api/suggest", json={"query": q["text"], "session": f"s{i}"},
                                          timeout=60).json()["search_id"]
                requester = {"email": f"asker{i}@example.com"}
                assert requests.post(f"{base}/api/events", json={"search_id": search_id, "type": "ticket_created",
                                                                 "requester": requester}, timeout=60).status_code == 202
                people.setdefault(q["label"], set()).add(requester["email"])
            rebuilt = requests.post(f"{base}/api/clusters/rebuild", headers=auth, timeout=60).json()
            assert rebuilt["candidates"] == 4 and rebuilt["notifications"] == 0

            def published(article: str, expected: int) -> set[str]:
                deadline = time.time() + 60
                while True:
                    found = requests.get(f"{base}/api/outbox", headers=auth, timeout=60).json()
                    emails = {n["email"] for n in found["notifications"]
                              if n["kind"] == "article_published" and n["payload"]["article"]["id"] == article}
                    if len(emails) >= expected or time.time() > deadline:
                        return emails
                    time.sleep(0.2)

            # 1. An admin reindexes through the API.
            write_kb(kb, {"views/gantt.md": GANTT_ARTICLE})
            assert requests.post(f"{base}/api/reindex", headers=auth, timeout=120).status_code == 200
            assert published("views/gantt", len(people["gantt"])) == people["gantt"]

            # 2. Another process (`deflect index`, another replica) builds a version; this server follows it.
            write_kb(kb, {"billing/vat.md": VAT_ARTICLE})
            other = Runtime(settings, sync=False)  # builds and publishes the new version as it starts
            other.close()
            other.db.dispose()
            assert published("billing/vat", len(people["invoice_vat"])) == people["invoice_vat"]

            # 3. A writer saves a file; the KB watcher reindexes.
            runtime.watch_kb()
            write_kb(kb, {"mobile/offline.md": OFFLINE_ARTICLE})
            assert published("mobile/offline", len(people["offline"])) == people["offline"]

            state = requests.get(f"{base}/api/outbox", headers=auth, timeout=60).json()
            assert state["webhook_configured"] is False
            everyone = people["gantt"] | people["offline"] | people["invoice_vat"]
            assert state["counts"]["pending"] == len(everyone)

        # 4. Cron delivers what waits in the outbox.
        clean_env.setenv("DEFLECT_WEBHOOK_URL", receiver.url)
        delivered = CliRunner().invoke(main, ["outbox", "deliver", "--database-url", database_url], catch_exceptions=False)
        assert delivered.exit_code == 0 and f"{len(everyone)} delivered" in delivered.stdout
        assert {g["body"]["requester"]["email"] for g in receiver.wait_for(len(everyone))} == everyone
    finally:
        receiver.close()
        app.extensions["deflect_board"].close()
        runtime.close()
        runtime.db.dispose()


def test_cli_rebuild_list_show(tmp_path, clean_env):
    from deflect.cli import main
    from deflect.events import record_search

    write_kb(tmp_path / "kb", TINY_KB)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    for q in read_jsonl(DATA / "cluster_questions.jsonl"):
        record_search(engine, q["text"], None, None, False, [], "v0")
    engine.dispose()
    paths = ["--kb", str(tmp_path / "kb"), "--index-dir", str(tmp_path / "index"), "--database-url", url]
    runner = CliRunner()
    rebuilt = runner.invoke(main, ["clusters", "rebuild", *paths], catch_exceptions=False)
    assert rebuilt.exit_code == 0 and "4 candidates from 27 unanswered searches: 4 new" in rebuilt.stdout
    listed = runner.invoke(main, ["clusters", "list", "--json", *paths], catch_exceptions=False)
    found = json.loads(listed.stdout)
    assert len(found) == 4
    plain = runner.invoke(main, ["clusters", "list", *paths], catch_exceptions=False).stdout
    assert all(c["id"] in plain and c["label"] in plain for c in found)
    # `deflect clusters [rebuild|list]` (DESIGN 4): alone, it lists (settings from the environment)
    env = {"DEFLECT_KB_DIR": str(tmp_path / "kb"), "DEFLECT_INDEX_DIR": str(tmp_path / "index"), "DEFLECT_DATABASE_URL": url}
    assert runner.invoke(main, ["clusters"], env=env, catch_exceptions=False).stdout == plain
    shown = runner.invoke(main, ["clusters", "show", found[0]["id"], *paths], catch_exceptions=False)
    assert shown.exit_code == 0 and all(q["text"] in shown.stdout for q in found[0]["queries"])
    missing = runner.invoke(main, ["clusters", "show", "c-nope", *paths])
    assert missing.exit_code == 1 and "no candidate" in missing.output
    stranger = runner.invoke(main, ["clusters", "promote", found[0]["id"], "--title", "X", "--exclude", "not-a-member", *paths])
    assert stranger.exit_code == 1 and "exclude" in stranger.output
    left_out = found[0]["queries"][0]
    promoted = runner.invoke(main, ["clusters", "promote", found[0]["id"], "--title", "From the CLI",
                                    "--exclude", left_out["search_id"], *paths])  # fmt: skip
    assert promoted.exit_code == 0 and "-> idea from-the-cli" in promoted.stdout
    kept = {q["text"].casefold() for q in found[0]["queries"]} - {left_out["text"].casefold()}
    assert f"({len(kept)} of its questions now aliases of the idea)" in promoted.stdout
    taught = runner.invoke(main, ["aliases", "list", "--database-url", url], catch_exceptions=False).stdout
    assert taught.count("idea:from-the-cli") == len(kept)
    assert all(q["text"] in taught for q in found[0]["queries"] if q["text"].casefold() in kept)
    again = runner.invoke(main, ["clusters", "promote", found[0]["id"], "--title", "Again", *paths])
    assert again.exit_code == 1 and "promoted" in again.output
    untitled = runner.invoke(main, ["clusters", "promote", found[1]["id"], *paths])
    assert untitled.exit_code == 2 and "--title" in untitled.output  # the team writes it, never the label
    shown = runner.invoke(main, ["clusters", "show", found[0]["id"], *paths], catch_exceptions=False).stdout
    assert f"({left_out['search_id']})  [left out]" in shown and shown.count("[left out]") == 1

    # Who asked for the idea, for the product team: plain, CSV (highest MRR first) and JSON.
    from deflect.votes import vote

    engine = db.make_engine(url)
    with db.writing(engine) as conn:
        vote(conn, "from-the-cli", {"email": "small@example.com", "mrr": 9.5})
        vote(conn, "from-the-cli", {"customer_id": "acme", "email": "it@acme.example", "mrr": 1200.0})
        vote(conn, "from-the-cli", {"customer_id": "=HYPERLINK(\"https://evil.example\")"})  # from the public API
    engine.dispose()
    people = ["ideas", "requesters", "from-the-cli", "--database-url", url]
    as_csv = runner.invoke(main, [*people, "--csv"], catch_exceptions=False).stdout
    assert as_csv.splitlines() == ["idea_id,idea_title,customer_id,email,mrr", "from-the-cli,From the CLI,acme,it@acme.example,1200",
                                   "from-the-cli,From the CLI,,small@example.com,9.5",
                                   "from-the-cli,From the CLI,\"'=HYPERLINK(\"\"https://evil.example\"\")\",,"]  # no formula runs
    plain = runner.invoke(main, people, catch_exceptions=False).stdout
    assert plain.startswith("from-the-cli [open]: 3 requesters, MRR 1209.5") and "acme (it@acme.example) MRR 1200" in plain
    assert json.loads(runner.invoke(main, [*people, "--json"]).stdout)["requesters"][0]["customer_id"] == "acme"
    # Every idea's requesters in one sheet; a merged idea's are on its target, and it says so.
    every = runner.invoke(main, ["ideas", "requesters", "--csv", "--database-url", url], catch_exceptions=False).stdout
    assert every.splitlines()[1:] == as_csv.splitlines()[1:]  # the only idea with requesters
    engine = db.make_engine(url)
    from deflect.ideas import create_idea, update_idea

    with db.writing(engine) as conn:
        create_idea(conn, {"id": "old-cli", "title": "Older CLI idea"})
        update_idea(conn, "from-the-cli", {"status": "merged", "merged_into": "old-cli"})
    engine.dispose()
    merged = runner.invoke(main, [*people, "--csv"])
    assert merged.exit_code == 0 and "from-the-cli was merged into old-cli: its requesters are listed there" in merged.stderr
    assert merged.stdout.splitlines()[1].startswith("old-cli,Older CLI idea,acme,it@acme.example,1200")
    # The board for a roadmap sheet.
    sheet = runner.invoke(main, ["ideas", "export", "--format", "csv", "--database-url", url], catch_exceptions=False).stdout
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(sheet))}
    assert list(rows["old-cli"])[:8] == ["id", "title", "status", "merged_into", "votes", "requesters", "mrr", "questions"]
    assert (rows["old-cli"]["requesters"], rows["old-cli"]["mrr"], rows["from-the-cli"]["status"]) == ("3", "1209.5", "merged")
    # Like its votes, the merged idea's questions count where it was merged.
    assert (int(rows["old-cli"]["questions"]), int(rows["from-the-cli"]["questions"])) == (len(kept), 0)
    assert rows["old-cli"]["url"] == "/ideas#idea-old-cli"
    only = runner.invoke(main, ["ideas", "export", "--status", "merged", "--database-url", url]).stdout
    assert [json.loads(line)["id"] for line in only.splitlines()] == ["from-the-cli"]
    unknown = runner.invoke(main, ["ideas", "requesters", "nope", "--database-url", url])
    assert unknown.exit_code == 1 and "no idea with id 'nope'" in unknown.output
    state = runner.invoke(main, ["outbox", "list", "--database-url", url], catch_exceptions=False)
    assert state.stdout.startswith("pending 0, delivered 0, failed 0")
    for command in (["clusters", "--help"], ["clusters", "merge", "--help"], ["outbox", "deliver", "--help"],
                    ["ideas", "requesters", "--help"], ["ideas", "export", "--help"]):
        assert runner.invoke(main, command).exit_code == 0


def test_closing_the_runtime_stops_the_boards_background_work(settings_factory, tiny_kb):
    """`deflect serve` closes only the runtime: the board's index-change checker and the webhook
    worker must stop with it, not run on a closed store."""
    from deflect.runtime import Runtime
    from deflect.web import create_app

    runtime = Runtime(settings_factory(kb_dir=str(tiny_kb), webhook_url="http://127.0.0.1:9/hook"))
    app = create_app(runtime.settings, runtime)
    threads = [app.extensions["deflect_board"]._checker, app.extensions["deflect_outbox"]._thread]
    assert all(t is not None and t.is_alive() for t in threads)
    runtime.close()
    assert not any(t.is_alive() for t in threads), [t.name for t in threads if t.is_alive()]


def test_the_dashboard_shows_a_gap_an_article_has_answered_since(tiny_board, browser):
    """A writer checks on /admin whether the new article worked: the gap says which article answers it;
    an article removed since is marked, not linked to a 404."""
    from conftest import ADMIN_TOKEN, serve_app

    from deflect.web import create_app

    kb, runtime, board = tiny_board
    _ask_with_tickets(runtime)
    board.rebuild()
    gantt = next(c for c in board.candidates() if "gantt" in c["keywords"])
    # An article people opened, removed since: its figures stay, under an id no page has.
    opened = runtime.suggest("connect slack to get notifications", session="s-slack")
    runtime.record_event(opened["search_id"], "click", item_id="integrations/slack", item_type="article")
    (kb / "integrations" / "slack.md").unlink()
    write_kb(kb, {"views/gantt.md": GANTT_ARTICLE})
    runtime.reindex()
    board.check_answered()
    context = browser.new_context()
    try:
        with serve_app(create_app(runtime.settings, runtime)) as base:
            page = context.new_page()
            page.goto(base + "/admin")
            page.fill("[data-deflect-token]", ADMIN_TOKEN)
            page.get_by_role("button", name="Sign in").click()
            closed = page.locator("[data-answered-by='views/gantt']")
            closed.wait_for(timeout=60_000)
            assert "Answered since by" in closed.inner_text()
            link = closed.get_by_role("link")
            assert link.get_attribute("href") == "/articles/views/gantt" and link.inner_text().strip()
            assert page.locator("[data-answered-by]").count() == 1, gantt["id"]  # the other gaps are still open
            gone = page.locator("[data-top-articles] [data-article-gone]")
            assert gone.inner_text().split() == ["integrations/slack", "not", "in", "the", "KB"]
            assert gone.locator("a").count() == 0  # no link to a page that is not there
    finally:
        context.close()


def test_a_mailer_of_your_own_polls_the_outbox_and_marks_what_it_sent(served):
    """Without a webhook: read pending notifications page by page (oldest first, after the last id
    seen), send them yourself, mark each delivered; deflect then never sends them."""
    base, runtime = served(admin_token=ADMIN_TOKEN)
    _queue(runtime.db, 5)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def page(**params) -> requests.Response:
        return requests.get(f"{base}/api/outbox", params=params, headers=auth, timeout=60)

    sent, last = [], 0
    while True:
        found = page(status="pending", after_id=last, limit=2)
        assert found.status_code == 200, found.text
        batch = found.json()["notifications"]
        if not batch:
            break
        assert [n["id"] for n in batch] == sorted(n["id"] for n in batch) and batch[0]["id"] > last
        for n in batch:
            marked = requests.post(f"{base}/api/outbox/{n['id']}/delivered", headers=auth, json={}, timeout=60)
            assert marked.status_code == 200 and marked.json()["status"] == "delivered", marked.text
            sent.append(n["email"])
        last = batch[-1]["id"]
    assert sent == [f"u{i}@example.com" for i in range(5)]
    again = requests.post(f"{base}/api/outbox/{last}/delivered", headers=auth, timeout=60)
    assert again.status_code == 200 and again.json()["delivered_at"] == _rows(runtime.db)[-1]["delivered_at"]  # unchanged
    listed = page()
    assert listed.json()["counts"] == {"pending": 0, "delivered": 5, "failed": 0}
    assert [n["id"] for n in listed.json()["notifications"]] == sorted((r["id"] for r in _rows(runtime.db)), reverse=True)
    for params, field in (({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"after_id": "-1"}, "after_id"),
                          ({"after_id": "x"}, "after_id")):
        refused = page(**params)
        assert refused.status_code == 400 and refused.json()["error"]["field"] == field, params
    missing = requests.post(f"{base}/api/outbox/999999/delivered", headers=auth, timeout=60)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "id"
    assert requests.post(f"{base}/api/outbox/1/delivered", timeout=60).status_code == 401


def test_a_redirecting_webhook_is_a_failure_not_followed(store):
    """urllib would re-send the POST as a bodiless GET (signature included) wherever the receiver
    points; deflect records the 3xx instead."""
    followed = Receiver(fail_first=0)
    got_get = []

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(302)
            self.send_header("Location", followed.url)
            self.end_headers()

        def do_GET(self):  # noqa: N802
            got_get.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    redirecting = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=redirecting.serve_forever, daemon=True).start()
    try:
        settings = Settings(webhook_url=f"http://127.0.0.1:{redirecting.server_port}/hook", webhook_secret="k",
                            webhook_backoff_seconds=30.0)
        _queue(store, 1)
        assert outbox.deliver_due(store, settings) == {"delivered": 0, "retrying": 1, "failed": 0}
        (row,) = _rows(store)
        assert row["status"] == "pending" and row["last_error"] == "HTTP 302" and row["last_status_code"] == 302
        assert followed.received == [] and got_get == []
    finally:
        redirecting.shutdown()
        redirecting.server_close()
        followed.close()


def test_outbox_list_says_what_each_notification_is_about(tmp_path):
    """An admin reading `deflect outbox list` sees which idea or article each notification is about."""
    from deflect.cli import main

    url = f"sqlite:///{tmp_path / 'o.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    with db.writing(engine) as conn:
        outbox.enqueue(conn, "idea_shipped", "idea:dark-mode", {"email": "dana@example.com"},
                       {"idea": {"id": "dark-mode", "title": "Dark mode", "status": "shipped"}})
        outbox.enqueue(conn, "article_published", "article:views/gantt:candidate:c1", {"customer_id": "acct-9"},
                       {"article": {"id": "views/gantt"}, "candidate": {"id": "c1"}})  # as queued before titles
    listed = CliRunner().invoke(main, ["outbox", "list", "--database-url", url], catch_exceptions=False).stdout
    assert "idea_shipped (Dark mode) -> dana@example.com [pending, 0 attempts]" in listed
    assert "article_published (views/gantt) -> acct-9 [pending, 0 attempts]" in listed
