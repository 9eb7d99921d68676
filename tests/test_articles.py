"""Markdown KB parsing (DESIGN section 2): front matter, passages, malformed files, safe HTML."""

from __future__ import annotations

import hashlib
import html
import json
import logging
import textwrap
from html.parser import HTMLParser

import pytest
from conftest import SAMPLE_KB, write_kb

from deflect.articles import ArticleError, parse_article, render_html
from deflect.kb_folder import load_kb
from deflect.passages import plain_text, split_passages


def parse(text: str, rel_path: str = "billing/refunds.md", **kwargs):
    return parse_article(text.encode("utf-8"), rel_path, **kwargs)


# --- front matter and defaults -------------------------------------------------------


def test_front_matter_values_are_used():
    article = parse(
        "---\nid: billing/refund-policy\ntitle: How refunds work\nlocale: de\ntags: [billing, money]\n"
        "url: https://help.example.com/refunds\n---\n# Some other heading\n\nBody text.\n"
    )
    assert article.id == "billing/refund-policy"
    assert article.title == "How refunds work"
    assert article.locale == "de"
    assert article.tags == ["billing", "money"]
    assert article.url == "https://help.example.com/refunds"
    assert article.draft is False
    assert "Body text." in article.body and "---" not in article.body


def test_defaults_without_front_matter():
    article = parse("# How refunds work\n\nWe refund annual plans.\n", "billing/refunds.md")
    assert article.id == "billing/refunds"  # path relative to the KB, without .md
    assert article.title == "How refunds work"  # first "# " heading
    assert article.locale == "en"
    assert article.url == "/articles/billing/refunds"
    assert article.tags == []
    assert article.draft is False


@pytest.mark.parametrize("opening", ["---\n---\n", "---\r\n---\r\n", "---\n\n---\n", "---  \n---\t\n"])
def test_an_empty_front_matter_block_is_no_front_matter(opening):
    """Editors and static-site tools write an empty `---`/`---` block: the article is kept, with the defaults."""
    article = parse(opening + "# How refunds work\n\nWe refund annual plans.\n", "billing/refunds.md")
    assert (article.id, article.title, article.locale) == ("billing/refunds", "How refunds work", "en")
    assert "---" not in article.body and "We refund annual plans." in article.body


def test_default_locale_comes_from_the_caller():
    assert parse("# Hallo\n\nText.\n", default_locale="de").locale == "de"
    assert parse("---\nlocale: fr\n---\n# Bonjour\n\nTexte.\n", default_locale="de").locale == "fr"


def test_title_is_the_first_level_one_heading_not_a_subheading():
    article = parse("Intro line.\n\n## Not the title\n\nText.\n\n# The title\n\nMore.\n")
    assert article.title == "The title"


def test_title_falls_back_to_the_file_name():
    article = parse("Just some text without any heading.\n", "plans/free-trial.md")
    assert article.title == "Free trial"  # capitalised as a writer would (see below)
    assert article.id == "plans/free-trial"


def test_title_ignores_hash_lines_inside_code_blocks():
    """A shell comment in a fenced code block is not a "# " heading."""
    text = (
        "Run this first:\n\n```bash\n# install the CLI\npip install orbitask\n```\n\n# Use the command line\n\nText.\n"
    )
    assert parse(text, "integrations/cli.md").title == "Use the command line"
    no_heading = "```bash\n# install the CLI\npip install orbitask\n```\n\nText without a heading.\n"
    assert parse(no_heading, "integrations/cli-setup.md").title == "Cli setup"  # as MkDocs titles a page from its file name


def test_url_default_uses_the_front_matter_id():
    article = parse("---\nid: /custom/slug/\n---\n# T\n\nText.\n", "x/y.md")
    assert article.id == "custom/slug"
    assert article.url == "/articles/custom/slug"


