"""Article HTML as writers used to GitHub expect it: lists right after a line, relative links and images."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from conftest import TINY_KB, write_kb
from html_support import Elements

from deflect.article_html import render_html
from deflect.articles import parse_article
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


# --- raw HTML: its allowlisted subset renders (article_raw_html = "safe"), or it is text --------

ZENDESK = Path(__file__).resolve().parent / "data" / "zendesk"


def zendesk_body(rel: str) -> str:
    return parse_article((ZENDESK / rel).read_bytes(), rel).body


def test_a_zendesk_articles_html_renders_as_html():
    welcome = Elements(render_html(zendesk_body("Getting Started/Welcome to Acme.md"))).elements
    assert [tag for tag, _ in welcome] == ["p", "strong", "div", "p", "strong", "p", "img", "h2", "p", "a", "br"]
    assert ("img", {"src": "https://acme.zendesk.com/hc/article_attachments/360009999/welcome.png",
                    "alt": "Welcome screen", "width": "600"}) in welcome  # fmt: skip
    assert ("a", {"href": "https://app.acme.com/signup"}) in welcome
    assert ("div", {}) in welcome and ("h2", {}) in welcome  # class="callout": no class, no id from raw HTML
    invite = render_html(zendesk_body("Getting Started/Invite teammates.md"))
    assert "open <b>Settings &gt; Team</b> and click <em>Invite</em>. Enter" in invite
    assert "7&nbsp;days" in invite and "xss-from-zendesk" not in invite and "<script" not in invite
    assert "<p>Click here for <a>more</a>.</p>" in invite  # onclick and the javascript: href are gone
    table = render_html(zendesk_body("Billing & Payments/Invoices/Download an INVOICE.md"))
    assert tags(table) == ["h1", "p", "strong", "table", "thead", "tr", "th", "th", "tbody", "tr", "td", "td", "tr",
                           "td", "td", "p", "strong"]  # fmt: skip
    assert "<th>Invoice frequency</th>" in table and "<strong>Billing &gt; Company details</strong>" in table


def test_raw_html_shown_as_text_when_the_setting_says_so():
    source = zendesk_body("Getting Started/Welcome to Acme.md")
    markup = render_html(source, raw_html="text")
    assert tags(markup) == ["p"]  # one paragraph of text, every tag written out
    assert "&lt;p&gt;Welcome to &lt;strong&gt;Acme&nbsp;Desk&lt;/strong&gt;!" in markup
    assert '&lt;img src="https://acme.zendesk.com/hc/article_attachments/360009999/welcome.png" alt=' in markup
    with pytest.raises(ValueError):
        render_html(source, raw_html="html")


@pytest.mark.parametrize("raw_html", ["safe", "text"])
def test_the_url_autolinker_leaves_raw_html_attributes_alone(raw_html):
    markup = render_html(
        'A <img src="https://x.example/a.png" alt="A"> and <a href="https://x.example/b">see https://x.example/b</a>, '
        "then https://x.example/c.", raw_html=raw_html,
    )  # fmt: skip
    if raw_html == "text":
        assert links(markup) == ["https://x.example/b", "https://x.example/c"]  # the words' URLs, not the tags'
        assert '&lt;img src="https://x.example/a.png" alt="A"&gt;' in markup
        assert '&lt;a href="https://x.example/b"&gt;see <a href="https://x.example/b">' in markup
    else:
        assert links(markup) == ["https://x.example/b", "https://x.example/c"]  # no link inside the raw link
        assert '<a href="https://x.example/b">see https://x.example/b</a>' in markup
        assert '<img src="https://x.example/a.png" alt="A">' in markup


def test_a_url_right_after_a_raw_tag_is_linked_as_on_github():
    """Help-centre HTML puts URLs straight after tags (`<br>https://...`, `<b>https://...</b>`)."""
    markup = render_html(
        "Go to:<br>https://x.example/a. Or <b>www.x.example/b</b>; <span>docs</span>https://x.example/c\n\n"
        '<a href="https://x.example/d"><b>https://x.example/d</b></a> and \\https://x.example/e'
    )
    assert links(markup) == ["https://x.example/a", "http://www.x.example/b", "https://x.example/c", "https://x.example/d"]
    assert '<b><a href="http://www.x.example/b">www.x.example/b</a></b>' in markup
    assert '<a href="https://x.example/d"><b>https://x.example/d</b></a>' in markup  # no link in a raw link
    assert markup.endswith(" and \\https://x.example/e</p>")  # after a backslash: no word start, no link


def test_markdowns_own_ids_and_classes_stay_and_raw_ones_go():
    """Heading ids, footnotes, task lists, code languages and table alignment are as without raw HTML;
    an id, class, style or <input> written in raw HTML never gets through."""
    markdown = (
        "## Fees\n\nText[^1] ~~old~~ `code`.\n\n- [ ] todo\n- [x] done\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\n"
        "```python\nprint('<b>')\n```\n\n![pic](https://x.example/p.png \"T\")\n\n[^1]: The note.\n"
    )
    assert Elements(render_html(markdown)).elements == Elements(render_html(markdown, raw_html="text")).elements
    raw = render_html(
        '<h2 id="main" class="btn" style="color:red">Raw</h2>\n\n<p>Tick <input type="checkbox" checked> '
        '<span id="fees" title="t" onmouseover="x()">hi</span> <code class="language-js">c</code></p>\n\n## Fees\n'
    )
    assert Elements(raw).elements == [("h2", {}), ("p", {}), ("span", {"title": "t"}), ("code", {}),
                                      ("h2", {"id": "fees"})]  # fmt: skip


@pytest.mark.parametrize(
    "markdown",
    [
        # An unclosed quote in a processing instruction swallows Markdown's markup into a raw tag, whose
        # attributes then run on up to a footnote's marked id or class, or a task list's checkbox.
        "x <?![i](/z)<a href=/ok title='?>\n\n[^1]: note 'y[^1]",
        "x[^1] <?![i](/z)<b title='?>\n\n[^1]: note '",
        "x <?![i](/z)<b title='?>\n\n- [ ] task\n\n' y",
    ],
)
def test_raw_html_cannot_take_markdowns_own_attributes_or_checkboxes(markdown):
    """Found by a review: a raw <a> or <b> got Markdown's id="fnref:1", class="footnote-backref", or a
    checkbox's markup inside its title. Each mark is good once, on its own tag, and a checkbox only in text."""
    rendered = render_html(markdown)
    elements = Elements(rendered).elements
    raw = [(tag, attributes) for tag, attributes in elements if attributes.get("title", "").startswith("?>")]
    assert raw, rendered  # the raw tag is there, its title holding what it swallowed, as text
    for tag, attributes in raw:
        assert set(attributes) <= {"href", "title"}, (tag, attributes)
    assert [tag for tag, attributes in elements if attributes.get("id") == "fnref:1"] in ([], ["sup"])
    assert {tag for tag, attributes in elements if "class" in attributes} <= {"a", "div", "li", "input"}
    assert "<input" not in "".join(attributes.get("title", "") for _, attributes in elements)
    assert all("disabled" in attributes for tag, attributes in elements if tag == "input")


