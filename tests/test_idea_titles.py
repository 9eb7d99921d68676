"""One idea per title: promoting a candidate, creating, renaming or importing an idea with the title
of another (case, spacing and surrounding punctuation ignored) is refused, naming that idea.

On the store (SQLite file and PostgreSQL); over HTTP in tests/test_ideas_api.py.
"""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa
from test_review_aliases import make_candidate

from deflect import aliases, db, review
from deflect import candidates as cand
from deflect.idea_import import import_ideas
from deflect.ideas import DuplicateTitle, create_idea, get_idea, list_ideas, update_idea
from deflect.wording import title_key


def add(store, idea_id: str, title: str, status: str = "open") -> None:
    with db.writing(store) as conn:
        create_idea(conn, {"id": idea_id, "title": title, "status": status})


def test_title_key_ignores_case_spacing_and_the_punctuation_around_it():
    same = ["Dark mode", "dark mode", "  Dark   MODE ", "Dark mode?", "Dark mode!!", "«Dark mode»", "Ｄａｒｋ　ｍｏｄｅ。"]
    assert {title_key(t) for t in same} == {"dark mode"}
    assert title_key("E-mail digest") != title_key("E mail digest")  # inside the title, punctuation counts
    assert title_key("Support C#") != title_key("Support C")
    assert title_key("!!!") != title_key("???")  # nothing but punctuation: kept as it is


def test_promoting_with_the_title_of_an_idea_is_refused_and_the_candidate_stays_reviewable(store):
    add(store, "dark-mode", "Dark mode")
    ids = make_candidate(store, "c-dark", ["is there a dark mode", "night theme please", "black background"])
    with pytest.raises(cand.CandidateError) as refused:
        review.promote(store, "c-dark", "  dark MODE? ", exclude=(ids[2],))
    error = refused.value
    assert (error.status, error.field, error.details) == (409, "title", {"idea_id": "dark-mode"})
    assert "'dark-mode'" in str(error) and "merge the candidate into 'dark-mode'" in str(error)
    # Nothing was written: one idea, no aliases, the candidate new with none of its questions left out.
    assert [i["id"] for i in list_ideas(store)] == ["dark-mode"]
    assert aliases.list_aliases(store) == []
    with store.connect() as conn:
        assert conn.execute(sa.select(cand.candidates.c.status).where(cand.candidates.c.id == "c-dark")).scalar_one() == "new"
        assert conn.execute(sa.select(sa.func.count()).select_from(cand.candidate_exclusions)).scalar_one() == 0
    # No title is no promote: the label (a customer's words) is never used as one.
    make_candidate(store, "c-label", ["Dark mode!"], start=1_800_000_000.0)
    for untitled in (None, " "):
        with pytest.raises(cand.CandidateError) as no_title:
            review.promote(store, "c-label", untitled)
        assert (no_title.value.status, no_title.value.field) == (400, "title")
    # The reviewer merges into the idea named instead; another title promotes.
    merged = review.merge(store, "c-dark", error.details["idea_id"], exclude=(ids[2],))
    assert merged["candidate"]["status"] == "merged" and merged["aliases_added"] == 2
    assert review.promote(store, "c-label", "Dark mode on mobile")["idea"]["title"] == "Dark mode on mobile"


def test_a_title_of_a_merged_idea_names_where_it_went_and_a_closed_one_cannot_take_the_candidate(store):
    add(store, "themes", "Themes")
    add(store, "night", "Night mode")
    with db.writing(store) as conn:
        update_idea(conn, "night", {"merged_into": "themes"})
    add(store, "old-export", "Export to Excel", status="shipped")
    make_candidate(store, "c-night", ["night mode please"])
    make_candidate(store, "c-excel", ["excel export"], start=1_800_000_000.0)
    with pytest.raises(cand.CandidateError) as merged:
        review.promote(store, "c-night", "Night mode.")
    assert merged.value.details == {"idea_id": "themes"} and "merged into 'themes'" in str(merged.value)
    with pytest.raises(cand.CandidateError) as shipped:
        review.promote(store, "c-excel", "export to excel")
    assert shipped.value.details == {"idea_id": "old-export"} and "(shipped)" in str(shipped.value)
    assert "merge the candidate" not in str(shipped.value)  # a shipped idea takes no candidate


def test_creating_or_renaming_an_idea_to_another_ideas_title_is_refused(store):
    add(store, "dark-mode", "Dark mode")
    add(store, "sso", "Single sign-on")
    with db.writing(store) as conn, pytest.raises(DuplicateTitle) as created:
        create_idea(conn, {"title": "DARK MODE."})  # an id would be free (dark-mode-xxxx); the title is not
    assert (created.value.field, created.value.idea_id) == ("title", "dark-mode")
    with db.writing(store) as conn, pytest.raises(DuplicateTitle) as renamed:
        update_idea(conn, "sso", {"title": "Dark mode"})
    assert renamed.value.idea_id == "dark-mode"
    with db.writing(store) as conn:  # its own title, re-cased or re-punctuated, is no duplicate
        assert update_idea(conn, "dark-mode", {"title": "Dark Mode!"})[0]["title"] == "Dark Mode!"
        create_idea(conn, {"title": "Dark mode for the mobile app"})
    assert len(list_ideas(store)) == 3


def test_ideas_that_shared_a_title_before_the_check_can_still_be_edited(store):
    now = time.time()
    with db.writing(store) as conn:  # written before titles were checked
        conn.execute(db.ideas.insert(), [{"id": i, "title": "Dark mode", "created_at": now, "updated_at": now} for i in ("a", "b")])
        update_idea(conn, "b", {"title": "dark mode", "status": "planned"})
        update_idea(conn, "b", {"merged_into": "a"})
    assert get_idea(store, "b")["merged_into"] == "a"


def test_import_skips_a_new_idea_with_the_title_of_another(store, tmp_path):
    add(store, "dark-mode", "Dark mode")
    lines = [
        {"id": "night", "title": "dark mode!"},  # another id, the same title: skipped, naming the idea
        {"title": "Dark Mode", "votes": 3},  # its slug is dark-mode: an update of that idea
        {"id": "sso", "title": "Single sign-on"},
        {"id": "sso-2", "title": "single sign-on"},  # the same title twice in one file
    ]
    path = tmp_path / "ideas.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    inserted, updated, errors, _ = import_ideas(store, path)
    assert (inserted, updated) == (1, 1)
    assert [e.split(": ", 1)[0].rsplit(":", 1)[1] for e in errors] == ["1", "4"]
    assert "title: an idea titled 'Dark mode' exists already: 'dark-mode'" in errors[0]
    assert "'sso'" in errors[1]
    assert sorted(i["id"] for i in list_ideas(store)) == ["dark-mode", "sso"]
    assert import_ideas(store, path)[:2] == (0, 2)  # again: the same lines skipped, nothing else changes