@pytest.mark.parametrize(
    "article_id, reason",
    [
        ("../../etc/passwd", "'..'"),
        ("billing/../admin", "'..'"),
        ("billing/./refunds", "'.'"),
        ("billing//refunds", "empty"),
        ("FAQ: what's new? #1 / 100%", "starts or ends with a space"),
        ("billing\\refunds", "backslash"),
        ("tab\there", "control"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_an_unusable_front_matter_id_skips_the_file(tmp_path, caplog, article_id, reason):
    kb = write_kb(
        tmp_path / "kb",
        {"faq/bad.md": f"---\nid: {json.dumps(article_id)}\n---\n# Bad id\n\nText.\n", "faq/good.md": "# Good\n\nText.\n"},
    )
    with caplog.at_level(logging.WARNING, logger="deflect.articles"):
        articles, warnings = load_kb(kb)
    assert [a.path for a in articles] == ["faq/good.md"]
    assert len(warnings) == 1 and warnings[0].startswith("faq/bad.md: skipped: id ") and reason in warnings[0]
    assert "faq/bad.md" in caplog.text


@pytest.mark.parametrize(
    "article_id, url",
    [
        ("billing/refunds", "/articles/billing/refunds"),
        ("v1.2/release_notes-2024", "/articles/v1.2/release_notes-2024"),
        ("ko/비밀번호-재설정", "/articles/ko/%EB%B9%84%EB%B0%80%EB%B2%88%ED%98%B8-%EC%9E%AC%EC%84%A4%EC%A0%95"),
        ("Café/Ünïcode", "/articles/Caf%C3%A9/%C3%9Cn%C3%AFcode"),
        ("reverted-card-payment?", "/articles/reverted-card-payment%3F"),  # as in banking77's KB
        ("what's new? 100%", "/articles/what%27s%20new%3F%20100%25"),
    ],
)
def test_a_valid_front_matter_id_gets_a_percent_encoded_url(article_id, url):
    article = parse(f"---\nid: {article_id}\n---\n# T\n\nText.\n")
    assert article.id == article_id
    assert article.url == url


@pytest.mark.parametrize(
    "front_matter, warning",
    [("id: [1, 2]", "id must be a string"), ("id: true", "id must be a string"),
     ("id:", "id is empty"), ('id: ""', "id is empty"), ('id: "/"', "id is empty")],
)
def test_a_front_matter_id_that_is_not_usable_text_skips_the_file(tmp_path, front_matter, warning):
    kb = write_kb(tmp_path / "kb", {"faq/bad.md": f"---\n{front_matter}\n---\n# Bad id\n\nText.\n"})
    articles, warnings = load_kb(kb)
    assert articles == [] and len(warnings) == 1 and warnings[0].startswith(f"faq/bad.md: skipped: {warning}")


def test_a_numeric_front_matter_id_is_its_text():
    assert parse("---\nid: 0\n---\n# T\n\nText.\n", "x/y.md").id == "0"
    assert parse("---\nid: 2024\n---\n# T\n\nText.\n", "x/y.md").url == "/articles/2024"


def test_an_id_from_an_odd_file_name_still_gets_a_usable_url():
    """Ids taken from the path are kept as they are (renaming files would move published URLs)."""
    article = parse("# T\n\nText.\n", "faq/what's new? #1 100%.md")
    assert article.id == "faq/what's new? #1 100%"
    assert article.url == "/articles/faq/what%27s%20new%3F%20%231%20100%25"


def test_content_hash_is_sha256_of_the_file_bytes():
    raw = b"# Title\n\nText.\n"
    assert parse_article(raw, "a.md").content_hash == hashlib.sha256(raw).hexdigest()


def test_crlf_and_bom_files_parse():
    raw = "\ufeff---\r\ntitle: Windows file\r\nlocale: en\r\n---\r\n# Heading\r\n\r\nBody.\r\n".encode()
    article = parse_article(raw, "w.md")
    assert article.title == "Windows file"
    assert "Body." in article.body


def test_a_posix_style_locale_is_served_as_a_language_tag():
    """en_US in front matter is en-US, the form queries are recorded and matched in."""
    assert parse("---\nlocale: en_US\n---\n# T\n\nText.\n").locale == "en-US"
    assert parse("---\nlocale: pt-BR\n---\n# T\n\nText.\n").locale == "pt-BR"


def test_string_tags_become_a_list():
    assert parse("---\ntags: billing\n---\n# T\n\nText.\n").tags == ["billing"]


@pytest.mark.parametrize(
    "tags, expected",
    [
        ('"billing, refunds"', ["billing", "refunds"]),
        ("billing,refunds , ,vat,", ["billing", "refunds", "vat"]),  # trimmed, empty ones dropped
        ("[billing, ' refunds ', '']", ["billing", "refunds"]),
        ("[]", []),
        ('""', []),
    ],
)
def test_a_comma_separated_tags_string_is_split_into_tags(tags, expected):
    assert parse(f"---\ntags: {tags}\n---\n# T\n\nText.\n").tags == expected


@pytest.mark.parametrize("tags, expected", [("true", []), ("[billing, yes, 'on', false]", ["billing", "on"])])
def test_a_true_or_false_tag_is_left_out_with_a_warning_naming_the_file(tmp_path, caplog, tags, expected):
    """YAML reads an unquoted yes/on/true as true: a writer gets a warning saying how to quote it,
    not a tag "True" on the page; the article is indexed."""
    kb = write_kb(tmp_path / "kb", {"billing/refunds.md": f"---\ntags: {tags}\n---\n# T\n\nText.\n"})
    with caplog.at_level(logging.WARNING, logger="deflect.articles"):
        articles, warnings = load_kb(kb)
    assert [a.tags for a in articles] == [expected]
    assert warnings == [
        "billing/refunds.md: tags: true or false is not a tag and is left out (YAML reads an unquoted yes, no, "
        'on, off, true or false so; quote a tag such as "on")'
    ]
    assert warnings[0] in caplog.text


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ("---\ntitle: x\n", "never closed"),
        ("---\ntitle: [unclosed\n---\n# T\n\nText.\n", "YAML"),
        ("---\n- a\n- b\n---\n# T\n\nText.\n", "mapping"),
        ("---\ntitle: only front matter\n---\n", "no content"),
        ("---\ndraft: maybe\n---\n# T\n\nText.\n", "draft"),
        ("---\ntags: {a: 1}\n---\n# T\n\nText.\n", "tags"),
        ("---\nlocale: not a locale!\n---\n# T\n\nText.\n", "locale must be a language tag"),
        ("---\nlocale: [en, ko]\n---\n# T\n\nText.\n", "locale must be a language tag"),
    ],
)
def test_malformed_articles_raise_a_readable_error(text, reason):
    with pytest.raises(ArticleError, match=reason):
        parse(text)


def test_not_utf8_raises():
    with pytest.raises(ArticleError, match="UTF-8"):
        parse_article("# Caf\u00e9\n\nPrix: 5\u20ac\n".encode("latin-1", errors="replace"), "a.md")


# --- passages ------------------------------------------------------------------------


def test_passages_split_at_headings():
    body = (
        "# Reset your password\n\nIntro paragraph about resets.\n\n"
        "## Request a link\n\nClick Forgot password on the sign-in page.\n\n"
        "## Link expired\n\nLinks are valid for one hour; request a new one.\n"
    )
    article = parse(body)
    kinds = [p.kind for p in article.passages]
    assert kinds[0] == "title" and article.passages[0].text == "Reset your password"
    sections = [p for p in article.passages if p.kind == "section"]
    assert len(sections) == 3
    assert "Intro paragraph" in sections[0].snippet
    assert "Forgot password" in sections[1].snippet and "Request a link" in sections[1].text
    assert "one hour" in sections[2].snippet and "Link expired" in sections[2].text
    # Every section passage carries the article title for context; snippets are plain text.
    assert all(s.text.startswith("Reset your password.") for s in sections)
    assert all("#" not in s.snippet for s in sections)


def test_headings_inside_code_blocks_do_not_split():
    body = "# Title\n\nBefore.\n\n```bash\n# a comment\necho hi\n```\n\nAfter.\n"
    sections = [p for p in parse(body).passages if p.kind == "section"]
    assert len(sections) == 1


@pytest.mark.parametrize("limit", [200, 400])
def test_long_sections_split_at_the_size_bound(limit):
    paragraphs = [f"Paragraph {i} " + " ".join(f"word{i}x{j}" for j in range(20)) for i in range(12)]
    body = "# Long article\n\n" + "\n\n".join(paragraphs) + "\n"
    sections = [p for p in split_passages("Long article", body, limit) if p.kind == "section"]
    longest_paragraph = max(len(p) for p in paragraphs)
    assert len(sections) > 1
    assert all(len(s.snippet) <= limit + longest_paragraph for s in sections)
    # Nothing is lost or duplicated: every paragraph lands in exactly one section.
    for i in range(12):
        assert sum(f"Paragraph {i} word{i}x0 " in s.snippet for s in sections) == 1
    fewer = [p for p in split_passages("Long article", body, limit * 4) if p.kind == "section"]
    assert len(fewer) < len(sections)


def _sections(body: str, limit: int, title: str = "T") -> list:
    return [p for p in split_passages(title, body, limit) if p.kind == "section"]


def test_a_long_paragraph_is_cut_at_sentences_within_the_bound():
    """The model reads only a passage's first ~256 tokens: a long paragraph is cut, not indexed whole."""
    sentences = [f"Sentence number {i} says something about the topic {'ABCDEFG'[i % 7]}." for i in range(60)]
    para = " ".join(sentences)
    wrapped = textwrap.fill(para, 72)  # hard-wrapped, as editors often save prose: line ends inside sentences
    sections = _sections(f"# Guide\n\n## Setup\n\n{wrapped}\n", 200, title="Guide")
    assert len(sections) > 1
    assert all(len(s.snippet) <= 200 for s in sections)
    assert all(s.snippet.endswith(".") for s in sections)  # cut after a sentence, not inside one
    assert " ".join(s.snippet for s in sections) == para  # nothing lost, nothing repeated
    # Every piece keeps the heading context the section's passages get (the one prefix added).
    assert all(s.text == f"Guide. Setup: {s.snippet}" for s in sections)


def test_a_paragraph_without_sentence_ends_is_cut_at_words_then_anywhere():
    para = " ".join(f"w{i}" for i in range(400))
    sections = _sections(f"# T\n\n{para}\n", 100)
    assert all(len(s.snippet) <= 100 for s in sections)
    assert " ".join(s.snippet for s in sections) == para  # words stay whole
    word = "x" * 250
    assert [s.snippet for s in _sections(f"# T\n\n{word}\n", 100)] == ["x" * 100, "x" * 100, "x" * 50]


def test_a_list_without_blank_lines_is_cut_between_items():
    items = [f"Item {i}: open the {i}th menu. Then pick an option" for i in range(30)]
    sections = _sections("# T\n\n" + "\n".join(f"- {item}" for item in items) + "\n", 150)
    assert len(sections) > 1 and all(len(s.snippet) <= 150 for s in sections)
    assert " ".join(s.snippet for s in sections) == " ".join(items)  # bullets stripped, nothing lost
    assert all(s.snippet.startswith("Item ") and s.snippet.endswith("option") for s in sections)  # items whole


def test_korean_sentences_are_cut_at_their_ends():
    para = " ".join(f"{i}번 문장은 결제와 환불에 대해 설명합니다." for i in range(40))
    sections = _sections(f"# 안내\n\n{para}\n", 120, title="안내")
    assert len(sections) > 1 and all(len(s.snippet) <= 120 for s in sections)
    assert all(s.snippet.endswith("니다.") for s in sections)


def test_short_paragraphs_are_not_cut():
    body = "# T\n\nFirst paragraph. It has two sentences.\n\nSecond paragraph.\n"
    assert [s.snippet for s in _sections(body, 700)] == ["First paragraph. It has two sentences. Second paragraph."]


def test_short_bullet_items_become_extra_passages():
    body = (
        "# Can't sign in\n\nCommon reasons:\n\n"
        "- I forgot my password\n"
        "* My account is locked after too many attempts\n"
        "- Ok\n"  # too short to stand alone
        f"- {'very long item ' * 30}\n"  # too long to stand alone
    )
    passages = parse(body).passages
    items = [p.text for p in passages if p.kind == "item"]
    assert items == ["I forgot my password", "My account is locked after too many attempts"]
    # The items are still part of their section too.
    section = next(p for p in passages if p.kind == "section")
    assert "I forgot my password" in section.snippet


def test_plain_text_strips_markdown_noise():
    text = plain_text("## Head\n\nSee **[the docs](https://x.test)** and ![logo](a.png) `code`\n\n```\nblock\n```\n")
    assert text == "Head See the docs and logo code"


# --- the KB folder -------------------------------------------------------------------


def test_load_kb_skips_drafts(tmp_path):
    kb = write_kb(
        tmp_path / "kb",
        {
            "a.md": "# Published\n\nText.\n",
            "b.md": "---\ndraft: true\n---\n# Work in progress\n\nText.\n",
        },
    )
    articles, warnings = load_kb(kb)
    assert [a.id for a in articles] == ["a"]
    assert warnings == []


def test_front_matter_keys_in_any_case_and_unknown_ones_named(tmp_path, caplog):
    """A writer's "Draft: true" keeps the article a draft; a key deflect does not read ("titel")
    is ignored with a warning naming the file and the key, and the article is still indexed."""
    kb = write_kb(
        tmp_path / "kb",
        {
            "launch.md": "---\nDraft: true\n---\n# Hyperdrive launch\n\nUnreleased.\n",
            "typo.md": "---\ntitel: Refund rules\nAuthor: Ana\nLOCALE: ko\n---\n# 환불 규칙\n\n본문.\n",
        },
    )
    with caplog.at_level(logging.WARNING, logger="deflect.articles"):
        articles, warnings = load_kb(kb)
    assert [(a.id, a.locale) for a in articles] == [("typo", "ko")]
    # Not skipped: warnings of the article, listed with the skip warnings until fixed (logged once): a
    # likely typo on its own, naming the file; a key deflect does not read counted over the KB (one file here).
    logged = [r.getMessage() for r in caplog.records]
    assert warnings == logged == [
        "typo.md: front matter key 'titel' ignored: a typo of 'title'?",
        "front matter key 'Author' ignored in 1 file (typo.md); deflect reads id, title, locale, tags, url, draft",
    ]


def test_a_front_matter_key_given_twice_is_warned_naming_the_file_and_the_key(tmp_path, caplog):
    """YAML lets the last of two equal keys win silently; the article is indexed with the last value,
    as YAML reads it, and the warning (with the skip warnings, logged once) says which key and where."""
    kb = write_kb(
        tmp_path / "kb",
        {
            "billing/refunds.md": "---\ntitle: Refunds\ntags: [billing]\ntitle: How refunds work\n---\nText.\n",
            "billing/draft.md": "---\ndraft: true\nDraft: false\nid: x\nID: y\n---\nText.\n",  # in any case, as read
            "billing/fine.md": "---\ntitle: Fine\nnote: a\nnote: b\n---\nText.\n",  # a key deflect ignores anyway
        },
    )
    with caplog.at_level(logging.WARNING, logger="deflect.articles"):
        articles, warnings = load_kb(kb)
        logged = [r.getMessage() for r in caplog.records if "front matter key" in r.getMessage()]
        caplog.clear()
        assert load_kb(kb, reported=warnings)[1] == warnings  # still reported, not logged again
        assert not [r for r in caplog.records if "given" in r.getMessage()]
    by_path = {a.path: a for a in articles}
    assert by_path["billing/refunds.md"].title == "How refunds work"  # the last one, as YAML reads it
    assert by_path["billing/draft.md"].id == "y" and not by_path["billing/draft.md"].draft
    assert warnings == logged == [
        "billing/draft.md: front matter key 'draft' given 2 times (lines 2, 3); the last one is used",
        "billing/draft.md: front matter key 'id' given 2 times (lines 4, 5); the last one is used",
        "billing/refunds.md: front matter key 'title' given 2 times (lines 2, 4); the last one is used",
        # A key deflect does not read is named as one (tests/test_kb_maintenance.py), not as one given twice.
        "front matter key 'note' ignored in 1 file (billing/fine.md); deflect reads id, title, locale, tags, url, draft",
    ]


def test_titles_and_tags_are_read_as_text(caplog):
    heading = parse("# Export to **CSV** with `deflect export` and [filters](https://x.example)\n\nText.\n")
    assert heading.title == "Export to CSV with deflect export and filters"
    assert parse("---\ntags: [billing, 2024, null]\n---\nText.\n").tags == ["billing", "2024"]
    assert parse("---\ntitle: 2024 prices\n---\nText.\n").title == "2024 prices"
    with pytest.raises(ArticleError, match="title must be text"):
        parse("---\ntitle: [a, b]\n---\nText.\n")
    with pytest.raises(ArticleError, match="tags must be a list of words"):
        parse("---\ntags: [[a], {b: c}]\n---\nText.\n")


@pytest.mark.parametrize(
    "body, title",
    [
        ('# <span style="color: #333;">Set up store hours</span>\n\nText.\n', "Set up store hours"),
        ("# Orders &amp; returns: what&#39;s covered\n\nText.\n", "Orders & returns: what's covered"),
        ("# Ship&nbsp;to <b>PO</b> boxes <!-- TODO -->\n\nText.\n", "Ship to PO boxes"),
        ("# Write `&amp;` and `<br>` *here*\n\nText.\n", "Write &amp; and <br> here"),  # code as written
        ("# 1\\. Before you start \\*\n\nText.\n", "1. Before you start *"),
        ("# a < b & c, Ads &notifications\n\nText.\n", "a < b & c, Ads &notifications"),  # no tag, no entity
        ('# <img src="logo.png">\n\nText.\n', "Refunds"),  # nothing shows: the file name's
    ],
)
def test_a_title_from_a_heading_reads_as_the_page_shows_it(body, title):
    """A converter's heading keeps raw HTML and entities; the title (the page's <title>, the h1, the
    suggestion) is the heading's text as rendered, not its source."""
    assert parse(body).title == title


def test_a_raw_h1_is_the_title_when_there_is_no_heading():
    """A Zendesk body keeps its <h1>; without it the title was the file name, Zendesk's id included."""
    body = '<p>Help Center &gt; Shipping</p>\n<h1 class="article-title">Ship to PO boxes &amp; APO addresses</h1>\n<p>Text.</p>\n'
    assert parse(body, "shipping/360012345678-Ship-to-PO-boxes.md").title == "Ship to PO boxes & APO addresses"
    assert parse("<h1>Raw one</h1>\n\n# Markdown one\n\nText.\n").title == "Markdown one"  # a "# " heading first
    assert parse("```\n<h1>Code</h1>\n```\n\nText.\n", "guides/no-title.md").title == "No title"


def test_hidden_files_and_folders_are_not_articles(tmp_path):
    """Editors' lock files, scratch notes and tools' folders (.git, Obsidian's .trash) are not published."""
    kb = write_kb(
        tmp_path / "kb",
        {
            "refunds.md": "# Refunds\n\nText.\n",
            ".scratch.md": "# Salary bands\n\nPrivate.\n",
            ".trash/old.md": "# Old\n\nDeleted note.\n",
            "billing/.#refunds.md": "# Lock\n\nx\n",
        },
    )
    articles, warnings = load_kb(kb)
    assert [a.id for a in articles] == ["refunds"] and warnings == []


def test_load_kb_applies_the_default_locale(tmp_path):
    kb = write_kb(tmp_path / "kb", {"a.md": "# A\n\nText.\n", "b.md": "---\nlocale: ko\n---\n# B\n\n본문.\n"})
    articles, _ = load_kb(kb, default_locale="fr")
    assert {a.id: a.locale for a in articles} == {"a": "fr", "b": "ko"}


def test_malformed_files_are_skipped_with_a_warning_naming_the_file(tmp_path, caplog):
    bad = {
        "bad/yaml.md": "---\ntitle: [oops\n---\n# T\n\nText.\n",
        "bad/latin1.md": "# Caf\u00e9 cr\u00e8me\n\nText.\n".encode("latin-1"),
        "bad/empty.md": "",
        "bad/unclosed.md": "---\ntitle: never closed\n\n# T\n\nText.\n",
        "zz-dup/second.md": "---\nid: good/one\n---\n# Same id\n\nText.\n",
    }
    good = {
        "good/one.md": "# Good one\n\nText.\n",
        "good/two.md": "---\ntitle: Good two\n---\nText.\n",
        "ko/guide.md": "---\nlocale: ko\n---\n# 안내\n\n본문입니다.\n",
    }
    kb = write_kb(tmp_path / "kb", {**bad, **good})
    with caplog.at_level(logging.WARNING, logger="deflect.articles"):
        articles, warnings = load_kb(kb)
    assert sorted(a.path for a in articles) == sorted(good)
    assert len(warnings) == len(bad)
    for rel in bad:
        matching = [w for w in warnings if rel in w]
        assert len(matching) == 1, (rel, warnings)
        assert rel in caplog.text
    duplicate = next(w for w in warnings if "zz-dup/second.md" in w)
    assert "good/one" in duplicate


DUPLICATE_KB = {
    "billing/refunds.md": "# How refunds work\n\nWe refund annual plans within 30 days.\n",
    "account/aaa-dup.md": "---\nid: billing/refunds\n---\n# A newcomer with the same id\n\nText.\n",
}


def test_the_file_that_held_an_id_keeps_it_against_a_newcomer(tmp_path, caplog):
    kb = write_kb(tmp_path / "kb", DUPLICATE_KB)
    with caplog.at_level(logging.WARNING, logger="deflect.articles"):
        articles, warnings = load_kb(kb, id_holders={"billing/refunds": "billing/refunds.md"})
    assert [(a.id, a.path) for a in articles] == [("billing/refunds", "billing/refunds.md")]
    assert warnings == ["account/aaa-dup.md: skipped: id 'billing/refunds' already used by billing/refunds.md"]
    assert "account/aaa-dup.md: skipped" in caplog.text


def test_without_a_previous_holder_path_order_decides_a_duplicate_id(tmp_path):
    kb = write_kb(tmp_path / "kb", DUPLICATE_KB)
    for holders in (None, {"billing/refunds": "billing/gone.md"}):  # fresh build; holder deleted
        articles, warnings = load_kb(kb, id_holders=holders)
        assert [a.path for a in articles] == ["account/aaa-dup.md"]
        assert warnings == ["billing/refunds.md: skipped: id 'billing/refunds' already used by account/aaa-dup.md"]


def test_markdown_suffixes_are_read_like_md(tmp_path):
    """.markdown files (any case) are articles, as they are for the KB watcher."""
    from deflect.watcher import is_relevant

    kb = write_kb(
        tmp_path / "kb",
        {
            "a.md": "# A\n\nText.\n",
            "guides/b.markdown": "# B\n\nText.\n",
            "C.MD": "# C\n\nText.\n",
            "notes.txt": "not an article",
            "d.md.bak": "# a backup\n\nText.\n",
        },
    )
    (kb / "folder.md").mkdir()  # a folder named like an article is not one
    articles, warnings = load_kb(kb)
    assert warnings == []
    assert sorted((a.id, a.path) for a in articles) == [("C", "C.MD"), ("a", "a.md"), ("guides/b", "guides/b.markdown")]
    assert articles[[a.path for a in articles].index("guides/b.markdown")].url == "/articles/guides/b"
    read = {a.path for a in articles}
    for name in ("a.md", "guides/b.markdown", "C.MD", "notes.txt", "d.md.bak"):
        assert is_relevant("modified", False, [str(kb / name)]) == (name in read), name


def test_the_same_id_from_md_and_markdown_is_a_duplicate(tmp_path):
    kb = write_kb(tmp_path / "kb", {"faq.md": "# One\n\nText.\n", "faq.markdown": "# Two\n\nText.\n"})
    articles, warnings = load_kb(kb)
    assert len(articles) == 1 and len(warnings) == 1 and "already used by" in warnings[0]


def test_warnings_already_reported_are_returned_but_not_logged_again(tmp_path, caplog):
    kb = write_kb(tmp_path / "kb", {"good.md": "# Good\n\nText.\n", "bad.md": "---\ntitle: [oops\n---\nText.\n"})
    with caplog.at_level(logging.WARNING, logger="deflect.articles"):
        _, first = load_kb(kb)
        assert "bad.md: skipped" in caplog.text
        caplog.clear()
        _, again = load_kb(kb, reported=first)
        assert again == first and caplog.text == ""  # same file, same reason: not logged again
        (kb / "bad.md").write_text("", encoding="utf-8")
        _, changed = load_kb(kb, reported=first)
    assert changed == ["bad.md: skipped: empty file"]
    assert caplog.text.count("bad.md: skipped: empty file") == 1  # the reason changed: logged


def test_missing_kb_folder_is_a_warning_not_a_crash(tmp_path):
    articles, warnings = load_kb(tmp_path / "nope")
    assert articles == [] and len(warnings) == 1 and "nope" in warnings[0]


def test_korean_articles_parse(tmp_path):
    raw = (SAMPLE_KB / "ko" / "reset-password.md").read_bytes()
    article = parse_article(raw, "ko/reset-password.md")
    assert article.locale == "ko"
    assert article.id == "ko/reset-password"
    assert any(0xAC00 <= ord(c) <= 0xD7AF for c in article.title)
    sections = [p for p in article.passages if p.kind == "section"]
    assert len(sections) >= 2
    assert all(any(0xAC00 <= ord(c) <= 0xD7AF for c in s.snippet) for s in sections)
    # A Korean article without front matter takes its title from its heading.
    kb = write_kb(
        tmp_path / "kb", {"ko/faq.md": "# 자주 묻는 질문\n\n## 결제\n\n카드 결제가 실패하면 다시 시도하세요.\n"}
    )
    articles, warnings = load_kb(kb, default_locale="ko")
    assert warnings == []
    assert articles[0].title == "자주 묻는 질문" and articles[0].locale == "ko"


def test_sample_kb_loads_without_warnings():
    articles, warnings = load_kb(SAMPLE_KB)
    assert warnings == []
    assert len(articles) == len([p for p in SAMPLE_KB.rglob("*") if p.suffix in (".md", ".markdown")])
    assert len({a.id for a in articles}) == len(articles)
    assert all(a.title and a.passages and a.passages[0].kind == "title" for a in articles)


# --- HTML rendering ------------------------------------------------------------------


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def _elements(markup: str) -> list[tuple[str, dict]]:
    collector = _Collector()
    collector.feed(markup)
    return collector.tags


def _assert_safe(markup: str) -> None:
    for tag, attrs in _elements(markup):
        assert tag not in ("script", "iframe", "object", "embed", "style"), markup
        for name, value in attrs.items():
            assert not name.lower().startswith("on"), markup
            if name in ("href", "src") and value:
                # What a browser sees: entities decoded, control characters and spaces dropped.
                url = "".join(c for c in html.unescape(value) if ord(c) > 0x20).lower()
                assert not url.startswith(("javascript:", "vbscript:", "data:")), markup


def test_render_html_renders_markdown():
    markup = render_html(
        "# Title\n\nSome **bold** and a [link](https://example.com/x).\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    tags = [t for t, _ in _elements(markup)]
    assert "h1" in tags and "strong" in tags and "table" in tags
    assert ("a", {"href": "https://example.com/x"}) in _elements(markup)


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert(1)</script>",
        "Hello <script>alert(document.cookie)</script> world",
        '<img src="x" onerror="alert(1)">',
        '<div onmouseover="alert(1)">hover</div>',
        '<a href="javascript:alert(1)">raw link</a>',
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "[click]( javascript:alert(1))",
        "![img](javascript:alert(1))",
        "[click](vbscript:msgbox(1))",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[ref link][r]\n\n[r]: javascript:alert(1)",
        '<iframe src="https://evil.test"></iframe>',
    ],
)
def test_render_html_neutralises_script(source):
    markup = render_html(source)
    _assert_safe(markup)
    assert "<script" not in markup.lower()


