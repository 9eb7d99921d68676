"""Article HTML as writers used to GitHub expect it: lists right after a line, relative links and images."""

from __future__ import annotations

import logging
import re

import pytest
from conftest import TINY_KB, write_kb
from html_support import Elements

from deflect.article_html import render_html
from deflect.index import build_index
from deflect.links import LinkTargets


def tags(markup: str) -> list[str]:
    return [tag for tag, _ in Elements(markup).elements]


def links(markup: str) -> list[str | None]:
    return [attrs.get("href") for tag, attrs in Elements(markup).elements if tag == "a"]


# --- lists right after a paragraph line ----------------------------------------------------


def test_a_numbered_list_right_after_a_line_is_a_list():
    markup = render_html("To export:\n1. Open Settings\n2. Click Export\n")
    assert tags(markup) == ["p", "ol", "li", "li"]
    assert "<p>To export:</p>" in markup


@pytest.mark.parametrize("marker", ["-", "*", "+"])
def test_a_bullet_list_right_after_a_line_is_a_list(marker):
    markup = render_html(f"You need:\n{marker} a paid plan\n{marker} the owner role\n")
    assert tags(markup) == ["p", "ul", "li", "li"]


def test_code_and_prose_that_look_like_lists_are_left_alone():
    source = (
        "Steps:\n1. Open Settings\n\n"
        "```\nExport:\n1. not a list\n- nor this\n```\n\n"
        "~~~text\nLog:\n1. kept as written\n~~~\n\n"
        "Indented code:\n\n    Step\n    1. code too\n\n"
        "We moved to version\n4. That number is prose, as on GitHub.\n"
    )
    markup = render_html(source)
    assert markup.count("<ol>") == 1 and "<ul>" not in markup  # only "Steps:"
    assert "<pre><code>Export:\n1. not a list\n- nor this\n</code></pre>" in markup
    assert '<pre><code class="language-text">Log:\n1. kept as written\n</code></pre>' in markup
    assert "<pre><code>Step\n1. code too\n</code></pre>" in markup
    assert "<p>We moved to version\n4. That number is prose, as on GitHub.</p>" in markup


def test_nested_and_continued_lists_are_unchanged_by_the_blank_line_rule():
    source = "Before you start:\n1. Open\n    - nested item\n    - another\n2. Close\n   lazy continuation\n3. Done\n"
    markup = render_html(source)
    assert tags(markup) == ["p", "ol", "li", "ul", "li", "li", "li", "li"]
    assert "<p>" not in markup.split("</p>", 1)[1]  # a tight list: no blank line was put between its items
    assert tags(render_html("Title\n=====\n- item")) == ["h1", "ul", "li"]  # a setext heading, then a list


def test_a_list_right_after_a_line_inside_a_quote_is_a_list():
    markup = render_html("> **Before you cancel:**\n> 1. Export your data\n> 2. Download invoices\n\nThen cancel.\n")
    assert tags(markup) == ["blockquote", "p", "strong", "ol", "li", "li", "p"]
    assert "<p>Then cancel.</p>" in markup  # the quote ends at the blank line
    nested = render_html("> > Nested:\n> > - a\n> > - b\n")
    assert tags(nested) == ["blockquote", "blockquote", "p", "ul", "li", "li"]
    after = render_html("> A tip\n- a list after the quote\n")  # lazily continued on GitHub: a new list
    assert tags(after) == ["blockquote", "p", "ul", "li"]
    in_item = render_html("- Open Settings\n  > Owners only:\n  > 1. Billing\n- Close\n")
    assert tags(in_item) == ["ul", "li", "blockquote", "p", "ol", "li", "li"]
    assert "<p>Close</p>" not in in_item  # still a tight list: no blank line was put after the quote
    assert tags(render_html("    > code\n    1. code too\n")) == ["pre", "code"]
    assert tags(render_html("> first line  \n> second line\n")) == ["blockquote", "p", "br"]  # hard break kept


# --- relative links and images -------------------------------------------------------------

TARGETS = LinkTargets(
    [
        {"path": "billing/refunds.md", "url": "/articles/billing/refunds"},
        {"path": "account/change-email.md", "url": "https://help.example.com/change-email"},
        {"path": "integrations/slack.MARKDOWN", "url": "/articles/slack"},
    ]
)


def test_relative_links_to_article_files_lead_to_their_urls():
    markup = render_html(
        "[Ask for a refund](../billing/refunds.md) and [fees](../billing/refunds.md#fees), "
        "[email](change-email.md), [Slack](<../integrations/slack.MARKDOWN>), "
        "[same](./../account/../billing/refunds.md?x=1#fees)",
        TARGETS.rewriter("account/reset-password.md"),
    )
    assert links(markup) == [
        "/articles/billing/refunds",
        "/articles/billing/refunds#fees",
        "https://help.example.com/change-email",
        "/articles/slack",
        "/articles/billing/refunds#fees",
    ]


def test_links_that_lead_nowhere_become_text_and_other_links_stay():
    markup = render_html(
        "[gone](nothing.md), [outside](../../../etc/notes.md), [web](https://example.com/a.md), "
        "[mail](mailto:help@example.com), [here](#fees), [site](/articles/x), [file](files/terms.pdf)",
        TARGETS.rewriter("account/reset-password.md"),
    )
    assert links(markup) == [None, None, "https://example.com/a.md", "mailto:help@example.com", "#fees",
                             "/articles/x", "files/terms.pdf"]  # fmt: skip
    assert ">gone</a>" in markup and ">outside</a>" in markup  # the writer's words stay


