"""Hostile articles, ideas, queries and form input render inert on every page and in the API's html.

Every payload would set window.__xss and fetch /xss-marker if it ever ran. Two kinds of check:
- the served HTML of every page (and every `html` field of the API) is parsed: no script but
  deflect's own static files, no event-handler attribute, no script-capable URL;
- a real browser (Debian's Chromium) opens every page with the Content-Security-Policy
  bypassed, so that only the escaping stands between a payload and running: no marker request,
  no window.__xss, and no handler or script-capable URL anywhere in the live DOM (after the
  pages' own scripts rendered the API's data).
"""

from __future__ import annotations

import json

import pytest
import requests
from conftest import ADMIN_TOKEN, TINY_KB, serve_app, write_kb
from fuzz_support import HOSTILE_FRAGMENTS, inert_problems
from html_support import Elements
from pages_support import make_settings

TIMEOUT = 60
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JS = "window.__xss=1;fetch('/xss-marker')"
OUR_SCRIPTS = ("/static/deflect-widget.js", "/static/admin.js", "/static/ideas.js", "/static/article.js",
               "/static/deflect-chart.js")


def armed(text: str) -> str:
    """A payload that both flags itself and phones home."""
    return text.replace("window.__xss=", f"{JS};window.__xss=")


PAYLOADS = [armed(p) for p in HOSTILE_FRAGMENTS]
SCRIPT = f"<script>{JS}</script>"
IMG = f'<img src=x onerror="{JS}">'
SVG = f'<svg onload="{JS}">'

EVERYTHING = "\n".join(
    [
        "---",
        f"title: {json.dumps(f'Export {IMG} your {SCRIPT} data')}",
        f"tags: {json.dumps([SVG, IMG, 'data'])}",
        f"url: {json.dumps(f'javascript:{JS}')}",
        "---",
        "# Export your data",
        "",
        "Export all your tasks to a CSV spreadsheet from Settings, then Data export.",
        "",
        "- How do I export my tasks to a spreadsheet?",
        "",
        *[f"{p}\n" for p in PAYLOADS],
    ]
)
DATA_URL = "\n".join(
    [
        "---",
        f"title: {json.dumps(f'{SVG}Import tasks from a CSV file')}",
        f"url: {json.dumps(f'data:text/html,<script>{JS}</script>')}",
        "---",
        "# Import tasks from a CSV file",
        "",
        f"Import a spreadsheet of tasks. [Template](data:text/csv,a,b) ![x](data:image/svg+xml,<svg onload=\"{JS}\">)",
        "",
        "- Can I import my tasks from a spreadsheet or CSV?",
    ]
)
HOSTILE_ARTICLES = {"hostile/everything": EVERYTHING, "hostile/data-url": DATA_URL}
HOSTILE_IDEAS = [
    {"id": "xss-idea", "title": f"Spreadsheet sync {IMG}", "description": f"{SCRIPT} {SVG} keep sheets in sync", "votes": 2},
    {"id": "xss-idea-2", "title": f"Calendar {SCRIPT} view", "description": f"[x](javascript:{JS}) see tasks on a calendar"},
]
HOSTILE_QUERIES = [
    f"{IMG} can I pay with bitcoin",
    f"{SCRIPT} can I pay my invoice with bitcoin",
    f"pay with bitcoin {SVG} please",
    f"\"><script>{JS}</script> bitcoin payments",
]


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    """A tiny KB plus hostile articles and ideas: (kb folder, index folder)."""
    tmp = tmp_path_factory.mktemp("xss-kb")
    files = dict(TINY_KB) | {f"{aid}.md": text for aid, text in HOSTILE_ARTICLES.items()}
    files["ideas.jsonl"] = json.dumps(HOSTILE_IDEAS[0]) + "\n"
    return write_kb(tmp / "kb", files), tmp / "index"