@pytest.mark.parametrize(
    "source",
    [
        "[click](&#106;avascript:alert(1))",
        "[click](&#x6A;avascript:alert(1))",
        "[click](javascript&colon;alert(1))",
        "[click](java&#x09;script:alert(1))",
    ],
)
def test_render_html_neutralises_entity_encoded_javascript_links(source):
    """A browser decodes character references in href before looking at the scheme."""
    _assert_safe(render_html(source))


def test_render_html_keeps_ordinary_links_and_text():
    markup = render_html("Write to [support](mailto:help@example.com) or see [docs](/articles/a) & more <3")
    hrefs = [attrs.get("href") for tag, attrs in _elements(markup) if tag == "a"]
    assert hrefs == ["mailto:help@example.com", "/articles/a"]
    assert "&amp; more &lt;3" in markup


@pytest.mark.parametrize("url", ["javascript:alert(1)", " JaVaScRiPt:alert(1)", "data:text/html,<script>x</script>"])
def test_a_scriptable_url_in_front_matter_falls_back_to_the_article_page(url, caplog):
    raw = f"---\nurl: {json.dumps(url)}\n---\n# Refunds\n\nBody.\n".encode()
    article = parse_article(raw, "billing/refunds.md")
    assert article.url == "/articles/billing/refunds"
    assert "billing/refunds.md" in caplog.text


