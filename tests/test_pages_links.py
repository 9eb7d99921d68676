"""Links between articles and images next to them, on served pages over real HTTP; images kept inside kb_dir."""

from __future__ import annotations

import http.client
import os
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import requests
from conftest import SAMPLE_KB, TINY_KB, serve_app, write_kb
from pages_support import make_settings
from test_pages import Tags, assert_inert, get

PNG = (SAMPLE_KB / "billing" / "images" / "billing-history.png").read_bytes()
SECRET = b"\x89PNG not for readers"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><script>alert(1)</script></svg>'

LINKING = """---
title: Reset a forgotten password
---
# Reset a forgotten password

Click **Forgot password?** on the sign-in page.

Paid by mistake? [Ask for a refund](../billing/refunds.md), see [the fees](../billing/refunds.md#fees),
[change your email](change-email.md) or [connect Slack](../integrations/slack.md).
Old links: [gone](../billing/nothing.md), [outside](../../outside.md), [web](https://example.com/x.md),
[mail](mailto:help@example.com), [top](#top).

To reset it:
1. Open the sign-in page
2. Click Forgot password?
"""
REFUNDS = (
    TINY_KB["billing/refunds.md"] + "\n## Fees\n\nNo fees.\n\n![Billing page](images/billing.png)\n\n"
    "![Diagram](images/diagram.SVG) [The same page](images/alias.png) [Once more](images/leak.png)\n\n"
    "![Refunds by month](images/none.png)\n"
)
DRAFT = "---\ndraft: true\n---\n# Next month's prices\n\n![New prices](images/prices.png)\n"
KB_FILES: dict[str, str | bytes] = TINY_KB | {
    "account/reset-password.md": LINKING,
    "account/change-email.md": "---\nurl: https://help.example.com/change-email\n---\n# Change your email\n\nIn Settings.\n",
    "integrations/slack.md": "---\nid: slack\n---\n" + TINY_KB["integrations/slack.md"],
    "billing/refunds.md": REFUNDS,
    "billing/images/billing.png": PNG,
    "billing/images/diagram.SVG": SVG,
    "billing/images/.hidden.png": SECRET,
    "billing/draft-prices.md": DRAFT,
    "billing/images/prices.png": SECRET,  # shown by a draft only
    "billing/images/unused.png": SECRET,  # shown by no article
    ".drafts/secret.png": SECRET,
    "billing/notes.txt": "not an image",
    # Raw HTML (as exported by Zendesk) links and shows images as Markdown does; this image is used by no other article.
    "billing/raw-html.md": '<h1>Refund charts</h1>\n<p>See <a href="refunds.md#fees">the fees</a> and '
                           '<a href="gone.md">an old page</a>.</p>\n<p><img src="images/raw-only.png" alt="Raw chart">'
                           '<img src="images/none.png" alt="Gone chart"></p>\n',
    "billing/images/raw-only.png": PNG,
}
IMAGE = "/kb-images/billing/images/billing.png"


@pytest.fixture(scope="module")
def kb_site(tmp_path_factory):
    """deflect serving a small KB with links and images; next to the KB, files no reader may get."""
    from deflect.runtime import Runtime
    from deflect.web import create_app

    tmp = tmp_path_factory.mktemp("links")
    kb = write_kb(tmp / "kb", KB_FILES)
    (tmp / "outside.png").write_bytes(SECRET)
    os.symlink(tmp / "outside.png", kb / "billing" / "images" / "leak.png")
    os.symlink(tmp, kb / "billing" / "up")  # a folder symlink that leaves kb_dir
    os.symlink("billing.png", kb / "billing" / "images" / "alias.png")  # one that stays inside: fine
    runtime = Runtime(make_settings(tmp, kb, tmp / "index"))
    with serve_app(create_app(runtime.settings, runtime)) as base:
        yield base, tmp
    runtime.close()
    runtime.db.dispose()


def raw_get(base: str, path: str) -> tuple[int, str, bytes]:
    """GET with the path sent exactly as written (no client-side clean-up of ".." or %2e), following
    the server's own redirects ("//" is merged into "/" by a 308)."""
    parts = urlsplit(base)
    for _ in range(3):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            status, kind, body = response.status, response.getheader("Content-Type", ""), response.read()
            location = response.getheader("Location", "")
        finally:
            connection.close()
        if status not in (301, 302, 307, 308):
            break
        path = urlsplit(location).path
        assert path.startswith("/kb-images/"), location
    return status, kind, body


