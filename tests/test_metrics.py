"""Metric definitions (DESIGN section 6) on hand-built searches and events, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
import time

import pytest
import sqlalchemy as sa

from deflect import db, metrics
from deflect.events import write_searches
from deflect.metrics import compute_metrics, superseded_ids

T0 = 1_790_000_000.0  # a fixed "now" in 2026, so the assumed window is under test control
_ids = itertools.count(1)


def add_search(engine, query, at, session=None, answered=True, shown=("a1", "a2")) -> str:
    search_id = f"{next(_ids):032x}"
    row = {
        "id": search_id,
        "query": query,
        "session": session,
        "locale": None,
        "created_at": T0 + at,
        "answered": answered,
        "top_score": 0.9,
        "index_version": "v",
    }
    results = [
        {"search_id": search_id, "rank": r, "item_type": "idea" if i.startswith("i") else "article", "item_id": i, "score": 0.5}
        for r, i in enumerate(shown, 1)
    ]
    write_searches(engine, [(row, results)])
    return search_id


def add_event(engine, search_id, event_type, at, item_id=None, item_type="article", **requester):
    with db.writing(engine) as conn:
        conn.execute(
            db.events.insert().values(
                search_id=search_id,
                type=event_type,
                item_type=item_type if item_id else None,
                item_id=item_id,
                created_at=T0 + at,
                **requester,
            )
        )


def test_superseded_needs_same_session_extension_within_30_seconds():
    rows = [
        {"id": "1", "query": "how", "session": "s", "created_at": 0},
        {"id": "2", "query": "How  do I", "session": "s", "created_at": 2},
        {"id": "3", "query": "how do i reset my password", "session": "s", "created_at": 4},
        {"id": "4", "query": "refund", "session": "t", "created_at": 0},
        {"id": "5", "query": "refund please", "session": "t", "created_at": 31},  # too late
        {"id": "6", "query": "cancel", "session": "u", "created_at": 0},
        {"id": "7", "query": "plan", "session": "u", "created_at": 1},  # not an extension
        {"id": "8", "query": "x", "session": None, "created_at": 0},
        {"id": "9", "query": "x y", "session": None, "created_at": 1},  # no session: never superseded
        {"id": "10", "query": "invoice", "session": "v", "created_at": 0},
        {"id": "11", "query": "invoice", "session": "w", "created_at": 1},  # other session
    ]
    assert superseded_ids(rows) == {"1", "2"}


def test_confirmed_assumed_tickets_and_superseded(store):
    # One question typed as you type: two superseded searches, one final with a helpful event.
    add_search(store, "reset", 0, session="s1")
    typing = add_search(store, "reset pass", 1, session="s1")
    helped = add_search(store, "reset password", 2, session="s1")
    add_event(store, typing, "click", 1.5, "a1")  # on a superseded search: counted in events only
    add_event(store, helped, "helpful", 5, "a1")
    # helpful, then a ticket anyway: not a confirmed deflection
    helped_then_ticket = add_search(store, "refund", 0, session="s2")
    add_event(store, helped_then_ticket, "helpful", 3, "a1")
    add_event(store, helped_then_ticket, "ticket_created", 30)
    # click, no verdict, no ticket: assumed
    assumed = add_search(store, "export csv", 0, session="s3")
    add_event(store, assumed, "click", 10, "a2")
    # click then ticket inside the window: not assumed
    clicked_then_ticket = add_search(store, "sso setup", 0, session="s4", answered=False)
    add_event(store, clicked_then_ticket, "click", 10, "a2")
    add_event(store, clicked_then_ticket, "ticket_created", 100)
    # click then ticket after the window: still an assumed deflection, and a ticket
    late_ticket = add_search(store, "api limits", 0, session="s5")
    add_event(store, late_ticket, "click", 10, "a1")
    add_event(store, late_ticket, "ticket_created", 10 + 1801)
    # click and not_helpful: neither
    not_helpful = add_search(store, "dark mode", 0, session="s6", answered=False)
    add_event(store, not_helpful, "click", 10, "a1")
    add_event(store, not_helpful, "not_helpful", 20, "a1")

    m = compute_metrics(store, assumed_window_seconds=1800, now=T0 + 5000)
    t = m["totals"]
    assert t["searches"] == 6
    assert t["all_searches"] == 8 and t["superseded_searches"] == 2
    assert t["confirmed_deflections"] == 1
    assert t["assumed_deflections"] == 2
    assert t["assumed_pending"] == 0
    assert t["tickets"] == 3
    assert t["deflection_rate"] == pytest.approx(3 / 6, abs=1e-4)
    assert t["confirmed_deflection_rate"] == pytest.approx(1 / 6, abs=1e-4)
    assert t["answered_rate"] == pytest.approx(4 / 6, abs=1e-4)
    assert t["no_answer_rate"] == pytest.approx(2 / 6, abs=1e-4)
    assert t["click_rate"] == pytest.approx(4 / 6, abs=1e-4)
    assert m["events"] == {"click": 5, "helpful": 2, "not_helpful": 1, "ticket_created": 3, "vote": 0}

    a1 = next(r for r in m["articles"] if r["id"] == "a1")
    # a1 shown in all 6 final searches; helpful twice (final), not_helpful once; clicked in
    # late_ticket and not_helpful (the superseded click does not count); tickets after a1 was
    # clicked: late_ticket only.
    assert a1["impressions"] == 6
    assert a1["clicks"] == 2
    assert (a1["helpful"], a1["not_helpful"]) == (2, 1)
    assert a1["tickets_after_shown"] == 3
    assert a1["tickets_after_click"] == 1
    assert a1["effectiveness"] == pytest.approx(2 / (2 + 1 + 1), abs=1e-4)
    a2 = next(r for r in m["articles"] if r["id"] == "a2")
    assert (a2["clicks"], a2["helpful"], a2["tickets_after_click"]) == (2, 0, 1)
    assert a2["effectiveness"] == 0.0

    gaps = {g["query"]: g["count"] for g in m["content_gaps"]}
    # pool: unanswered (sso setup, dark mode) or a ticket (refund, api limits)
    assert set(gaps) == {"sso setup", "dark mode", "refund", "api limits"}
    # refund and api limits were answered, and a ticket came anyway: the article missed the point
    assert {g["query"]: g["answered"] for g in m["content_gaps"]} == {"sso setup": 0, "dark mode": 0, "refund": 1, "api limits": 1}
    # ... with the article they showed first: the one to look at
    assert {g["query"]: g.get("answered_with") for g in m["content_gaps"]} == {
        "sso setup": None, "dark mode": None, "refund": "a1", "api limits": "a1"}
    assert m["series"] and sum(day["searches"] for day in m["series"]) == 6


def test_assumed_window_and_pending(store):
    clicked = add_search(store, "change my email", 0, session="a")
    add_event(store, clicked, "click", 5, "a1")
    early = compute_metrics(store, assumed_window_seconds=60, now=T0 + 10)
    assert early["totals"]["assumed_deflections"] == 1
    assert early["totals"]["assumed_pending"] == 1
    add_event(store, clicked, "ticket_created", 50)
    after_ticket = compute_metrics(store, assumed_window_seconds=60, now=T0 + 100)
    assert after_ticket["totals"]["assumed_deflections"] == 0
    assert after_ticket["totals"]["tickets"] == 1
    # With a shorter window the same ticket comes too late to cancel the deflection.
    short = compute_metrics(store, assumed_window_seconds=30, now=T0 + 100)
    assert short["totals"]["assumed_deflections"] == 1


def test_period_bounds(store):
    old = add_search(store, "old question", -86400 * 3, session="o")
    add_event(store, old, "helpful", -86400 * 3 + 5, "a1")
    new = add_search(store, "new question", 0, session="n")
    add_event(store, new, "click", 3, "a2")
    m = compute_metrics(store, since=T0 - 3600, until=T0 + 3600, now=T0 + 7200)
    assert m["totals"]["searches"] == 1
    assert m["events"]["helpful"] == 0 and m["events"]["click"] == 1
    everything = compute_metrics(store, now=T0 + 7200)
    assert everything["totals"]["searches"] == 2
    assert len(everything["series"]) == 2
    assert everything["totals"]["confirmed_deflections"] == 1


def test_a_date_alone_as_the_end_of_a_period_takes_in_that_day(store, tmp_path):
    from datetime import UTC, datetime

    from click.testing import CliRunner

    from deflect.cli import main
    from deflect.periods import parse_time

    day = datetime.fromtimestamp(T0, UTC).date().isoformat()  # T0 is 2026-09-21 14:13 UTC
    assert parse_time(day, end=True) - parse_time(day) == 86400
    assert parse_time(f"{day}T10:00", end=True) == parse_time(f"{day}T10:00")  # a time is taken as it is
    basic = day.replace("-", "")  # ISO 8601's basic format, 8 digits: a date, not epoch seconds in 1970
    assert (parse_time(basic), parse_time(basic, end=True)) == (parse_time(day), parse_time(day, end=True))
    add_search(store, "in the afternoon", 0)
    add_search(store, "the next morning", 86400 - 14 * 3600)
    url = store.url.render_as_string(hide_password=False)

    def searches(*period: str) -> tuple[int, int]:
        result = CliRunner().invoke(main, ["metrics", "--json", "--database-url", url, *period],
                                    env={"DEFLECT_INDEX_DIR": str(tmp_path)})  # fmt: skip
        return result.exit_code, (json.loads(result.output)["totals"]["searches"] if result.exit_code == 0 else -1)

    assert searches("--since", day, "--until", day) == (0, 1)
    assert searches("--until", day) == (0, 1)
    assert searches("--since", day) == (0, 2)
    assert searches("--since", basic, "--until", basic) == (0, 1)
    assert searches("--since", f"{day}T23:00", "--until", f"{day}T22:00")[0] == 2  # a usage error, exit 2
    assert searches("--until", "20261331")[0] == 2  # no 31st of a 13th month


def test_votes_count_for_ideas(store):
    search_id = add_search(store, "dark mode please", 0, session="v", answered=False, shown=("a1", "i-dark"))
    add_event(store, search_id, "vote", 3, "i-dark", item_type="idea")
    m = compute_metrics(store, now=T0 + 60)
    idea = next(r for r in m["ideas"] if r["id"] == "i-dark")
    assert idea["impressions"] == 1 and idea["votes"] == 1
    assert m["events"]["vote"] == 1
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.events)).scalar_one() == 1


def test_an_idea_row_counts_a_requesters_votes_once_as_the_board_does(store):
    first = add_search(store, "dark mode please", 0, session="v1", answered=False, shown=("i-dark",))
    add_event(store, first, "vote", 3, "i-dark", item_type="idea", customer_id="c1")
    add_event(store, first, "vote", 4, "i-dark", item_type="idea", customer_id="c1")  # the board said counted: false
    again = add_search(store, "night theme", 100, session="v2", answered=False, shown=("i-dark",))
    add_event(store, again, "vote", 103, "i-dark", item_type="idea", email="c2@example.com")
    add_event(store, again, "vote", 104, "i-dark", item_type="idea", email="C2@Example.com")  # the same person
    add_event(store, again, "vote", 105, "i-dark", item_type="idea")  # anonymous votes always count
    add_event(store, again, "vote", 106, "i-dark", item_type="idea")
    m = compute_metrics(store, now=T0 + 600)
    idea = next(r for r in m["ideas"] if r["id"] == "i-dark")
    assert idea["votes"] == 4  # c1, c2 and two anonymous
    assert m["events"]["vote"] == 6  # every stored event is still counted as an event


def add_candidate(engine, candidate_id, label, search_ids, status="new"):
    """What a clusters rebuild writes for one candidate (hand-built here)."""
    from deflect.candidates import candidate_members, candidates

    with db.writing(engine) as conn:
        conn.execute(candidates.insert().values(id=candidate_id, label=label, keywords='["k"]', status=status,
                                                active=True, size=len(search_ids), created_at=T0, updated_at=T0))
        conn.execute(candidate_members.insert(), [
            {"search_id": s, "candidate_id": candidate_id, "how": "rebuild", "joined_at": T0} for s in search_ids
        ])


def test_cluster_gaps_count_only_the_searches_of_the_period(store, tmp_path):
    old = [add_search(store, f"dark mode {i}", -86400 * 3 + i, answered=False) for i in range(5)]
    new = [add_search(store, f"dark theme {i}", 100 + i, answered=False) for i in range(2)]
    sso = [add_search(store, f"okta sso {i}", 200 + i, answered=False) for i in range(3)]
    ignored = [add_search(store, f"font size {i}", 300 + i, answered=False) for i in range(4)]
    before = compute_metrics(store, since=T0, until=T0 + 3600, now=T0 + 7200)
    assert {g["query"] for g in before["content_gaps"]} >= {"okta sso 0", "dark theme 0"}, "no candidates yet: by query"

    add_candidate(store, "c-dark", "Dark mode", old + new)
    add_candidate(store, "c-sso", "Okta SSO", sso)
    add_candidate(store, "c-font", "Font size", ignored, status="dismissed")
    period = compute_metrics(store, since=T0, until=T0 + 3600, now=T0 + 7200)
    gaps = [(g.get("candidate_id"), g["count"], g.get("total_size")) for g in period["content_gaps"]]
    # In the period: 3 SSO searches, 2 of the 7 dark-mode ones; the dismissed candidate is no gap.
    assert gaps == [("c-sso", 3, 3), ("c-dark", 2, 7)]
    assert sorted(period["content_gaps"][1]["search_ids"]) == sorted(new)
    assert period["content_gaps"][0]["query"] == "Okta SSO"
    everything = compute_metrics(store, now=T0 + 7200)
    assert [(g["candidate_id"], g["count"]) for g in everything["content_gaps"]] == [("c-dark", 7), ("c-sso", 3)]

    # A search that joined no candidate yet (asked after the rebuild) is still a gap, by query.
    late = [add_search(store, "export invoices csv", 400 + i, answered=False) for i in range(4)]
    after = compute_metrics(store, since=T0, until=T0 + 3600, now=T0 + 7200)["content_gaps"]
    assert [(g.get("candidate_id"), g["query"], g["count"]) for g in after] == [
        (None, "export invoices csv", 4), ("c-sso", "Okta SSO", 3), ("c-dark", "Dark mode", 2)
    ]
    assert sorted(after[0]["search_ids"]) == sorted(late)

    # The CLI gives the same gaps for the same period.
    import json

    from click.testing import CliRunner

    from deflect.cli import main

    url = store.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["metrics", "--json", "--database-url", url, "--since", str(T0),
                                       "--until", str(T0 + 3600)], env={"DEFLECT_INDEX_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    cli_gaps = json.loads(result.output)["content_gaps"]
    assert [(g.get("candidate_id"), g["count"]) for g in cli_gaps] == [(None, 4), ("c-sso", 3), ("c-dark", 2)]
    same = CliRunner().invoke(main, ["metrics", "--database-url", url, "--since", str(T0), "--until", str(T0)])
    assert same.exit_code == 2 and "--since" in same.output and "before --until" in same.output


def test_the_answered_rate_is_split_by_what_came_first(store):
    add_search(store, "reset my password", 1, shown=("a-reset", "i-sso"))
    add_search(store, "dark mode please", 2, shown=("i-dark", "a-theme"))
    add_search(store, "night theme", 3, shown=("i-dark",))
    add_search(store, "gantt", 4, answered=False, shown=("i-gantt",))  # not answered: in neither
    t = compute_metrics(store, since=T0, until=T0 + 3600, now=T0 + 7200)["totals"]
    assert (t["answered_rate"], t["answered_by_article_rate"], t["answered_by_idea_rate"]) == (0.75, 0.25, 0.5)


def test_shown_results_are_counted_the_same_whatever_the_in_list_size(store, monkeypatch):
    # The shown results are summed in the database; on SQLite a bounded IN list of search ids at
    # a time (PostgreSQL takes them as one array): an id list cut anywhere must add up the same.
    for n in range(7):
        search = add_search(store, f"question {n}", n * 60, session=f"s{n}", shown=("a1", "i1", "a2")[: 1 + n % 3])
        if n % 2:
            add_event(store, search, "ticket_created", n * 60 + 5)
    add_search(store, "question", 6 * 60 - 1, session="s6", shown=("a2", "a3"))  # superseded: not counted
    add_search(store, "dark mode", 500, session="s7", shown=("i2", "a1"))  # an idea first
    whole = compute_metrics(store, now=T0 + 5000)
    shown = {r["id"]: (r["impressions"], r["tickets_after_shown"]) for r in whole["articles"] + whole["ideas"]}
    # a1 in all 8 final searches, i1 in n = 1, 2, 4, 5, a2 in n = 2, 5; tickets on n = 1, 3, 5
    assert shown == {"a1": (8, 3), "i1": (4, 2), "a2": (2, 1), "i2": (1, 0)}
    assert whole["totals"]["answered_by_idea_rate"] == pytest.approx(1 / 8, abs=1e-4)
    for size in (1, 2, 5):
        monkeypatch.setattr(metrics, "SHOWN_CHUNK", size)
        assert compute_metrics(store, now=T0 + 5000) == whole


def test_unclustered_gaps_group_the_same_words_whatever_the_punctuation(store):
    for i, query in enumerate(["offline mode mobile app", "Offline mode mobile app?", "offline  mode, mobile app!",
                               "sync with jira", "Sync with Jira?"]):
        add_search(store, query, 100 + i, answered=False)
    gaps = compute_metrics(store, since=T0, until=T0 + 3600, now=T0 + 7200)["content_gaps"]
    assert [(g["query"], g["count"]) for g in gaps] == [("offline  mode, mobile app!", 3), ("Sync with Jira?", 2)]


def test_content_gaps_list_ten_groups_unless_asked_for_more(store, tmp_path):
    from click.testing import CliRunner

    from deflect.cli import main

    for topic in range(12):  # 12 questions asked 1..12 times each: 12 gaps, largest first
        for n in range(topic + 1):
            add_search(store, f"topic {topic}", 100 * topic + n, answered=False)
    crowded = [add_search(store, "crowded", 2000 + i, answered=False) for i in range(25)]
    default = compute_metrics(store, now=T0 + 7200)["content_gaps"]
    assert [g["query"] for g in default] == ["crowded"] + [f"topic {t}" for t in range(11, 2, -1)]
    assert default[0]["count"] == 25 and default[0]["search_ids"] == crowded[-20:]  # the latest 20
    every = compute_metrics(store, now=T0 + 7200, gaps=100)["content_gaps"]
    assert len(every) == 13 and sum(g["count"] for g in every) == 25 + sum(range(1, 13))

    url = store.url.render_as_string(hide_password=False)
    env = {"DEFLECT_INDEX_DIR": str(tmp_path)}
    table = CliRunner().invoke(main, ["metrics", "--top", "13", "--database-url", url], env=env)
    assert table.exit_code == 0, table.output
    def gap_rows(output: str) -> set[str]:
        return {line.split("  ")[-1].strip() for line in output.splitlines() if line.rstrip().endswith(("crowded",) + tuple(f"topic {t}" for t in range(12)))}

    assert gap_rows(table.output) == {"crowded"} | {f"topic {t}" for t in range(12)}  # the two smallest too
    assert len(gap_rows(CliRunner().invoke(main, ["metrics", "--database-url", url], env=env).output)) == 10
    assert CliRunner().invoke(main, ["metrics", "--top", "0", "--database-url", url], env=env).exit_code == 2


def test_events_export_says_which_searches_count(store, tmp_path):
    """An analyst can reproduce the metrics from the export: superseded searches are marked."""
    import csv

    from click.testing import CliRunner

    from deflect.cli import main
    from deflect.exports import event_rows as export_rows

    typed = add_search(store, "slack", 0, session="s")
    final = add_search(store, "slack notifications", 2, session="s")
    other = add_search(store, "slack", 100, session="t", answered=False)  # nothing extends it
    add_event(store, typed, "click", 1, "a1")
    add_event(store, final, "helpful", 5, "a1")
    add_event(store, other, "ticket_created", 120)
    rows = list(export_rows(store))
    assert [(r["search_id"], r["final_search"]) for r in rows] == [(typed, False), (final, True), (other, True)]
    assert compute_metrics(store, now=T0 + 7200)["totals"]["searches"] == sum(
        1 for sid in {r["search_id"] for r in rows if r["final_search"]}
    ) == 2

    out = tmp_path / "events.csv"
    url = store.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["events", "export", "--database-url", url, "--format", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    assert [(r["final_search"], r["answered"]) for r in exported] == [("false", "true"), ("true", "true"), ("true", "false")]
    assert not out.read_bytes().startswith(b"\xef\xbb\xbf")  # plain UTF-8 unless asked
    assert out.stat().st_mode & 0o777 == 0o600  # people's questions and emails: the owner's to share

    # --bom: Excel (on a Korean Windows, say) reads the file as UTF-8 instead of the local code page.
    excel = tmp_path / "events-excel.csv"
    result = CliRunner().invoke(main, ["events", "export", "--database-url", url, "--format", "csv", "--bom", "-o", str(excel)])
    assert result.exit_code == 0, result.output
    assert excel.read_bytes() == b"\xef\xbb\xbf" + out.read_bytes()
    refused = CliRunner().invoke(main, ["searches", "export", "--database-url", url, "--bom"])
    assert refused.exit_code == 2 and "--bom is for --format csv" in refused.output


def test_events_export_by_search_time_recomputes_a_periods_tickets(store):
    """A month's figures count the events of the month's searches whenever they came (a ticket filed
    after midnight on the last day); --by-search-time exports exactly those, the default by event time."""
    from click.testing import CliRunner

    from deflect.cli import main

    day = 86400
    late = add_search(store, "export invoices", day - 60, session="late")  # a minute before the period ends
    add_event(store, late, "click", day - 50, "a1")
    add_event(store, late, "ticket_created", day + 120)  # after midnight: the next period by event time
    early = add_search(store, "refund", 10, session="early")
    add_event(store, early, "ticket_created", 40)
    since, until = str(T0), str(T0 + day)
    report = compute_metrics(store, since=T0, until=T0 + day, now=T0 + 3 * day)
    url = store.url.render_as_string(hide_password=False)

    def exported(*options: str) -> list[dict]:
        result = CliRunner().invoke(main, ["events", "export", "--database-url", url, "--since", since, "--until", until, *options])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.output.splitlines()]

    def tickets(rows: list[dict]) -> int:
        return len({r["search_id"] for r in rows if r["type"] == "ticket_created" and r["final_search"]})

    assert report["totals"]["tickets"] == 2
    assert tickets(exported("--by-search-time")) == 2
    assert tickets(exported()) == 1  # by event time the late ticket is the next period's


def test_searches_export_has_the_searches_nobody_acted_on(store, tmp_path):
    """With the searches export an analyst recomputes searches, answered rate and impressions too."""
    import csv

    from click.testing import CliRunner

    from deflect.cli import main

    typed = add_search(store, "slack", 0, session="s")
    final = add_search(store, "slack notifications", 2, session="s", shown=("a1", "a2"))
    add_search(store, "dark mode, please", 50, session="u", answered=False, shown=())  # nobody acted on it
    add_event(store, final, "helpful", 5, "a1")
    url = store.url.render_as_string(hide_password=False)
    runner = CliRunner()
    result = runner.invoke(main, ["searches", "export", "--database-url", url])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["search_id"], r["final_search"]) for r in rows][:2] == [(typed, False), (final, True)]
    assert [r["id"] for r in rows[1]["results"]] == ["a1", "a2"]  # a list in JSON lines, JSON text in CSV
    report = compute_metrics(store, now=T0 + 7200)
    final_rows = [r for r in rows if r["final_search"]]
    assert report["totals"]["searches"] == len(final_rows) == 2
    assert report["totals"]["answered_rate"] == sum(r["answered"] for r in final_rows) / len(final_rows)
    impressions = sum(1 for r in final_rows for shown in r["results"] if shown["id"] == "a1")
    assert next(a for a in report["articles"] if a["id"] == "a1")["impressions"] == impressions == 1

    out = tmp_path / "searches.csv"
    day = time.strftime("%Y-%m-%d", time.gmtime(T0))
    result = runner.invoke(main, ["searches", "export", "--database-url", url, "--format", "csv", "-o", str(out),
                                  "--since", day, "--until", day])  # fmt: skip
    assert result.exit_code == 0 and "3 searches written" in result.output, result.output
    with out.open(encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    assert [r["query"] for r in exported] == ["slack", "slack notifications", "dark mode, please"]
    assert exported[2]["answered"] == "false" and exported[2]["results"] == "[]"
    bad = runner.invoke(main, ["searches", "export", "--database-url", url, "--since", "20261399"])
    assert bad.exit_code == 2 and "--since" in bad.output