@pytest.mark.parametrize(
    "front_matter, warning",
    [
        # line 1 is the opening ---, so the front matter's first key is line 2
        ("title: [broken\nid: x", "line 3: expected ',' or ']', but got ':' (while parsing a flow sequence opened on line 2)"),
        ("locale: en\ntitle: a: b", "line 3: mapping values are not allowed here"),
    ],
)
def test_a_yaml_mistake_is_reported_with_its_line_in_the_file(tmp_path, front_matter, warning):
    kb = write_kb(tmp_path / "kb", {"faq/bad.md": f"---\n{front_matter}\n---\n# Bad\n\nText.\n"})
    articles, warnings = load_kb(kb)
    assert articles == [] and warnings == [f"faq/bad.md: skipped: bad YAML front matter, {warning}"]


@pytest.mark.parametrize(
    "markdown_text, expected",
    [
        # Markdown renders a number inside a hard-wrapped paragraph as prose: it stays
        ("Fixed in the release of version\n4. Update the app to get it.", "Fixed in the release of version 4. Update the app to get it."),
        ("Steps:\n\n1. Open Settings\n2. Click Export\n   (takes a minute)\n3. Wait\n\nThen\n10. stays", "Steps: Open Settings Click Export (takes a minute) Wait Then 10. stays"),
        ("## Export\n1. Open Settings\n2. Click Export", "Export Open Settings Click Export"),
        ("- a\n- b\n\n2) c", "a b c"),
        # a list right after a line renders as a list (a bullet or "1." may start one there)
        ("To export:\n1. Open Settings\n2. Click Export", "To export: Open Settings Click Export"),
        ("Before you cancel:\n- Export\n2. then this", "Before you cancel: Export then this"),
    ],
)
def test_list_numbers_are_dropped_but_numbers_in_prose_are_kept(markdown_text, expected):
    assert plain_text(markdown_text) == expected


