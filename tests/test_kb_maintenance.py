"""A KB kept up by writers over weeks: symlinks, oversize files, "Related articles" lists, a typo in a
live article's front matter, mistyped front-matter keys (notes/personas/kbwriter.md items 1, 2, 4, 5, 10).

Real model and real faiss, as everywhere; tiny KBs written into tmp_path.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import requests
from conftest import ADMIN_TOKEN, SAMPLE_KB, TINY_KB, write_kb

from deflect.articles import parse_article
from deflect.index import build_index
from deflect.kb_folder import load_kb
from deflect.passages import split_passages, without_link_items

MODEL_ID = "bundled-test-model"


def build(kb, index_dir, embedder, **kwargs):
    return build_index(kb, index_dir, embedder, MODEL_ID, **kwargs)


def ids(index) -> set[str]:
    return {a["id"] for a in index.articles}


# --- symlinks (report item 2) ---------------------------------------------------------------


@pytest.fixture
def linked_kb(tmp_path) -> Path:
    """A KB with symlinks: to files outside it, to a hidden file inside it, to an article inside it,
    and a folder symlinked to a private folder outside it."""
    kb = write_kb(tmp_path / "kb", TINY_KB | {".git/secret-config": "[remote]\ntoken = hunter2\n"})
    private = write_kb(tmp_path / "private", {"secret.md": "# Secret\n\nThe admin token is hunter2.\n"})
    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    os.symlink(tmp_path / "os-release", kb / "account" / "os-release.md")  # absolute, outside
    os.symlink("../../private/secret.md", kb / "account" / "secret.md")  # relative, outside
    os.symlink("../.git/secret-config", kb / "account" / "config.md")  # inside kb_dir, but hidden
    os.symlink("refunds.md", kb / "billing" / "money-back.md")  # inside: fine
    os.symlink(private, kb / "private-notes")  # a folder that leaves kb_dir
    return kb


def test_a_symlink_that_leaves_the_kb_is_skipped_with_a_warning_naming_it(linked_kb, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="deflect.kb_folder"):
        articles, warnings = load_kb(linked_kb)
    paths = {a.path for a in articles}
    assert "account/os-release.md" not in paths and "account/secret.md" not in paths
    assert "account/config.md" not in paths  # a hidden file inside kb_dir is not published either
    assert not any("hunter2" in a.body or "PRETTY_NAME" in a.body for a in articles)
    assert "billing/money-back.md" in paths  # a symlink that stays inside keeps working
    by_file = {w.split(":", 1)[0]: w for w in warnings}
    assert by_file["account/os-release.md"].startswith(
        "account/os-release.md: skipped: a symlink that leads outside the KB folder or to a hidden file (to "
    )
    assert str(tmp_path / "os-release") in by_file["account/os-release.md"]
    assert "skipped: a symlink" in by_file["account/secret.md"] and "skipped: a symlink" in by_file["account/config.md"]
    assert by_file["private-notes/"].startswith("private-notes/: skipped: a symlinked folder that leads outside the KB folder")
    assert "billing/money-back.md" not in by_file  # no warning, except the shared title it has with refunds.md
    for name in ("account/os-release.md", "account/secret.md", "account/config.md", "private-notes/"):
        assert name in caplog.text


def test_a_symlink_that_leaves_the_kb_is_listed_by_every_build_and_never_served(linked_kb, tmp_path, embedder):
    """What POST /api/reindex and `deflect index` list is BuildReport.warnings; a file that was
    published before and is replaced by such a symlink is unpublished, not kept."""
    index_dir = tmp_path / "index"
    index, report = build(linked_kb, index_dir, embedder)
    assert "account/os-release" not in ids(index) and "billing/money-back" in ids(index)
    skipped = [w for w in report.warnings if ": skipped: " in w]
    assert len(skipped) == 4 and "4 files skipped" in report.summary()
    _, again = build(linked_kb, index_dir, embedder)
    assert again.warnings == report.warnings  # listed until fixed
    slack = linked_kb / "integrations" / "slack.md"
    slack.unlink()
    os.symlink(tmp_path / "os-release", slack)
    index, report = build(linked_kb, index_dir, embedder)
    assert "integrations/slack" not in ids(index)
    assert any(w.startswith("integrations/slack.md: skipped: a symlink") for w in report.warnings)


def test_the_api_reindex_lists_a_symlink_that_leaves_the_kb(served, tiny_kb, tmp_path):
    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian"\n')
    os.symlink(tmp_path / "os-release", tiny_kb / "account" / "os-release.md")
    base, _ = served()
    assert requests.get(base + "/api/articles/account/os-release", timeout=30).status_code == 404
    reply = requests.post(base + "/api/reindex", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120)
    assert reply.status_code == 200, reply.text
    assert any(w.startswith("account/os-release.md: skipped: a symlink") for w in reply.json()["warnings"])


# --- oversize files (report item 5) -----------------------------------------------------------


def test_an_article_over_max_article_bytes_is_skipped_naming_the_file_and_its_size(tmp_path, caplog):
    huge = "# A whole manual\n\n" + "Slack calendar reminders tasks and projects. " * 12_000  # 540 KB
    kb = write_kb(tmp_path / "kb", TINY_KB | {"malformed/huge.md": huge})
    with caplog.at_level(logging.WARNING, logger="deflect.kb_folder"):
        articles, warnings = load_kb(kb)  # the default bound, 500 KB
    assert "malformed/huge.md" not in {a.path for a in articles} and len(articles) == 3
    assert warnings == [
        "malformed/huge.md: skipped: 540 KB (540,018 bytes), over the 500 KB (500,000 bytes) an article may "
        "have (setting max_article_bytes): split it into articles of their own"
    ]
    assert warnings[0] in caplog.text
    articles, warnings = load_kb(kb, max_article_bytes=100)  # every file over the bound, however small
    assert articles == [] and all("skipped: " in w and "over the 100 bytes" in w for w in warnings)
    articles, warnings = load_kb(kb, max_article_bytes=0)  # 0: no bound
    assert len(articles) == 4 and warnings == []


def test_the_setting_max_article_bytes_bounds_what_the_index_embeds(settings_factory, tmp_path, embedder):
    from deflect.refresh import refresh_index
    from deflect.settings import load_settings

    kb = write_kb(tmp_path / "kb", TINY_KB | {"big.md": "# Big\n\n" + "Export your tasks to CSV. " * 200})
    index, report = refresh_index(settings_factory(kb_dir=str(kb), max_article_bytes=4000))
    assert "big" not in ids(index) and len(index.articles) == 3
    assert [w.split(":")[0] for w in report.warnings] == ["big.md"] and "1 file skipped" in report.summary()
    index, report = refresh_index(settings_factory(kb_dir=str(kb), max_article_bytes=10_000))  # raised: read now
    assert "big" in ids(index) and report.added == ["big.md"] and report.warnings == []
    assert load_settings(config_file="none", env={"DEFLECT_MAX_ARTICLE_BYTES": "0"}).max_article_bytes == 0
    assert load_settings(config_file="none", env={}).max_article_bytes == 500_000


# --- "Related articles" lists (report item 1) -----------------------------------------------------

RELATED = """
## Related articles