@pytest.mark.parametrize("raw_html", ["safe", "text"])
def test_a_fenced_code_block_keeps_only_its_language(raw_html):
    """```{.python .evil #main} gave the block the page's own id and any class; only the language stays."""
    rendered = render_html("```{.python .evil #main}\nx = 1\n```\n\n```c#\ny\n```\n\n```\nz\n```\n", raw_html=raw_html)
    assert [(t, a) for t, a in Elements(rendered).elements if t in ("pre", "code")] == [
        ("pre", {}), ("code", {"class": "language-python"}), ("pre", {}), ("code", {"class": "language-c#"}),
        ("pre", {}), ("code", {}),
    ]


def test_a_heading_with_raw_tags_gets_the_id_of_its_words():
    """`## <b>Fees</b>` is "fees", so that [see fees](#fees) lands on it (its id held the raw tags' placeholders)."""
    rendered = render_html("## <b>Fees</b> &amp; <i>charges</i>\n\n[see](#fees-charges)\n\n## Fees & charges\n")
    assert [a.get("id") for t, a in Elements(rendered).elements if t == "h2"] == ["fees-charges", "fees-charges-1"]


def test_raw_links_and_images_resolve_as_markdown_ones_do(tmp_path):
    kb = write_kb(tmp_path / "kb", {"billing/refunds.md": "# R\n", "account/images/plan.png": b"\x89PNG"})
    rewrite = LinkTargets([{"path": "billing/refunds.md", "url": "/articles/billing/refunds"}], kb).rewriter(
        "account/cancel.md"
    )
    markdown = render_html(
        "[Refunds](../billing/refunds.md#fees) [gone](old.md) ![Plan](images/plan.png) ![Missing](images/no.png) "
        "[pdf](files/terms.pdf) [web](https://example.com/x)",
        rewrite,
    )
    raw = render_html(
        '<a href="../billing/refunds.md#fees">Refunds</a> <a href="old.md">gone</a> '
        '<img src="images/plan.png" alt="Plan"> <img alt="Missing" src="images/no.png"> '
        "<a href='files/terms.pdf'>pdf</a> <a href=https://example.com/x>web</a>",
        rewrite,
    )
    assert links(raw) == links(markdown) == ["/articles/billing/refunds#fees", None, "files/terms.pdf",
                                             "https://example.com/x"]  # fmt: skip
    assert '<img src="/kb-images/account/images/plan.png" alt="Plan">' in raw
    assert "<span>Missing</span>" in raw and "<span>Missing</span>" in markdown
    assert [src for tag, attrs in Elements(raw).elements if tag == "img" for src in [attrs["src"]]] == [
        "/kb-images/account/images/plan.png"
    ]