@pytest.mark.parametrize(
    "markdown_text, expected",
    [
        ('Read [the guide][g] first.\n\n[g]: https://example.com/wolverine-guide "Guide"', "Read the guide first."),
        ("See [Refunds][] and [billing].\n\n[refunds]: ../billing/refunds.md\n[Billing]: <billing.md>", "See Refunds and billing."),
        ("![The export menu][shot] opens.\n[shot]: images/export.png", "The export menu opens."),
        # not links: an undefined [label], a footnote, a checkbox-like bracket
        ("Press [Enter] to send.", "Press [Enter] to send."),
        ("A note[^1].\n\n[^1]: The footnote.\n[x]: https://x", "A note. The footnote."),  # a footnote, not a link: its text without markers
    ],
)
def test_reference_style_links_read_as_their_words(markdown_text, expected):
    assert plain_text(markdown_text) == expected


def test_a_reference_link_reads_as_its_words_whichever_section_defines_it(tmp_path):
    body = ("# Guides\n\n## Setup\n\nRead [the guide][g] for more.\n\n- Check [the export page][exp] for details\n\n"
            "Use matrix[0][1] as is.\n\n## Links\n\n[g]: https://example.com/wolverine-guide\n[exp]: <https://example.com/x>\n")
    kb = write_kb(tmp_path / "kb", {"faq/ref.md": body})
    [article], _ = load_kb(kb)
    texts = [p.text for p in article.passages] + [p.snippet for p in article.passages]
    assert not any("wolverine" in t or "[g]" in t or "[exp]" in t for t in texts), texts
    assert "Guides. Setup: Read the guide for more. Check the export page for details Use matrix[0][1] as is." in texts
    assert "Check the export page for details" in [p.text for p in article.passages if p.kind == "item"]