@pytest.fixture(scope="module")
def text_site(tmp_path_factory, hostile_files):
    """The hostile KB with raw HTML shown as text (article_raw_html = "text"), as before it rendered."""
    from deflect.runtime import Runtime
    from deflect.web import create_app

    kb, index = hostile_files
    runtime = Runtime(make_settings(tmp_path_factory.mktemp("xss-text"), kb, index, article_raw_html="text"))
    with serve_app(create_app(runtime.settings, runtime)) as base:
        yield base
    runtime.close()
    runtime.db.dispose()


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory, hostile_files):
    """The hostile KB (raw HTML through the allowlist, the default); then hostile searches, an alias,
    candidates and an idea."""
    from deflect.runtime import Runtime
    from deflect.web import create_app

    tmp = tmp_path_factory.mktemp("xss")
    kb, index = hostile_files
    runtime = Runtime(make_settings(tmp, kb, index))
    with serve_app(create_app(runtime.settings, runtime)) as base:
        post = lambda path, body, **kw: requests.post(base + path, json=body, timeout=TIMEOUT, **kw)  # noqa: E731
        assert post("/api/ideas", HOSTILE_IDEAS[1], headers=ADMIN).status_code == 201
        for n, query in enumerate(HOSTILE_QUERIES):
            answer = post("/api/suggest", {"query": query, "session": f"xss-{n}"}).json()
        # a hostile query learned as an alias of an article (shown on the dashboard)
        learned = post("/api/suggest", {"query": f"{IMG} export tasks to a spreadsheet", "session": "xss-alias"}).json()
        assert post("/api/events", {"search_id": learned["search_id"], "type": "helpful",
                                    "item_id": "hostile/everything", "item_type": "article"}).status_code == 202
        assert answer["search_id"]
        assert post("/api/clusters/rebuild", {}, headers=ADMIN).status_code == 200
        clusters = requests.get(f"{base}/api/clusters", headers=ADMIN, timeout=TIMEOUT).json()["clusters"]
        if clusters:  # promote one with its (hostile) label pasted as the idea's title
            title = clusters[0]["label"].rstrip("…")
            assert post(f"/api/clusters/{clusters[0]['id']}/promote", {"title": title}, headers=ADMIN).status_code == 200
        yield base
    runtime.close()
    runtime.db.dispose()


PAGES = [
    "/help",
    "/help?locale=%22%3E%3Cscript%3Ewindow.__xss%3D1%3C%2Fscript%3E",
    "/articles",
    "/articles/hostile/everything",
    "/articles/hostile/data-url",
    "/ideas",
    "/ideas?status=open",
    "/admin",
    "/articles/%3Cscript%3Ewindow.__xss%3D1%3C%2Fscript%3E",
    "/%3Cimg%20src%3Dx%20onerror%3Dwindow.__xss%3D1%3E",
]


# --- served HTML ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_served_pages_are_inert(hostile_site, path):
    r = requests.get(hostile_site + path, timeout=TIMEOUT)
    assert r.status_code in (200, 404)
    assert r.headers["Content-Type"].startswith("text/html")
    assert inert_problems(r.text, allowed_scripts=OUR_SCRIPTS, page=True) == []


def test_hostile_text_is_shown_as_text_not_dropped(hostile_site):
    """Escaping, not deletion, wherever text is not HTML (titles, ideas): readers see what the writer typed."""
    article = requests.get(f"{hostile_site}/articles/hostile/everything", timeout=TIMEOUT).text
    assert "Export &lt;img src=x onerror=" in article and "your &lt;script&gt;" in article  # the title
    board = requests.get(f"{hostile_site}/ideas", timeout=TIMEOUT).text
    assert "Spreadsheet sync &lt;img src=x onerror=" in board


