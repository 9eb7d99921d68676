"""Search text and snippets read raw HTML and entities as the page shows them.

tests/data/zendesk/ holds articles from a Zendesk Guide help centre converted to Markdown (the sample
KB of a team moving from Zendesk, copied as they were): inline HTML, entities, a stray <script>.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from deflect.article_html import render_html
from deflect.articles import parse_article
from deflect.passages import plain_text, split_passages

ZENDESK = Path(__file__).resolve().parent / "data" / "zendesk"


def sections(rel: str) -> list[str]:
    article = parse_article((ZENDESK / rel).read_bytes(), rel)
    return [p.snippet for p in article.passages if p.kind == "section"]


def test_a_zendesk_article_reads_as_its_page_shows_it():
    """No entity text, no script, no space before punctuation: what the widget shows as the snippet."""
    assert sections("Getting Started/Invite teammates.md") == [
        "To invite teammates, open Settings > Team and click Invite. Enter one email per line. Invitations "
        "expire after 7 days. Admins can resend an invitation from the same page. Click here for more."
    ]
    welcome = sections("Getting Started/Welcome to Acme.md")
    assert welcome == [
        "Welcome to Acme Desk! This guide helps you set up your workspace & invite your team. Tip: You can "
        "skip onboarding and come back later. Welcome screen Create your workspace Go to app.acme.com/signup, "
        "enter your company name and choose a subdomain. You will receive a confirmation email."
    ]


def test_entities_in_plain_markdown_are_decoded_too():
    """Its page renders "&gt;" as ">": so does its snippet."""
    (invoice,) = sections("Billing & Payments/Invoices/Download an INVOICE.md")
    assert "Add it under Billing > Company details before the next renewal." in invoice
    assert "Monthly Every month on the renewal date Annual Once a year" in invoice  # table cells apart
    assert sections("Billing & Payments/Cancel subscription.md")[0].endswith("Questions? Email billing@acme.com")
    assert plain_text("AT&amp;T &copy; 2024, 5&#160;GB, &#x2192; next; AT&T and a &lt;b&gt; tag") == (
        "AT&T © 2024, 5 GB, → next; AT&T and a <b> tag"
    )


def test_script_style_and_comments_are_not_read():
    body = (
        "Intro words.\n\n<script>\nvar secret = 'scriptword';\n\n# not a heading\n\nalert('more scriptword');\n</script>\n\n"
        "<style>.callout { color: stylerule }</style>\n\n<!-- an editor's note:\n\ncommentword -->\n\n"
        "## After\n\nStill read.\n\n<script>never closed, scriptword to the end"
    )
    passages = split_passages("Title", body)
    text = " ".join(p.text for p in passages)
    assert "scriptword" not in text and "stylerule" not in text and "commentword" not in text
    assert "not a heading" not in text
    assert [p.snippet for p in passages if p.kind == "section"] == ["Intro words.", "Still read."]
    assert plain_text("a <SCRIPT type=module>x()</SCRIPT >b<!-- c -->d") == "a bd"


@pytest.mark.parametrize(
    "markdown_text, expected",
    [
        ("Click <b>Invite</b>. Then <em>Save</em>, done", "Click Invite. Then Save, done"),
        ("Ad<b>min</b>s only, <a href='/x'>here</a>!", "Admins only, here!"),
        ("<p>One</p><p>Two</p>x<br>y<br/>z<div>w</div>", "One Two x y z w"),
        ("<ul><li>a</li><li>b</li></ul><table><tr><th>c</th><td>d</td></tr></table><h2>e</h2>f", "a b c d e f"),
        ('See <img src="https://x.example/a.png" alt="the Team page">.', "See the Team page."),
        ("a < b and c > d, <3", "a < b and c > d, <3"),  # no tag: as written, as the page shows it
    ],
)
def test_inline_tags_add_no_space_and_block_tags_part_words(markdown_text, expected):
    assert plain_text(markdown_text) == expected


def test_code_reads_exactly_as_written():
    """An article explaining HTML: its code is shown literally on the page, and read so."""
    text = plain_text("Write `&amp;` for &amp;, `<b>` for bold, ``a_b`` as is. `<script>` too; the end.")
    assert text == "Write &amp; for &, <b> for bold, a_b as is. <script> too; the end."
    passages = split_passages("HTML", "Never paste `<script>` tags.\n\n## Then\n\nThis stays searchable.")
    assert [p.snippet for p in passages if p.kind == "section"] == ["Never paste <script> tags.", "This stays searchable."]
    fenced = plain_text("Before\n\n~~~html\n<b>&amp;</b>\n~~~\n\nafter")
    assert fenced == "Before <b>&amp;</b> after"


def test_backslash_escapes_read_as_their_character():
    """turndown writes "1\\." so that a numbered line stays a line; the page shows "1.", and so does the
    snippet. Code keeps its backslashes, as the page shows them."""
    passages = split_passages("Activity log", "To do this:\n\n1\\. Go to Settings > Activity log\n2\\. Filter by \\*date\\*\n")
    assert [p.snippet for p in passages if p.kind == "section"] == ["To do this: 1. Go to Settings > Activity log 2. Filter by *date*"]
    assert plain_text(r"\# Not a heading, \[not a link\](x), a\_b, \`code\` and `a\*b`") == (
        r"# Not a heading, [not a link](x), a_b, `code` and a\*b"
    )
    assert plain_text("| Plan | Limit |\n|---|---|\n| Team \\| Pro | 10 |") == "Plan, Limit. Team | Pro: 10."


# "~" aside: search text drops a lone "~" as a strikethrough mark, escaped or not.
@pytest.mark.parametrize("char", [chr(c) for c in range(33, 127) if not chr(c).isalnum() and chr(c) != "~"])
def test_a_backslash_escape_reads_as_the_page_shows_it(char):
    """Every ASCII punctuation character after a backslash: the search text is the page's text
    (Python-Markdown drops the backslash before its escapable characters only; "\\&" shows as written)."""
    page = render_html(f"before \\{char} after")
    shown = html.unescape(re.sub(r"<[^>]+>", "", page)).strip()
    assert plain_text(f"before \\{char} after") == shown