def test_a_table_becomes_one_readable_line_per_row_with_its_column_names():
    body = (
        "Prices:\n\n| | Free | Team |\n|---|:---:|---|\n| Price | $0 | $8/user/month |\n| Guests | – | 2 per member |\n"
        "| Seats | | 10 |\n\n"
        "| Shortcut | Action |\n|---|---|\n| `Ctrl+K` | Open the command menu |\n| `/` | Search |\n"
    )
    text = plain_text(body)
    assert "|" not in text and "---" not in text
    assert "Price: Free $0; Team $8/user/month. Guests: Free –; Team 2 per member. Seats: Team 10." in text
    assert "Shortcut, Action. Ctrl+K: Open the command menu. /: Search." in text


def test_pipes_without_a_delimiter_row_are_prose():
    assert plain_text("Use a | b in the filter box.") == "Use a | b in the filter box."


def test_two_articles_titled_alike_are_warned_about_once_per_later_file(tmp_path):
    """Two "Overview" pages (a help-centre export has many) would be offered side by side, alike."""
    kb = write_kb(
        tmp_path / "kb",
        {
            "billing/overview.md": "# Overview\n\nBilling in short.\n",
            "team/overview.md": "---\ntitle: '  overview '\n---\nTeams in short.\n",
            "ko/overview.md": "---\nlocale: ko\n---\n# Overview\n\n개요.\n",  # another language: its own list
            "x/other.md": "# Another page\n\nText.\n",
        },
    )
    articles, warnings = load_kb(kb)
    assert len(articles) == 4
    assert warnings == [
        "team/overview.md: title 'overview' is also that of billing/overview.md; suggestions would show two alike"
    ]