def test_raw_html_renders_only_its_allowlisted_subset(hostile_site):
    html = requests.get(f"{hostile_site}/api/articles/hostile/everything", timeout=TIMEOUT).json()["html"]
    # Every script, handler and script-capable URL gone, not escaped (the "[link](javascript:...)" written
    # after an unclosed raw <body> is the text of that raw block, as Python-Markdown reads it).
    assert "&lt;script" not in html and "<script" not in html
    assert not [(tag, attrs) for tag, attrs in Elements(html).elements if "__xss" in json.dumps(attrs)]
    assert "<a>c</a>" in html and "<a>d</a>" in html and '<a href="https://ok.example/">ok</a>' in html
    assert "<div>styled</div>" in html  # no style, id or class from raw HTML
    assert "<td>cell" in html and html.endswith("</td></tr></tbody></table></a></b></div>")  # closed, as a browser would


@pytest.mark.parametrize("path", ["/articles/hostile/everything", "/articles/hostile/data-url"])
def test_raw_html_shown_as_text_stays_inert(text_site, path):
    r = requests.get(text_site + path, timeout=TIMEOUT)
    assert r.status_code == 200
    assert inert_problems(r.text, allowed_scripts=OUR_SCRIPTS, page=True) == []
    api = requests.get(text_site + "/api" + path, timeout=TIMEOUT).json()["html"]
    assert inert_problems(api) == []
    if path.endswith("everything"):
        assert "&lt;script&gt;window.__xss=1;fetch(" in r.text  # shown, as text
        assert '&lt;a href="jaVasCript:window.__xss=1;fetch' in api


def test_a_text_site_in_a_browser_runs_nothing(browser, text_site):
    w = Watched(browser, text_site)
    try:
        w.page.goto(text_site + "/articles/hostile/everything")
        w.page.wait_for_load_state("networkidle")
        w.assert_inert()
        assert "<script>" in w.page.locator("[data-article-body]").inner_text()
    finally:
        w.context.close()


def test_the_help_form_echo_is_inert(hostile_site):
    sent = requests.post(f"{hostile_site}/help", data={"subject": IMG + SCRIPT, "details": SVG,
                                                       "email": f"\"><script>{JS}</script>@x.example"}, timeout=TIMEOUT)
    assert sent.status_code == 200
    assert inert_problems(sent.text, allowed_scripts=OUR_SCRIPTS, page=True) == []
    again = requests.post(f"{hostile_site}/help", data={"subject": "", "details": SCRIPT, "email": IMG}, timeout=TIMEOUT)
    assert again.status_code == 400
    assert inert_problems(again.text, allowed_scripts=OUR_SCRIPTS, page=True) == []


@pytest.mark.parametrize("article_id", list(HOSTILE_ARTICLES))
def test_api_html_fields_are_inert(hostile_site, article_id):
    article = requests.get(f"{hostile_site}/api/articles/{article_id}", timeout=TIMEOUT).json()
    assert inert_problems(article["html"]) == []
    assert "<s" in article["markdown"]  # the source is given back as it is, as data


@pytest.mark.parametrize("raw_html", ["safe", "text"])
def test_every_fragment_renders_inert_on_its_own(raw_html):
    from deflect.articles import render_html

    for payload in PAYLOADS:
        assert inert_problems(render_html(payload, raw_html=raw_html)) == [], payload


# --- a real browser, CSP bypassed -------------------------------------------------------------

DOM_PROBLEMS = """() => {
  const bad = [];
  const scriptable = v => /^(javascript|vbscript|data):/i.test((v || '').replace(/[\\u0000-\\u0020\\u007f]/g, ''));
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      if (a.name.toLowerCase().startsWith('on')) bad.push(el.tagName + ' ' + a.name);
      if (['href', 'src', 'action', 'formaction', 'data', 'srcdoc'].includes(a.name.toLowerCase()) && scriptable(a.value)
          && !(el.tagName === 'LINK' && a.value === 'data:,')) bad.push(el.tagName + ' ' + a.name + '=' + a.value);
    }
    if (el.tagName === 'SCRIPT' && !(el.getAttribute('src') || '').startsWith('/static/')
        && !(el.getAttribute('src') || '').includes('/static/deflect-widget.js')) bad.push('script ' + el.outerHTML.slice(0, 80));
    if (['IFRAME', 'OBJECT', 'EMBED', 'FRAME'].includes(el.tagName)) bad.push(el.tagName);
  }
  return bad;
}"""