class Anchors(HTMLParser):
    """Each link's text -> its href (None when it has none)."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.links: dict[str, str | None] = {}
        self.open: list[str] | None = None
        self.href: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.open, self.href = [], dict(attrs).get("href")

    def handle_data(self, data):
        if self.open is not None:
            self.open.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self.open is not None:
            self.links["".join(self.open).strip()] = self.href
            self.open = None


def anchors(html: str) -> dict[str, str | None]:
    return Anchors(html).links


def test_relative_article_links_lead_to_the_articles(kb_site):
    base, _ = kb_site
    r = get(base, "/articles/account/reset-password")
    assert r.status_code == 200
    assert_inert(r.text)
    links = anchors(r.text)
    assert links["Ask for a refund"] == "/articles/billing/refunds"
    assert links["the fees"] == "/articles/billing/refunds#fees"  # the fragment is kept
    assert links["change your email"] == "https://help.example.com/change-email"  # its url front matter
    assert links["connect Slack"] == "/articles/slack"  # its id front matter
    refunds = get(base, links["Ask for a refund"])
    assert refunds.status_code == 200 and "How refunds work" in refunds.text
    assert '<h2 id="fees">Fees</h2>' in refunds.text  # where #fees lands
    assert get(base, "/api/articles/account/reset-password").json()["html"].count('href="/articles/billing/refunds') == 2


def test_links_that_lead_nowhere_stay_harmless_and_others_stay_as_written(kb_site):
    base, _ = kb_site
    links = anchors(get(base, "/articles/account/reset-password").text)
    assert links["gone"] is None and links["outside"] is None  # shown as their words, not as a 404
    assert links["web"] == "https://example.com/x.md"
    assert links["mail"] == "mailto:help@example.com"
    assert links["top"] == "#top"


def test_a_list_right_after_a_line_is_a_list_on_the_page(kb_site):
    base, _ = kb_site
    page = Tags(get(base, "/articles/account/reset-password").text)
    assert len(page.find("ol")) == 1 and len(page.find("li")) >= 2


def test_an_article_image_is_served_with_its_type(kb_site):
    base, _ = kb_site
    page = Tags(get(base, "/articles/billing/refunds").text)
    assert {"alt": "Billing page", "src": IMAGE} in page.find("img")
    r = get(base, IMAGE)
    assert r.status_code == 200 and r.content == PNG
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in r.headers["Content-Security-Policy"]
    assert get(base, "/kb-images/billing/images/alias.png").content == PNG  # a symlink inside kb_dir
    svg = get(base, "/kb-images/billing/images/diagram.SVG")
    assert svg.headers["Content-Type"].startswith("image/svg+xml")
    csp = svg.headers["Content-Security-Policy"]  # an SVG opened on its own runs nothing
    assert csp.startswith("default-src 'none'") and "sandbox" in csp and "script-src" not in csp


def test_a_missing_image_shows_its_alt_text_not_a_broken_image(kb_site):
    base, _ = kb_site
    page = get(base, "/articles/billing/refunds").text
    assert "none.png" not in page and "<span>Refunds by month</span>" in page
    assert "none.png" not in get(base, "/api/articles/billing/refunds").json()["html"]
    assert anchors(page)["Once more"] is None  # a link to an image that is not served (it leaves kb_dir): its words


def test_raw_html_links_and_images_resolve_and_are_served_as_markdown_ones(kb_site):
    base, _ = kb_site
    page = get(base, "/articles/billing/raw-html").text
    assert_inert(page)
    assert anchors(page)["the fees"] == "/articles/billing/refunds#fees" and anchors(page)["an old page"] is None
    assert {"src": "/kb-images/billing/images/raw-only.png", "alt": "Raw chart"} in Tags(page).find("img")
    assert "<span>Gone chart</span>" in page and "none.png" not in page
    image = get(base, "/kb-images/billing/images/raw-only.png")  # public: a published article shows it
    assert image.status_code == 200 and image.content == PNG


def test_a_raw_tags_link_is_read_from_its_own_attribute_not_from_inside_another():
    """`alt="x src=a.png"` is an alt text: a.png is neither shown (nor so made public) nor checked."""
    from deflect.links import references

    raw = ('<img alt="x src=a.png" src="b.png"> <a title="href=/evil" href=\'c.md\'>c</a> <IMG SRC=d.png> '
           '<a name=x>n</a> <img src="e&amp;f.png" src="g.png"> <img/src="h.png">')  # fmt: skip
    assert references(raw) == [(True, "b.png"), (False, "c.md"), (True, "d.png"), (True, "e&f.png"), (True, "h.png")]


@pytest.mark.parametrize(
    "path",
    [
        "/kb-images/../outside.png",
        "/kb-images/billing/../../outside.png",
        "/kb-images/%2e%2e/outside.png",
        "/kb-images/billing/%2E%2E/%2e%2e/outside.png",
        "/kb-images/billing%2f..%2f..%2foutside.png",
        "/kb-images/..%5coutside.png",
        "/kb-images/{tmp}/outside.png",  # absolute: "//" is merged into "/", then it is not in kb_dir
        "/kb-images/%2F{tmp}/outside.png",
        "/kb-images/%2F{tmp}%2Foutside.png",
        "/kb-images/billing/images/.hidden.png",
        "/kb-images/.drafts/secret.png",
        "/kb-images/billing/images/leak.png",  # a symlink to a file outside kb_dir, linked from an article
        "/kb-images/billing/images/prices.png",  # beside a draft: unpublished
        "/kb-images/billing/images/unused.png",  # no published article shows it
        "/kb-images/billing/up/outside.png",  # through a symlinked folder that leaves kb_dir
        "/kb-images/billing/notes.txt",
        "/kb-images/billing/refunds.md",
        "/kb-images/billing/images/missing.png",
        "/kb-images/billing/images/billing.png%00.txt",
    ],
)
def test_the_image_route_serves_nothing_else(kb_site, path):
    base, tmp = kb_site
    assert raw_get(base, IMAGE)[0] == 200  # the route is there, and serves images
    status, kind, body = raw_get(base, path.format(tmp=tmp))
    assert status == 404
    assert SECRET not in body and b"not an image" not in body
    assert kind.startswith("text/html") and b"We could not find that" in body


def test_kb_image_refuses_absolute_and_parent_paths_itself(kb_site):
    """The route never hands it such a name (see above); the core does not rely on that."""
    from deflect.links import kb_image

    _, tmp = kb_site
    assert kb_image(tmp / "kb", "billing/images/billing.png") is not None
    for name in (str(tmp / "outside.png"), "../outside.png", "billing/../../outside.png", "billing\\..\\x.png"):
        assert kb_image(tmp / "kb", name) is None, name


def test_the_sample_kb_shows_its_image_and_links_between_articles(live_server):
    page = Tags(get(live_server, "/articles/billing/invoices-receipts").text)
    (image,) = [a for a in page.find("img") if a.get("alt") == "Billing history"]
    assert image["src"] == "/kb-images/billing/images/billing-history.png"
    assert get(live_server, image["src"]).content == PNG
    links = anchors(get(live_server, "/articles/billing/update-payment-method").text)
    assert links["invoice"] == "/articles/billing/invoices-receipts#download-an-invoice"
    assert requests.get(live_server + links["invoice"], timeout=60).status_code == 200


def test_an_image_is_served_once_a_published_article_shows_it(tmp_path):
    from deflect.runtime import Runtime
    from deflect.web import create_app

    kb = write_kb(tmp_path / "kb", TINY_KB | {"billing/images/billing.png": PNG})
    runtime = Runtime(make_settings(tmp_path, kb, tmp_path / "index"))
    try:
        with serve_app(create_app(runtime.settings, runtime)) as base:
            assert raw_get(base, IMAGE)[0] == 404  # in kb_dir, but no article shows it yet
            (kb / "billing" / "refunds.md").write_text(REFUNDS, encoding="utf-8")
            runtime.reindex()
            status, _, body = raw_get(base, IMAGE)
            assert (status, body) == (200, PNG)
    finally:
        runtime.close()
        runtime.db.dispose()


def test_contact_support_leads_to_the_help_desk_the_settings_name(kb_site):
    """"Still stuck? Contact support" under an article goes to the demo form unless support_url names
    the deployment's own help desk (the demo form sends no ticket anywhere)."""
    from deflect.errors import ConfigError
    from deflect.runtime import Runtime
    from deflect.web import create_app

    base, tmp = kb_site
    assert anchors(get(base, "/articles/billing/refunds").text)["Contact support"] == "/help"
    runtime = Runtime(make_settings(tmp, tmp / "kb", tmp / "index", support_url="https://desk.example.com/new?from=kb&x=1"))
    try:
        with serve_app(create_app(runtime.settings, runtime)) as other:
            page = get(other, "/articles/billing/refunds").text
            assert anchors(page)["Contact support"] == "https://desk.example.com/new?from=kb&x=1"
    finally:
        runtime.close()
        runtime.db.dispose()
    with pytest.raises(ConfigError, match="support_url"):
        make_settings(tmp, tmp / "kb", tmp / "index", support_url="javascript:alert(1)")
    assert make_settings(tmp, tmp / "kb", tmp / "index", support_url="mailto:help@example.com").support_url