def test_titles_alike_in_one_language_are_warned_whatever_the_region(tmp_path):
    """A Zendesk export's en-us and an article without a locale (en) are offered to the same searcher:
    alike titles are warned about across regions of a language, not across languages."""
    kb = write_kb(
        tmp_path / "kb",
        {
            "helpscout/pos/reset-password.md": "# How do I reset my password?\n\nOn the POS.\n",
            "zendesk/360-reset.md": "---\nlocale: en-us\n---\n# How do I reset my password?\n\nOnline.\n",
            "zendesk/361-reset-gb.md": "---\nlocale: en_GB\n---\n# How do I reset my password?\n\nIn the UK.\n",
            "ko/reset.md": "---\nlocale: ko-KR\n---\n# How do I reset my password?\n\n한국어.\n",
        },
    )
    articles, warnings = load_kb(kb)
    assert len(articles) == 4
    assert warnings == [
        f"zendesk/{name}: title 'How do I reset my password?' is also that of helpscout/pos/reset-password.md; "
        "suggestions would show two alike"
        for name in ("360-reset.md", "361-reset-gb.md")
    ]


@pytest.mark.parametrize(
    "name, title",
    [("reset-password", "Reset password"), ("two_factor-auth", "Two factor auth"), ("iOS-setup", "iOS setup"),
     ("SSO_login", "SSO login"), ("Download an INVOICE", "Download an INVOICE"), ("2fa-codes", "2fa codes"),
     ("환불-정책", "환불 정책")],
)
def test_a_title_from_the_file_name_reads_as_a_writer_types_one(tmp_path, name, title):
    """Without a title or a "# " heading, the file name is the title, with a capital as a writer gives one."""
    kb = write_kb(tmp_path / "kb", {f"guides/{name}.md": "Only a paragraph, no heading.\n"})
    (article,), _ = load_kb(kb)
    assert article.title == title