- [Reset a forgotten password](../account/reset-password.md)
- [Lost your 2FA device](lost-2fa-device.md)
"""


def test_a_list_item_that_is_only_a_link_is_no_search_evidence():
    body = """# Two-factor authentication

Turn on 2FA in Settings.

- Use an authenticator app such as Authy
- [Lost your 2FA device?](lost-2fa-device.md) explains what to do without your phone
- [Billing](billing.md): invoices, refunds and taxes
""" + RELATED + """* **[Recovery codes](codes.md)** · [Sessions][s]
1. <a href="x.md">Turn off 2FA</a>
- https://status.example.com
- [Guide to security keys](keys.md)
  and how to register one
- [Fees and limits](#fees)

[s]: sessions.md
"""
    passages = split_passages("Two-factor authentication", body)
    text = " ".join(p.text for p in passages)
    for gone in ("Reset a forgotten password", "Lost your 2FA device ", "Recovery codes", "Sessions", "Turn off 2FA",
                 "status.example.com"):
        assert gone not in text, gone
    # A section of such items only is no passage at all: its heading is no evidence either.
    assert [p.text for p in split_passages("T", "Intro text.\n" + RELATED)] == ["T", "T. Intro text."]
    items = [p.text for p in passages if p.kind == "item"]
    assert items == [
        "Use an authenticator app such as Authy",
        "Lost your 2FA device? explains what to do without your phone",  # words of its own: kept
        "Billing: invoices, refunds and taxes",
        "Guide to security keys",  # its continuation line makes it more than a link: kept
        "Fees and limits",  # a link into this very article: its own words
    ]
    assert "and how to register one" in text
    in_code = "Text.\n\n```\n- [Kept in code](x.md)\n```\n\n~~~\n* [Kept too](y.md)\n~~~\n- [Gone](z.md)\n"
    assert without_link_items(in_code) == in_code.replace("- [Gone](z.md)\n", "")
    # An article without such a list reads exactly as before.
    plain = "# Refunds\n\nWe refund annual plans.\n\n- Can I get my money back?\n- [x] Ask [support](s.md) for it\n"
    assert [p.text for p in split_passages("Refunds", plain)] == [
        "Refunds", "Refunds. We refund annual plans. Can I get my money back? Ask support for it",
        "Can I get my money back?", "Ask support for it",
    ]  # fmt: skip


def test_a_related_articles_list_does_not_win_the_linked_articles_questions(settings_factory, tmp_path):
    """The report's case on the sample KB's own articles: a footer linking to lost-2fa-device and
    reset-password made the 2FA setup article the confident answer to "I lost my 2FA device"."""
    from deflect.runtime import Runtime

    kb = tmp_path / "kb"
    for folder in ("privacy", "account"):
        shutil.copytree(SAMPLE_KB / folder, kb / folder)
    with (kb / "privacy" / "two-factor-authentication.md").open("a") as fh:
        fh.write(RELATED)
    runtime = Runtime(settings_factory(kb_dir=str(kb)), sync=False)
    try:
        for query, expected in (("I lost my 2FA device", "privacy/lost-2fa-device"), ("reset password", "account/reset-password")):
            results = runtime.engine.suggest(query, k=3, types=("article",)).results
            assert results[0].id == expected, (query, [(r.id, r.score) for r in results])
            others = {r.id: r.score for r in results[1:]}
            assert others.get("privacy/two-factor-authentication", 0) < 0.5 * results[0].score, (query, others)
    finally:
        runtime.close()
        runtime.db.dispose()


# --- a typo in a live article's front matter (report item 4) ----------------------------------------


def test_a_published_article_that_becomes_malformed_keeps_its_last_good_version(tmp_path, embedder, caplog):
    import deflect.index_folder as index_folder

    kb = write_kb(tmp_path / "kb", TINY_KB)
    index_dir = tmp_path / "index"
    refunds = kb / "billing" / "refunds.md"
    good = refunds.read_text()
    first, _ = build(kb, index_dir, embedder)
    refunds.write_text("---\ntitle: Refunds: policy and requests\n---\n" + good)  # the commonest YAML mistake
    with caplog.at_level(logging.WARNING, logger="deflect.kb_folder"):
        index, report = build(kb, index_dir, embedder)
    expected = (
        "billing/refunds.md: not updated: bad YAML front matter, line 2: mapping values are not allowed here; "
        "its last good version stays published until the file is fixed (or deleted)"
    )
    assert report.warnings == [expected] and caplog.text.count(expected) == 1
    assert "1 unreadable file kept at its last good version" in report.summary()
    assert "billing/refunds" in ids(index) and index.bodies["billing/refunds"] == good
    assert not report.changed_anything and index.version == first.version  # nothing re-embedded, same version
    index_folder._LIVE.clear()  # another process (`deflect index`, a restart): from the saved index
    index, report = build(kb, index_dir, embedder)
    assert "billing/refunds" in ids(index) and report.warnings == [expected] and report.embedded_passages == 0
    refunds.write_text("---\ntitle: 'Refunds: policy and requests'\n---\n" + good)  # fixed
    index, report = build(kb, index_dir, embedder)
    assert report.changed == ["billing/refunds.md"] and report.warnings == []
    assert {a["id"]: a["title"] for a in index.articles}["billing/refunds"] == "Refunds: policy and requests"


def test_a_malformed_file_never_published_or_rebuilt_from_scratch_is_skipped(tmp_path, embedder):
    kb = write_kb(tmp_path / "kb", TINY_KB | {"new.md": "---\ntitle: New: broken\n---\nText.\n"})
    index, report = build(kb, tmp_path / "index", embedder)
    assert "new" not in ids(index) and report.warnings[0].startswith("new.md: skipped: bad YAML")
    # A full rebuild (another model here) has no last good version to keep.
    build(kb, tmp_path / "index2", embedder)
    (kb / "billing" / "refunds.md").write_text("---\ndraft: maybe\n---\nText.\n")
    index, report = build_index(kb, tmp_path / "index2", embedder, "another-model")
    assert report.rebuilt and "billing/refunds" not in ids(index)
    assert "billing/refunds.md: skipped: draft must be true or false" in report.warnings


def test_a_kept_article_is_still_served_and_suggested(served, tiny_kb):
    base, runtime = served()
    path = tiny_kb / "billing" / "refunds.md"
    path.write_text("---\ntitle: Refunds: policy\n---\n" + path.read_text())
    reply = requests.post(base + "/api/reindex", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120)
    assert reply.status_code == 200, reply.text
    assert [w.split(":")[0:2] for w in reply.json()["warnings"]] == [["billing/refunds.md", " not updated"]]
    assert requests.get(base + "/articles/billing/refunds", timeout=30).status_code == 200
    top = requests.post(base + "/api/suggest", json={"query": "can I get my money back"}, timeout=30).json()
    assert top["results"][0]["id"] == "billing/refunds"


# --- front-matter keys deflect does not read (report item 10) -----------------------------------------


def test_an_unknown_front_matter_key_is_listed_by_every_build_until_fixed(tmp_path, embedder, caplog):
    kb = write_kb(
        tmp_path / "kb",
        TINY_KB | {"malformed/draf-typo.md": "---\ndraf: true\ntranslation_of: x\n---\n# Time travel\n\nSecret feature.\n"},
    )
    expected = [
        "malformed/draf-typo.md: front matter key 'draf' ignored: a typo of 'draft'?",
        "front matter key 'translation_of' ignored in 1 file (malformed/draf-typo.md); deflect reads id, title, "
        "locale, tags, url, draft",
    ]
    index_dir = tmp_path / "index"
    with caplog.at_level(logging.WARNING, logger="deflect.kb_folder"):
        index, report = build(kb, index_dir, embedder)
        _, again = build(kb, index_dir, embedder)  # the same version: listed, not logged again
    assert "malformed/draf-typo" in ids(index)  # ignored, as before: the article is published
    assert report.warnings == again.warnings == expected and all(caplog.text.count(w) == 1 for w in expected)
    assert report.summary().endswith(", 1 warning, 1 front-matter key not read")  # the typo is a problem
    import deflect.index_folder as index_folder

    index_folder._LIVE.clear()  # another process: the warning is kept in the index for an unchanged file
    _, report = build(kb, index_dir, embedder)
    assert report.warnings == expected
    (kb / "malformed" / "draf-typo.md").write_text("---\ndraft: true\n---\n# Time travel\n\nSecret feature.\n")
    index, report = build(kb, index_dir, embedder)
    assert "malformed/draf-typo" not in ids(index) and report.warnings == []


def test_unknown_keys_are_warnings_of_the_article():
    article = parse_article(b"---\nAuthor: Ana\n---\n# T\n\nText.\n", "a.md")
    assert article.warnings == ("front matter key 'Author' ignored; deflect reads id, title, locale, tags, url, draft",)


# --- a help centre's export: keys deflect does not read, content not public there (s20 writer 1, 7) ---


def _export_article(n: int, extra: str = "") -> str:
    return (
        f"---\ntitle: Article {n}\nsection_id: 3600{n}\nauthor: Dev Patel\nlocale: en-us\n{extra}---\n"
        f"# Article {n}\n\nHow to do thing number {n} in the store admin.\n"
    )


def test_keys_an_export_has_in_every_file_are_one_warning_each_and_not_counted_as_problems(tmp_path, embedder, caplog):
    """A converted Zendesk export has a dozen keys deflect does not read in every file: one warning per
    key (how many files, the first one), after the per-file ones, so a skipped file stands out; the
    build's "N warnings" counts what a writer must act on, not these."""
    files = {f"3600-Orders/3600{n:02}-Article.md": _export_article(n) for n in range(12)}
    files["3600-Orders/360099-Broken.md"] = "---\ntitle: Broken: colon\n---\nText.\n"
    files["3600-Orders/360098-Author.md"] = "---\nAuthor: Ana\n---\n# Last\n\nText.\n"  # any case: one key
    kb = write_kb(tmp_path / "kb", files)
    with caplog.at_level(logging.WARNING, logger="deflect.kb_folder"):
        index, report = build(kb, tmp_path / "index", embedder)
    assert len(index.articles) == 13
    assert report.warnings == [
        "3600-Orders/360099-Broken.md: skipped: bad YAML front matter, line 2: mapping values are not allowed here",
        "front matter key 'author' ignored in 13 files (the first: 3600-Orders/360000-Article.md); deflect reads "
        "id, title, locale, tags, url, draft",
        "front matter key 'section_id' ignored in 12 files (the first: 3600-Orders/360000-Article.md); deflect "
        "reads id, title, locale, tags, url, draft",
    ]
    assert [r.getMessage() for r in caplog.records] == report.warnings  # logged once each, not per file
    assert report.summary().endswith("passages embedded (full rebuild), 1 file skipped, 2 front-matter keys not read")


def test_content_not_public_in_the_source_is_published_with_a_loud_warning(tmp_path, embedder):
    """Help Scout's status: notpublished and Zendesk's agents-only user segment are not read (DESIGN
    section 2 has only draft), so the article is published: each file says so and how to hold it back,
    counted as a warning; the same keys saying "public" or on a draft are no problem."""
    kb = write_kb(
        tmp_path / "kb",
        {
            "helpscout/pos/card-reader.md": "---\ntitle: Card reader\nstatus: notpublished\nslug: card-reader\n---\nPair it.\n",
            "helpscout/pos/printer.md": "---\ntitle: Printer\nstatus: published\n---\nConnect it.\n",
            "zendesk/refund-override.md": '---\ntitle: Refund override\nuser_segment: "Agents and admins"\n---\nAgents only.\n',
            "zendesk/refunds.md": "---\ntitle: Refunds\nuser_segment: Everyone\n---\nWithin 14 days.\n",
            "zendesk/capital.md": "---\ntitle: Capital\nuser_segment: Agents and admins\ndraft: true\n---\nLoans.\n",
            "wiki/macro.md": "---\ntitle: Macro\nInternal: true\nvisibility: internal\n---\nSecret macro.\n",
        },
    )
    index, report = build(kb, tmp_path / "index", embedder)
    assert ids(index) == {
        "helpscout/pos/card-reader", "helpscout/pos/printer", "wiki/macro", "zendesk/refund-override", "zendesk/refunds"
    }  # only draft: true holds an article back, as before
    hold = "marks it not public in the source; add draft: true to hold it back"
    assert [w for w in report.warnings if hold in w] == [
        f"helpscout/pos/card-reader.md: published by deflect although status: notpublished {hold}",
        f"wiki/macro.md: published by deflect although Internal: true {hold}",
        f"wiki/macro.md: published by deflect although visibility: internal {hold}",
        f"zendesk/refund-override.md: published by deflect although user_segment: Agents and admins {hold}",
    ]
    assert report.summary().endswith(", 4 warnings, 3 front-matter keys not read")  # slug, status, user_segment
    not_read = [w.split(" ignored in ")[0] for w in report.warnings if " ignored in " in w]
    # The most common first: user_segment on refunds.md (Everyone) and on the draft.
    assert not_read == ["front matter key 'user_segment'", "front matter key 'slug'", "front matter key 'status'"]


@pytest.mark.parametrize(
    ("key", "hint"),
    [("draf", "draft"), ("Titel", "title"), ("tag", "tags"), ("lcoale", "locale"), ("locael", "locale"), ("drfat", "draft")],
)
def test_a_likely_typo_of_a_key_is_named(key, hint):
    article = parse_article(f"---\n{key}: x\n---\nText.\n".encode(), "a.md")
    assert article.warnings == (f"front matter key {key!r} ignored: a typo of {hint!r}?",)


@pytest.mark.parametrize("key", ["status", "slug", "labels", "keywords", "date", "author", "uid", "site", "html_url", "scale"])
def test_a_key_merely_alike_is_not_called_a_typo(key):
    """difflib's 0.6 ratio called Help Scout's "status" a typo of "tags"; only a key one edit away is."""
    article = parse_article(f"---\n{key}: x\n---\nText.\n".encode(), "a.md")
    assert article.warnings == (f"front matter key {key!r} ignored; deflect reads id, title, locale, tags, url, draft",)