def test_relative_images_are_served_from_the_kb_and_headings_get_ids():
    markup = render_html(
        "## Fees and taxes\n\n![Billing page](images/billing page.png) ![up](../shared/logo.svg) "
        "![out](../../secret.png) ![web](https://example.com/a.png) [full size](images/big.png)",
        TARGETS.rewriter("billing/refunds.md"),
    )
    images = [attrs.get("src") for tag, attrs in Elements(markup).elements if tag == "img"]
    assert images == ["/kb-images/billing/images/billing%20page.png", "/kb-images/shared/logo.svg",
                      "https://example.com/a.png"]  # fmt: skip
    assert "<span>out</span>" in markup  # outside kb_dir: its alt text
    assert links(markup) == ["/kb-images/billing/images/big.png"]
    assert '<h2 id="fees-and-taxes">' in markup  # where "refunds.md#fees-and-taxes" lands


def test_a_missing_image_is_its_alt_text_not_a_broken_image(tmp_path):
    """As a link that leads nowhere is its words: an <img> whose /kb-images/ address answers
    "not found" would be drawn as a broken image. Checked when shown, as /kb-images/ checks it."""
    kb = write_kb(tmp_path / "kb", {"billing/refunds.md": "# R\n", "billing/images/chart.png": b"\x89PNG"})
    markup = render_html(
        "![Revenue chart](images/chart.png) ![Fees by plan](images/none.png) ![](images/none.png) "
        "[full size](images/none.png) [![Badge](images/none.png)](https://example.com/)",
        LinkTargets([{"path": "billing/refunds.md", "url": "/articles/billing/refunds"}], kb).rewriter("billing/refunds.md"),
    )
    elements = Elements(markup).elements
    assert [attrs for tag, attrs in elements if tag == "img"] == [
        {"alt": "Revenue chart", "src": "/kb-images/billing/images/chart.png"}
    ]
    assert "<span>Fees by plan</span> <span></span> <a>full size</a>" in markup
    assert links(markup) == [None, "https://example.com/"] and "<span>Badge</span></a>" in markup
    (kb / "billing" / "images" / "none.png").write_bytes(b"\x89PNG")  # added later: shown without a reindex
    assert "/kb-images/billing/images/none.png" in render_html(
        "![Fees](images/none.png)", LinkTargets([], kb).rewriter("billing/refunds.md")
    )


# --- index time ----------------------------------------------------------------------------


def test_heading_ids_are_githubs_and_never_the_pages_own():
    """A second "## Fees" is #fees-1 as on GitHub (where writers check their links); a heading
    "Main" does not take the id of the page's <main>, which the skip link targets."""
    markup = render_html("## Main\n\n## Fees\n\nx\n\n## Fees\n\ny\n\n## 환불 요청\n")
    ids = re.findall(r'<h2 id="([^"]+)">', markup)
    assert ids == ["main-1", "fees", "fees-1", "환불-요청"]


def test_links_that_lead_nowhere_are_logged_once_and_do_not_change_passages(tmp_path, embedder, caplog):
    linked = (
        "# Cancel your plan\n\nCancel any time. [Ask for a refund](../billing/refunds.md#fees) or "
        "[read the old page](old-cancel.md).\n\n![Plan page](images/plan.png)\n"
    )
    plain = "# Cancel your plan\n\nCancel any time. Ask for a refund or read the old page.\n\nPlan page\n"
    kb = write_kb(tmp_path / "kb", TINY_KB | {"account/cancel.md": linked, "account/images/plan.png": b"\x89PNG"})
    with caplog.at_level(logging.WARNING, logger="deflect.links"):
        index, _ = build_index(kb, tmp_path / "index", embedder, "test-model")
        (kb / "integrations" / "slack.md").write_text(TINY_KB["integrations/slack.md"] + "\nEdited.\n")
        build_index(kb, tmp_path / "index", embedder, "test-model")  # a new version: nothing new to say
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "account/cancel.md: link 'old-cancel.md' leads to no article (account/old-cancel.md is not in the "
        "knowledge base); it is shown as plain text"
    ]
    # Search reads text: a link is its words, not its target, with or without deflect resolving it.
    plain_kb = write_kb(tmp_path / "plain", TINY_KB | {"account/cancel.md": plain})
    plain_index, _ = build_index(plain_kb, tmp_path / "plain-index", embedder, "test-model")
    assert [p["text"] for p in index.passages] == [p["text"] for p in plain_index.passages]


def test_images_and_links_outside_the_kb_are_named_in_warnings(tmp_path, embedder, caplog):
    kb = write_kb(tmp_path / "kb", TINY_KB | {
        "account/out.md": "# Out\n\n[up](../../elsewhere/a.md) ![x](../../x.png) ![gone](gone.png) ![hid](.h/a.png)\n",
    })  # fmt: skip
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with caplog.at_level(logging.WARNING, logger="deflect.links"):
        build_index(kb, tmp_path / "index", embedder, "test-model")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "account/out.md: link '../../elsewhere/a.md' leads outside the knowledge-base folder" in text
    assert "account/out.md: image '../../x.png' leads outside the knowledge-base folder; its alt text is shown instead" \
        in text
    assert "account/out.md: image 'gone.png': account/gone.png is missing, hidden or not an image deflect serves " \
        "(png, jpg, jpeg, gif, webp, avif, svg); its alt text is shown instead" in text
    assert "account/out.md: image '.h/a.png': account/.h/a.png is missing, hidden" in text