class Watched:
    """A browser page without CSP that records marker calls and any request leaving deflect's origin."""

    def __init__(self, browser, base: str):
        self.base = base
        self.context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.markers: list[str] = []
        self.foreign: list[str] = []
        self.page.route("**/xss-marker*", self._marker)
        self.page.on("request", self._request)

    def _marker(self, route) -> None:
        self.markers.append(route.request.url)
        route.fulfill(status=204, body="")

    def _request(self, request) -> None:
        if not request.url.startswith((self.base, "data:")):
            self.foreign.append(request.url)

    def assert_inert(self) -> None:
        self.page.wait_for_timeout(300)  # let a late onerror/onload fire if there were one
        assert self.markers == []
        assert self.page.evaluate("window.__xss") is None
        assert self.page.evaluate(DOM_PROBLEMS) == []
        assert self.foreign == []


@pytest.fixture
def watched(browser, hostile_site):
    w = Watched(browser, hostile_site)
    yield w
    w.context.close()


@pytest.mark.parametrize("path", [p for p in PAGES if p != "/admin"])
def test_pages_in_a_browser_run_nothing(watched, path):
    watched.page.goto(watched.base + path)
    watched.page.wait_for_load_state("networkidle")
    watched.assert_inert()


def test_hostile_queries_and_suggestions_in_the_widget_run_nothing(watched):
    page = watched.page
    page.goto(watched.base + "/help")
    field = page.locator("[data-deflect-input]").first
    for query in [HOSTILE_QUERIES[0], "how do I export my tasks to a spreadsheet", "spreadsheet sync calendar"]:
        field.fill("")
        field.click()
        page.keyboard.type(query, delay=5)
        page.wait_for_selector("[data-deflect-suggestion]", timeout=10_000)
        for suggestion in page.locator("[data-deflect-suggestion]").all():
            suggestion.click()  # opens the preview with title, snippet and (maybe) a link
            watched.assert_inert()
    page.fill("input[name=subject]", IMG)
    page.get_by_role("button", name="Send to support").click()
    page.wait_for_load_state("networkidle")
    watched.assert_inert()


def test_the_idea_board_votes_run_nothing(watched):
    page = watched.page
    page.goto(watched.base + "/ideas")
    for button in page.locator("button[data-vote-idea]").all()[:3]:
        button.click()
    page.wait_for_load_state("networkidle")
    watched.assert_inert()


def test_the_admin_dashboard_runs_nothing(watched):
    page = watched.page
    page.goto(watched.base + "/admin")
    page.fill("[data-deflect-token]", ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("[data-admin-dashboard][data-loaded=true]")
    page.wait_for_load_state("networkidle")
    text = page.locator("[data-admin-dashboard]").inner_text()
    assert "<img src=x onerror=" in text or "<script>" in text  # hostile queries are there, as text
    watched.assert_inert()


def test_the_browser_check_catches_a_payload_that_runs(browser):
    """The harness is not blind: a page that does run a payload fails every part of the check."""
    from flask import Flask

    canary = Flask("canary")

    @canary.get("/healthz")
    def healthz():
        return "ok"

    @canary.get("/")
    def unsafe():
        return f"<!doctype html><title>canary</title><p>{IMG}</p>"

    with serve_app(canary) as base:
        w = Watched(browser, base)
        try:
            w.page.goto(base + "/")
            w.page.wait_for_load_state("networkidle")
            with pytest.raises(AssertionError):
                w.assert_inert()
            assert w.markers and w.page.evaluate("window.__xss") == 1
            assert "IMG onerror" in w.page.evaluate(DOM_PROBLEMS)
        finally:
            w.context.close()
