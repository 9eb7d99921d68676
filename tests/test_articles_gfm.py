"""GitHub-flavoured Markdown writers use: strikethrough, task lists, footnotes, bare URLs, on the
page (safe as the rest) and in the text search reads (as a reader would say it)."""

from __future__ import annotations

import pytest
from html_support import Elements

from deflect.article_html import is_safe_url, render_html
from deflect.articles import parse_article
from deflect.links import references
from deflect.passages import plain_text, split_passages


def elements(markup: str, tag: str) -> list[dict[str, str | None]]:
    return [attrs for name, attrs in Elements(markup).elements if name == tag]


def assert_safe(markup: str) -> None:
    for tag, attrs in Elements(markup).elements:
        assert tag not in ("script", "iframe", "object", "embed", "svg"), (tag, attrs)
        assert not [a for a in attrs if a.lower().startswith("on")], (tag, attrs)
        for name in ("href", "src"):
            if attrs.get(name) is not None:
                assert is_safe_url(attrs[name]), (tag, attrs)


def test_strikethrough_is_struck_through():
    markup = render_html("Was ~~$10~~ now $8, ~~**old** plan~~; a~~b and `~~code~~` stay.")
    assert "<del>$10</del>" in markup and "<del><strong>old</strong> plan</del>" in markup
    assert "a~~b" in markup and "<code>~~code~~</code>" in markup
    assert plain_text("Was ~~$10~~ now $8.") == "Was $10 now $8."


TASKS = "To finish:\n\n- [ ] Connect Slack\n- [x] Invite your team\n- [X] **Pick** a paid plan\n- [] not a task\n"


def test_a_task_list_shows_checkboxes_not_brackets():
    markup = render_html(TASKS + "\n1. [ ] first\n\n    More about it.\n\n2. [x] second\n")
    boxes = elements(markup, "input")
    assert [b.get("checked") for b in boxes] == [None, "checked", "checked", None, "checked"]
    assert all(b["type"] == "checkbox" and b.get("disabled") is not None for b in boxes)  # shows, never edits
    assert "[ ]" not in markup and "[x]" not in markup.lower()
    assert "[] not a task" in markup  # GitHub's rule: a space or an x between the brackets
    assert len([li for li in elements(markup, "li") if li.get("class") == "task-list-item"]) == 5


def test_a_task_list_reads_as_its_words_in_search():
    assert plain_text(TASKS) == "To finish: Connect Slack Invite your team Pick a paid plan [] not a task"
    assert plain_text("1. [ ] Open Settings\n2. [x] Click Export\n") == "Open Settings Click Export"
    items = [p.text for p in split_passages("Setup", TASKS + "- [ ] Turn on two-factor sign-in\n") if p.kind == "item"]
    assert items == ["Connect Slack", "Invite your team", "Pick a paid plan", "[] not a task", "Turn on two-factor sign-in"]


FOOTNOTED = "Refunds take 5 days[^1] or more[^slow].\n\n[^1]: Business days.\n[^slow]: For bank transfers, see refunds.md.\n"


def test_footnotes_link_to_their_notes():
    markup = render_html(FOOTNOTED)
    refs = [a["href"] for a in elements(markup, "a") if a.get("class") == "footnote-ref"]
    assert refs == ["#fn:1", "#fn:slow"]
    assert '<li id="fn:1">' in markup and "Business days." in markup and "[^" not in markup
    assert_safe(markup)


def test_footnotes_read_as_text_without_their_markers():
    assert plain_text(FOOTNOTED) == "Refunds take 5 days or more. Business days. For bank transfers, see refunds.md."
    assert parse_article(b"# Fees[^1]\n\nText.\n\n[^1]: Yearly.\n", "fees.md").title == "Fees"
    assert references(FOOTNOTED) == []  # a footnote is no link definition (refunds.md is no link)


def test_bare_urls_become_links_and_angle_autolinks_stay_links():
    markup = render_html(
        "See https://example.com/x, www.example.com/help. or (https://en.wikipedia.org/wiki/Tax_(law)).\n"
        "Also <https://example.com/angle> and **https://example.com/my_file**; not `https://example.com/code` "
        "nor [the guide](https://example.com/guide) nor [https://shown.example](https://target.example)."
    )
    assert [a["href"] for a in elements(markup, "a")] == [
        "https://example.com/x",
        "http://www.example.com/help",
        "https://en.wikipedia.org/wiki/Tax_(law)",
        "https://example.com/angle",
        "https://example.com/my_file",
        "https://example.com/guide",
        "https://target.example",
    ]
    assert '<a href="https://example.com/x">https://example.com/x</a>, ' in markup  # the comma is prose


def test_urls_read_as_written_in_search():
    text = "Open <https://example.com/a_b> or https://example.com/~team/my_file_(v2), **https://example.com/x_y**."
    assert plain_text(text) == "Open https://example.com/a_b or https://example.com/~team/my_file_(v2), https://example.com/x_y."


@pytest.mark.parametrize(
    "source",
    [
        "javascript:alert(1) and JAVASCRIPT://%0aalert(1) data:text/html,<script>alert(1)</script>",
        'https://example.com/"onmouseover="alert(1) and https://example.com/<img src=x onerror=alert(1)>',
        "- [ ] <img src=x onerror=alert(1)>\n- [x] <script>alert(1)</script>",
        "~~<svg onload=alert(1)>~~ and text[^1]\n\n[^1]: <script>alert(1)</script> [x](javascript:alert(1))",
        "www.example.com/<script>alert(1)</script> and https://x.example/?a=<b>",
    ],
)
@pytest.mark.parametrize("raw_html", ["safe", "text"])
def test_what_github_markdown_adds_stays_safe(source, raw_html):
    markup = render_html(source, raw_html=raw_html)
    assert_safe(markup)
    assert "<script" not in markup and "<svg" not in markup
    assert raw_html == "safe" or "<img" not in markup  # as text; an allowlisted <img src="x"> is harmless
    assert not [a for a in elements(markup, "a") if "javascript" in (a.get("href") or "").lower()]
