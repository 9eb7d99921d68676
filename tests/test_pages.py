"""Pages, static files, security headers and CORS over real HTTP (the browser tests are in test_browser.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from conftest import SAMPLE_KB, serve_app
from pages_support import HOSTILE_ARTICLE_ID, HOSTILE_IDEA, hostile_site, make_settings

from deflect.articles import is_safe_url
from deflect.ideas import list_ideas
from deflect.kb_folder import load_kb

TIMEOUT = 60
ALLOWED_ORIGIN = "https://help.customer.example"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's visible text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]


def get(base: str, path: str, **kwargs) -> requests.Response:
    return requests.get(base + path, timeout=TIMEOUT, **kwargs)


def assert_inert(html: str) -> Tags:
    """No script but our own static files, no event-handler attribute, no script-capable URL."""
    page = Tags(html)
    for attrs in page.find("script"):
        assert (attrs.get("src") or "").startswith("/static/"), attrs
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.lower().startswith("on")], (tag, attrs)
        for name in ("href", "src", "action", "formaction"):
            if attrs.get(name) is not None:
                assert is_safe_url(attrs[name]), (tag, attrs)
        assert tag not in ("iframe", "object", "embed"), (tag, attrs)
    return page


@pytest.fixture(scope="module")
def cors_server(sample_runtime, tmp_path_factory):
    """The sample KB (index shared with sample_runtime) with one CORS origin listed, own database."""
    from deflect.runtime import Runtime
    from deflect.web import create_app

    tmp = tmp_path_factory.mktemp("pages-cors")
    # Listed the way an operator might type it: upper case, a trailing slash, the default port.
    listed = ALLOWED_ORIGIN.replace("https://help.customer", "HTTPS://Help.Customer") + ":443/"
    settings = make_settings(tmp, SAMPLE_KB, sample_runtime.settings.index_dir, cors_origins=listed)
    runtime = Runtime(settings)
    with serve_app(create_app(settings, runtime)) as base:
        yield base
    runtime.db.dispose()


@pytest.fixture(scope="module", params=["safe", "text"])
def hostile_server(tmp_path_factory, request):
    """The hostile KB with raw HTML rendered through the allowlist (the default), then shown as text."""
    with hostile_site(tmp_path_factory, f"pages-hostile-{request.param}", article_raw_html=request.param) as (base, _):
        yield base


# --- pages ----------------------------------------------------------------------------


def test_root_sends_newcomers_to_the_help_form(live_server):
    r = get(live_server, "/", allow_redirects=False)
    assert r.status_code in (301, 302, 303, 307, 308)
    assert r.headers["Location"].endswith("/help")


def test_help_page_has_the_widget_and_a_form(live_server):
    r = get(live_server, "/help")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    page = assert_inert(r.text)
    inputs = {a.get("name"): a for a in page.find("input")}
    assert "data-deflect-input" in inputs["subject"]
    assert "data-deflect-email" in inputs["email"]
    (form,) = page.find("form")
    assert form["method"] == "post" and form["action"] == "/help"
    widget = [a for a in page.find("script") if a.get("src") == "/static/deflect-widget.js"]
    assert len(widget) == 1 and "defer" in widget[0]
    assert widget[0]["data-types"] == "article,idea"
    # Every topic listed links to a section of the article index that exists.
    index = Tags(get(live_server, "/articles").text)
    section_ids = {a.get("id") for _, a in index.tags}
    topic_links = [a["href"] for a in page.find("a") if a.get("href", "").startswith("/articles#")]
    assert topic_links and all(link.split("#", 1)[1] in section_ids for link in topic_links)


def test_help_page_passes_a_valid_locale_to_the_widget_and_drops_a_bad_one(live_server):
    ko = Tags(get(live_server, "/help?locale=ko").text)
    assert [a.get("data-locale") for a in ko.find("script") if a.get("data-endpoint") is not None] == ["ko"]
    bad = Tags(get(live_server, '/help?locale="><script>').text)
    assert [a.get("data-locale") for a in bad.find("script") if a.get("data-endpoint") is not None] == [None]


def test_sending_the_help_form(live_server):
    r = requests.post(
        f"{live_server}/help",
        data={"subject": "Invoices <b>missing</b>", "details": "since May", "email": "ana@example.com"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200
    assert "Invoices &lt;b&gt;missing&lt;/b&gt;" in r.text and "ana@example.com" in r.text
    empty = requests.post(f"{live_server}/help", data={"subject": "  "}, timeout=TIMEOUT)
    assert empty.status_code == 400
    assert "Please tell us what your question is about." in empty.text
    too_long = requests.post(f"{live_server}/help", data={"subject": "x", "details": "y" * 6000}, timeout=TIMEOUT)
    assert too_long.status_code == 400
    # Over the 16 KB body limit: still the form with its message, not the API's JSON error.
    too_large = requests.post(f"{live_server}/help", data={"subject": "x" * 20_000}, timeout=TIMEOUT)
    assert too_large.status_code == 413 and too_large.headers["Content-Type"].startswith("text/html")
    assert "That message is too long." in too_large.text


def test_article_index_lists_every_article(live_server):
    r = get(live_server, "/articles")
    assert r.status_code == 200
    page = assert_inert(r.text)
    hrefs = {a["href"] for a in page.find("a")}
    for article in load_kb(SAMPLE_KB)[0]:
        assert f"/articles/{article.id}" in hrefs
    assert "Other languages (ko)" in "".join(page.text)


def test_article_page_renders_markdown(live_server):
    r = get(live_server, "/articles/account/reset-password")
    assert r.status_code == 200
    page = assert_inert(r.text)
    article = next(a for a in load_kb(SAMPLE_KB)[0] if a.id == "account/reset-password")
    text = "".join(page.text)
    assert article.title in text
    assert len(page.find("h1")) == 1  # the body's own "# Title" is not repeated
    assert page.find("ol") or page.find("ul")
    assert "<strong>Forgot password?</strong>" in r.text  # Markdown emphasis became HTML
    assert [a for a in page.find("script") if a.get("src") == "/static/article.js"]


ZENDESK = Path(__file__).resolve().parent / "data" / "zendesk"  # a Zendesk Guide export (tests/test_passages_html.py)
WELCOME, INVITE = "/articles/Getting%20Started/Welcome%20to%20Acme", "/articles/Getting%20Started/Invite%20teammates"


@pytest.fixture(scope="module")
def zendesk_sites(tmp_path_factory):
    """The Zendesk export served with raw HTML rendered (the default) and as text, from one index."""
    from deflect.runtime import Runtime
    from deflect.web import create_app

    tmp = tmp_path_factory.mktemp("pages-zendesk")
    runtimes = [Runtime(make_settings(tmp / mode, ZENDESK, tmp / "index", article_raw_html=mode)) for mode in ("safe", "text")]
    with serve_app(create_app(runtimes[0].settings, runtimes[0])) as safe, \
            serve_app(create_app(runtimes[1].settings, runtimes[1])) as text:  # fmt: skip
        yield {"safe": safe, "text": text}
    for runtime in runtimes:
        runtime.close()
        runtime.db.dispose()


def test_a_zendesk_article_page_renders_its_html(zendesk_sites):
    base = zendesk_sites["safe"]
    r = get(base, WELCOME)
    page = assert_inert(r.text)
    assert {"src": "https://acme.zendesk.com/hc/article_attachments/360009999/welcome.png", "alt": "Welcome screen",
            "width": "600"} in page.find("img")  # fmt: skip
    assert {"href": "https://app.acme.com/signup"} in page.find("a") and page.find("br")
    assert "<strong>Acme&nbsp;Desk</strong>" in r.text and "<h2>Create your workspace</h2>" in r.text
    text = "".join(page.text)
    assert "<p>" not in text and "&nbsp;" not in text and "Welcome to Acme\xa0Desk!" in text
    invite = get(base, INVITE).text
    assert "open <b>Settings &gt; Team</b> and click <em>Invite</em>." in invite
    assert "xss-from-zendesk" not in invite and "alert(" not in invite
    invoice = Tags(get(base, "/articles/Billing%20%26%20Payments/Invoices/Download%20an%20INVOICE").text)
    assert len(invoice.find("th")) == 2 and len(invoice.find("td")) == 4
    api = requests.get(base + "/api" + WELCOME, timeout=TIMEOUT).json()
    assert api["html"] in r.text and '<img src="https://acme.zendesk.com/' in api["html"]
    assert api["markdown"].startswith("<p>Welcome to <strong>Acme&nbsp;Desk</strong>!")  # the source, as written


def test_a_zendesk_article_shows_its_html_as_text_when_set_so(zendesk_sites):
    r = get(zendesk_sites["text"], WELCOME)
    page = assert_inert(r.text)
    assert "<p>Welcome to <strong>Acme\xa0Desk</strong>!" in "".join(page.text)
    assert not [img for img in page.find("img") if "acme.zendesk.com" in (img.get("src") or "")]
    assert "&lt;strong&gt;" in requests.get(zendesk_sites["text"] + "/api" + WELCOME, timeout=TIMEOUT).json()["html"]


def test_a_zendesk_suggestion_snippet_reads_as_the_page(zendesk_sites):
    """The widget shows the snippet with textContent: it must be the words of the page, not its markup."""
    answer = requests.post(zendesk_sites["safe"] + "/api/suggest", json={"query": "how do I invite teammates?"},
                           timeout=TIMEOUT).json()  # fmt: skip
    top = answer["results"][0]
    assert top["id"] == "Getting Started/Invite teammates"
    assert top["snippet"].startswith("To invite teammates, open Settings > Team and click Invite. Enter one email")
    assert "7 days" in top["snippet"]
    assert not [s for s in (r["snippet"] for r in answer["results"]) if re.search(r"&#?\w+;|<\w|alert\(", s)]


def test_korean_article_page_marks_the_article_korean_and_the_pages_own_words_english(live_server):
    """WCAG 3.1.2: a screen reader reads the Korean article with a Korean voice, and the page's
    English navigation and "Did this answer your question?" with an English one."""
    page = Tags(get(live_server, "/articles/ko/reset-password").text)
    assert page.find("html")[0]["lang"] == "en"  # the pages' own words are English
    assert [a.get("lang") for a in page.find("header") if a.get("lang")] == ["ko"]  # the title and tags
    assert [a["lang"] for a in page.find("div") if "article-body" in a.get("class", "")] == ["ko"]
    assert not [a for a in page.find("article") if a.get("lang")]  # its feedback footer is English
    assert "비밀번호" in "".join(page.text)


@pytest.mark.parametrize("locale", ["ko-KR", "ko_KR", "KO"])
def test_help_topics_for_a_regional_locale_are_the_languages_topics(live_server, locale):
    """?locale=ko-KR lists the Korean topics as ?locale=ko does (one locale rule for every door),
    not an empty "Browse by topic"."""

    def topics(query: str) -> list[str]:
        page = Tags(get(live_server, f"/help?locale={query}").text)
        return [a["href"] for a in page.find("a") if a.get("href", "").startswith("/articles#")]

    assert topics(locale) == topics("ko") and topics("ko")


@pytest.mark.parametrize("path", ["/articles/no/such-article", "/articles/account"])
def test_unknown_article_is_an_html_404(live_server, path):
    r = get(live_server, path)
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("text/html")
    assert "We could not find that article" in r.text


def test_idea_board_lists_ideas_with_status_votes_and_vote_buttons(live_server, sample_runtime):
    r = get(live_server, "/ideas")
    assert r.status_code == 200
    page = assert_inert(r.text)
    ideas = [i for i in list_ideas(sample_runtime.db) if i["status"] != "merged"]
    cards = [a for a in page.find("li") if a.get("data-idea-id")]
    assert [c["data-idea-id"] for c in cards] == [i["id"] for i in ideas]  # most votes first
    buttons = {a["data-vote-idea"] for a in page.find("button") if a.get("data-vote-idea")}
    assert buttons == {i["id"] for i in ideas if i["status"] in ("open", "planned", "in_progress")}
    html = r.text
    for idea in ideas[:5]:
        assert f'id="idea-{idea["id"]}"' in html
        assert f'<span class="vote-count" data-vote-count>{idea["votes"]}</span>' in html


def test_idea_board_filters_by_status(live_server, sample_runtime):
    planned = Tags(get(live_server, "/ideas?status=planned").text)
    ids = [a["data-idea-id"] for a in planned.find("li") if a.get("data-idea-id")]
    assert ids == [i["id"] for i in list_ideas(sample_runtime.db, ("planned",))]
    assert get(live_server, "/ideas?status=nonsense").status_code == 404


def test_admin_page_asks_for_the_token(live_server):
    r = get(live_server, "/admin")
    assert r.status_code == 200
    page = assert_inert(r.text)
    tokens = [a for a in page.find("input") if "data-deflect-token" in a]
    assert len(tokens) == 1 and tokens[0]["type"] == "password"
    assert "data-deflect-metric" in r.text
    assert [a for a in page.find("script") if a.get("src") == "/static/admin.js"]


@pytest.mark.parametrize(
    "path, kind",
    [
        ("/static/deflect-widget.js", "javascript"),
        ("/static/deflect-widget.css", "text/css"),
        ("/static/deflect.css", "text/css"),
        ("/static/admin.js", "javascript"),
        ("/static/deflect-chart.js", "javascript"),
        ("/static/ideas.js", "javascript"),
        ("/static/article.js", "javascript"),
        ("/static/favicon.svg", "image/svg+xml"),
    ],
)
def test_static_files_are_served_with_their_types(live_server, path, kind):
    r = get(live_server, path)
    assert r.status_code == 200 and r.content
    assert kind in r.headers["Content-Type"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    # Nothing is fetched from a CDN: the only absolute URLs are the SVG namespace and doc examples.
    urls = set(re.findall(rb"https?://[^\s\"')]+", r.content))
    assert urls <= {b"http://www.w3.org/2000/svg", b"https://deflect.example.com/static/deflect-widget.js",
                    b"https://deflect.example.com"}, urls


# --- security headers -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/help", "/articles", "/articles/account/reset-password", "/ideas", "/admin"])
def test_pages_send_security_headers(live_server, path):
    r = get(live_server, path)
    csp = {d.split()[0]: d.split()[1:] for d in r.headers["Content-Security-Policy"].split("; ")}
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval, no CDN
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["default-src"] == ["'self'"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in r.text and " on" + "click=" not in r.text  # really no inline script


def test_api_answers_get_nosniff_and_a_deny_all_csp(live_server):
    r = get(live_server, "/healthz")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")


# --- CORS -----------------------------------------------------------------------------


def preflight(base: str, path: str, origin: str, headers: str = "content-type") -> requests.Response:
    return requests.options(
        base + path,
        headers={"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": headers},
        timeout=TIMEOUT,
    )


@pytest.mark.parametrize("path", ["/api/suggest", "/api/events", "/api/ideas/dark-mode/vote"])
def test_preflight_from_a_listed_origin(cors_server, path):
    r = preflight(cors_server, path, ALLOWED_ORIGIN)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Allow-Headers"].lower() == "content-type"
    assert "Origin" in r.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in r.headers


@pytest.mark.parametrize("origin", ["https://evil.example", "https://help.customer.example.evil.example", "null"])
def test_preflight_from_an_unlisted_origin_is_not_allowed(cors_server, origin):
    r = preflight(cors_server, "/api/suggest", origin)
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Access-Control-Allow-Methods" not in r.headers


def test_a_refused_origin_is_said_once_in_the_log(cors_server, caplog):
    """A mistyped cors_origins leaves the widget saying "not available"; the server log says which
    page was refused, once per origin (a scanner cannot fill the log: at most MAX_SAID origins)."""
    import logging
    import uuid

    origin = f"https://help-{uuid.uuid4().hex[:8]}.example"
    with caplog.at_level(logging.WARNING, logger="deflect.web.security"):
        for _ in range(3):
            preflight(cors_server, "/api/suggest", origin)
        preflight(cors_server, "/api/suggest", ALLOWED_ORIGIN)
    said = [r.getMessage() for r in caplog.records if r.name == "deflect.web.security"]
    assert len(said) == 1 and origin in said[0] and "cors_origins" in said[0]


def test_listed_origin_can_read_suggestions(cors_server):
    r = requests.post(
        f"{cors_server}/api/suggest", json={"query": "I forgot my password"}, headers={"Origin": ALLOWED_ORIGIN}, timeout=TIMEOUT
    )
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert r.json()["results"][0]["id"] == "account/reset-password"
    other = requests.post(
        f"{cors_server}/api/suggest", json={"query": "password"}, headers={"Origin": "https://evil.example"}, timeout=TIMEOUT
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def test_admin_endpoints_cannot_be_called_cross_origin(cors_server):
    # The preflight never allows the Authorization header, so a browser refuses to send the token.
    r = preflight(cors_server, "/api/reindex", ALLOWED_ORIGIN, headers="authorization,content-type")
    assert "authorization" not in r.headers.get("Access-Control-Allow-Headers", "").lower()


def test_no_cors_headers_without_configured_origins(live_server):
    r = preflight(live_server, "/api/suggest", ALLOWED_ORIGIN)
    assert "Access-Control-Allow-Origin" not in r.headers


def test_pages_never_send_cors_headers(cors_server):
    r = get(cors_server, "/help", headers={"Origin": ALLOWED_ORIGIN})
    assert "Access-Control-Allow-Origin" not in r.headers


# --- hostile content ------------------------------------------------------------------


def test_hostile_article_page_is_inert(hostile_server, request):
    r = get(hostile_server, f"/articles/{HOSTILE_ARTICLE_ID}")
    assert r.status_code == 200
    page = assert_inert(r.text)
    text = "".join(page.text)
    if request.node.callspec.params["hostile_server"] == "safe":  # the allowlisted subset renders
        assert "window.__pwned = 'script'" not in text and "raw anchor" in text
        assert {} in page.find("a")  # the raw anchor: neither its javascript: href nor its onclick left
    else:  # shown as text, not dropped silently and not run
        assert "<script>window.__pwned = 'script'</script>" in text
    assert "<img src=x onerror=" in text  # the hostile title, escaped
    assert [a for a in page.find("a") if a.get("href") == "#"]  # the Markdown javascript: links were neutralised
    assert not [a for a in page.find("img") if a.get("src") not in ("/static/favicon.svg", "#", None)]


@pytest.mark.parametrize("path", ["/help", "/articles", "/ideas"])
def test_hostile_titles_are_escaped_on_every_page(hostile_server, path):
    r = get(hostile_server, path)
    assert r.status_code == 200
    page = assert_inert(r.text)
    text = "".join(page.text)
    if path == "/ideas":
        assert HOSTILE_IDEA["title"] in text
        assert "<script>window.__pwned='idea-description'</script>" in text
    if path == "/articles":
        assert "Export <img src=x onerror=" in text


@pytest.mark.parametrize(
    "entry, key",
    [
        ("https://help.customer.example", "https://help.customer.example"),
        ("HTTP://LOCALHOST:8711/", "http://localhost:8711"),
        ("https://Support.Example.com:443", "https://support.example.com"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("127.0.0.1:8711", None),  # no scheme: a browser never sends that
        ("https://x.example/help", None),  # a page, not an origin
        ("ftp://x.example", None),
        ("https://*.example.com", None),  # no wildcards: it would never match, silently
        ("https://x.example:99999", None),
    ],
)
def test_cors_origins_are_compared_as_browsers_send_them(entry, key):
    from deflect.web.security import origin_key

    assert origin_key(entry) == key


def test_a_cors_entry_that_is_not_an_origin_is_named_in_a_warning(caplog):
    from flask import Flask

    from deflect.web.security import install_security

    with caplog.at_level("WARNING", logger="deflect.web.security"):
        install_security(Flask(__name__), ["https://ok.example", "127.0.0.1:8711"])
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "cors_origins: '127.0.0.1:8711' is not an origin like https://support.example.com "
        "(scheme, host, optional port); ignored"
    ]


@pytest.mark.parametrize(
    "article_id, locale, category",
    [("billing/refunds", "en", "Billing"), ("ko/refunds", "ko", "Other languages (ko)"),
     ("ko/billing/refunds", "ko", "Billing (ko)"), ("ko-KR/billing/refunds", "ko-KR", "Billing (ko-KR)"),
     ("faq", "en", "General"), ("data-export/csv", "ko", "Data export"),
     # A folder per language holds its regions too (a Zendesk export's ko-KR next to ko): one group.
     ("ko/setup", "ko-KR", "Other languages (ko)"), ("ja/billing/invoice", "ja_JP", "Billing (ja)"),
     ("en/setup", "ko", "En")],
)
def test_articles_in_a_language_folder_are_a_group_apart(article_id, locale, category):
    """ko/billing/... is "Billing (ko)": on /articles the Korean billing pages are not mixed into the English ones."""
    from deflect.web.pages import _category

    assert _category({"id": article_id, "locale": locale}) == category
