"""The widget on a customer's site, on a phone, in a real browser (Debian's Chromium).

What a phone meets that a desktop rarely does: a connection that neither answers nor fails, a
narrow panel with a long URL in it, a carrier's NAT sharing rate limits, a larger default font,
and fingers instead of a mouse. deflect serves a tiny KB of its own (a long-URL article and a
Korean one) over real HTTP, twice: as configured by default and with a low per-session rate
limit; a TCP server that accepts and never answers stands for the dead connection.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests
import sqlalchemy as sa
from conftest import SAMPLE_KB, TINY_KB, serve_app, write_kb
from pages_support import make_settings, suggest
from test_widget_integration import stored

if os.environ.get("DEFLECT_SKIP_BROWSER") == "1":
    pytest.skip("DEFLECT_SKIP_BROWSER=1: browser tests skipped on purpose", allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

LONG_URL = ("https://hooks.example.com/orbitask/v2/receive/verify-signature-and-dispatch-to-queue"
            "?tenant=acme-corporation-international&retry=true")
WEBHOOK_ARTICLE = f"""---
title: "Deliveries to {LONG_URL} fail"
---
# Webhook signature verification fails behind a proxy

When {LONG_URL} rejects webhook deliveries with a signature error, a proxy in front of it rewrites
the body before your code verifies the webhook signature. Verify the raw body, not the parsed one.

- webhook signature verification fails behind proxy
"""
QUESTION_LONG_URL = "webhook signature verification fails behind proxy"
QUESTION = "I forgot my password and cannot log in"
QUESTION_KO = "비밀번호 재설정"

# A help form as the README has it: the field, an email, a submit button; the page sets its body
# font in px (common), and may set a larger root size (a visitor's larger default font).
FORM_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>help</title>
<link rel="icon" href="data:,"><meta name="viewport" content="width=device-width, initial-scale=1">
<style>{root} body {{ font: 16px/1.5 sans-serif; margin: 8px; }} input {{ width: 100%; box-sizing: border-box; }}</style>
<script src="{deflect}/static/deflect-widget.js" data-endpoint="{endpoint}" data-types="article" data-k="3" defer></script>
</head><body><h1>Contact Acme</h1>
<form id="f" method="post" action="/sent">
  <input name="q" aria-label="Question" data-deflect-input>
  <input name="email" type="email" aria-label="Email" data-deflect-email value="phone@example.com">
  <button id="send">Send</button>
</form></body></html>"""


class Unanswering:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers (a dead cell
    connection, a stuck proxy): requests to it neither succeed nor fail."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, name="unanswering", daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()
        self.thread.join(timeout=5)


@dataclass
class Site:
    base: str  # deflect, without rate limits (as the other browser tests run)
    strict: str  # the same deflect with rate_limit_per_session = STRICT_PER_SESSION
    hang: Unanswering
    customer: str
    runtime: object
    posts: list = field(default_factory=list)

    @property
    def db(self) -> sa.Engine:
        return self.runtime.db


STRICT_PER_SESSION = 20  # one request every 3 s once the burst is spent: Retry-After <= 3


def customer_site(site: dict, posts: list):
    from flask import Flask, request

    app = Flask("customer")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/form")
    def form():
        deflect = site["strict"] if request.args.get("to") == "strict" else site["base"]
        endpoint = site["hang"] if request.args.get("to") == "hang" else deflect
        root = f"html {{ font-size: {int(request.args['root'])}px; }}" if "root" in request.args else ""
        return FORM_PAGE.format(lang=request.args.get("lang", "en"), root=root, deflect=deflect, endpoint=endpoint)

    @app.post("/sent")
    def sent():
        posts.append(list(request.form.items(multi=True)))
        return "<!doctype html><title>sent</title><link rel='icon' href='data:,'><p id=sent>Sent</p>"

    return app


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from deflect.runtime import Runtime
    from deflect.web import create_app

    tmp = tmp_path_factory.mktemp("widget-mobile")
    files = dict(TINY_KB)
    files["integrations/webhook-signatures.md"] = WEBHOOK_ARTICLE
    files["ko/reset-password.md"] = (SAMPLE_KB / "ko" / "reset-password.md").read_text(encoding="utf-8")
    kb = write_kb(tmp / "kb", files)
    hang = Unanswering()
    urls: dict[str, str] = {"hang": hang.base}
    posts: list = []
    try:
        with serve_app(customer_site(urls, posts)) as customer:
            settings = make_settings(tmp, kb, tmp / "index", cors_origins=customer)
            runtime = Runtime(settings)
            strict = settings.with_overrides(rate_limit_per_session=STRICT_PER_SESSION)
            try:
                with serve_app(create_app(settings, runtime)) as base, serve_app(create_app(strict, runtime)) as strict_base:
                    urls.update(base=base, strict=strict_base)
                    suggest(base, "how do I reset my password")  # the first query pays for lazy loading
                    yield Site(base, strict_base, hang, customer, runtime, posts)
            finally:
                runtime.close()
                runtime.db.dispose()
    finally:
        hang.close()


PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}


def open_page(browser, **options) -> tuple[object, Page]:
    context = browser.new_context(**options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.errors = errors
    return context, page


@pytest.fixture
def phone(browser, site):
    """A 360 px wide touch screen (the narrowest common phone)."""
    context, page = open_page(browser, **PHONE)
    site.posts.clear()
    yield page
    context.close()
    # A request refused (429) or cut off by its timeout is logged by the browser: not an error.
    unexpected = [e for e in page.errors if not re.search(r"Failed to load resource|ERR_|net::", e)]
    assert not unexpected, "console errors:\n" + "\n".join(unexpected)


def touch(page: Page, locator) -> None:
    """A tap on a touch screen, a click elsewhere."""
    if page.evaluate("navigator.maxTouchPoints > 0"):
        locator.tap()
    else:
        locator.click()


def ask(page: Page, question: str):
    """Tap (or click) the field, type the question; return the listbox once it shows that question's results."""
    touch(page, page.locator("[data-deflect-input]"))
    page.keyboard.type(question, delay=30)
    listbox = page.locator("[role=listbox]")
    expect(listbox).to_have_attribute("data-query", question, timeout=8000)
    return listbox


# --- a search that never gets an answer -------------------------------------------------


def test_a_search_with_no_answer_says_suggestions_are_unavailable_and_the_form_still_sends(phone, site):
    phone.goto(site.customer + "/form?to=hang")
    phone.locator("[data-deflect-input]").tap()
    typed = time.monotonic()
    phone.keyboard.type(QUESTION, delay=20)
    note = phone.locator(".dfl-note")
    expect(note).to_have_text("Searching\u2026", timeout=3000)  # the request is stuck, not refused
    assert site.hang.accepted, "the widget never reached the unanswering server"
    # Given up after the widget's timeout (8 s): the documented "unavailable" state.
    expect(note).to_contain_text("not available", timeout=12_000)
    assert time.monotonic() - typed >= 7.5  # not before the timeout: a slow answer still gets its time
    expect(phone.locator(".dfl-widget")).not_to_have_attribute("aria-busy", "true")
    assert "not available" in phone.locator(".dfl-sr-status").text_content()  # announced too
    phone.locator("#send").tap()
    expect(phone.locator("#sent")).to_be_visible(timeout=8000)
    assert ("q", QUESTION) in site.posts[0]


# --- long words in a narrow panel -------------------------------------------------------

OVERFLOWING = """() => Array.from(document.querySelectorAll(
    '.dfl-option, .dfl-snippet, .dfl-preview-title, .dfl-preview-snippet'))
  .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth)
  .map(e => e.className + ': ' + e.scrollWidth + ' > ' + e.clientWidth)"""

# Where a line of the element's text wraps inside a word: the characters either side of each
# line break (a break after a space or a hyphen, or between two CJK characters, is not one).
BREAKS_INSIDE_WORDS = """e => {
  const found = [];
  const walker = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);
  let previous = null, top = null;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.data.length; i++) {
      const range = document.createRange();
      range.setStart(node, i); range.setEnd(node, i + 1);
      const rect = range.getClientRects()[0];
      if (!rect) continue;
      const ch = node.data[i];
      if (top !== null && rect.top > top + 2 && previous && !/\\s/.test(previous) && !/\\s/.test(ch)) {
        found.push(previous + '|' + ch);
      }
      if (!/\\s/.test(ch)) top = rect.top;
      previous = ch;
    }
  }
  return found;
}"""


def test_a_long_url_in_a_title_and_snippet_wraps_inside_a_360px_panel(phone, site):
    phone.goto(site.customer + "/form")
    ask(phone, QUESTION_LONG_URL)
    option = phone.locator("[data-deflect-suggestion][data-id='integrations/webhook-signatures']")
    assert "hooks.example.com/orbitask" in option.locator(".dfl-title").text_content()
    assert "hooks.example.com/orbitask" in option.locator(".dfl-snippet").text_content()
    assert phone.evaluate(OVERFLOWING) == []
    option.tap()
    expect(phone.locator(".dfl-preview-snippet")).to_contain_text("hooks.example.com/orbitask")
    assert phone.evaluate(OVERFLOWING) == []
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360


def test_korean_wraps_between_words_and_stays_inside_the_panel(phone, site):
    phone.goto(site.customer + "/form?lang=ko")
    ask(phone, QUESTION_KO)
    option = phone.locator("[data-deflect-suggestion][data-id='ko/reset-password']")
    option.tap()
    preview = phone.locator(".dfl-preview-snippet")
    expect(preview).to_be_visible()
    assert preview.evaluate("e => getComputedStyle(e).wordBreak") == "keep-all"
    lines = preview.evaluate("e => Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight))")
    assert lines >= 2, "the snippet fits one line: nothing to wrap"
    for selector in (".dfl-preview-snippet", "[data-id='ko/reset-password'] .dfl-snippet"):
        assert phone.locator(selector).evaluate(BREAKS_INSIDE_WORDS) == [], selector
    assert phone.evaluate(OVERFLOWING) == []


# --- events refused by a rate limit -----------------------------------------------------


def spend_the_session(base: str, session: str) -> None:
    """Spend the rest of a widget session's rate limit from outside the browser (what a shared
    NAT address, or a burst of searches, would do): requests until one is refused."""
    for _ in range(STRICT_PER_SESSION + 5):
        if requests.post(base + "/api/events", json={"session": session}, timeout=10).status_code == 429:
            return
    raise AssertionError("the session's limit was never reached")


def test_events_refused_by_the_session_rate_limit_are_sent_again_after_retry_after(phone, site):
    sessions: list[str] = []
    answers: list[tuple[str, int]] = []
    phone.on("request", lambda r: sessions.append(json.loads(r.post_data)["session"]) if r.url.endswith("/api/suggest") else None)
    phone.on("response", lambda r: answers.append((json.loads(r.request.post_data)["type"], r.status))
             if r.url.endswith("/api/events") and r.request.method == "POST" else None)
    phone.goto(site.customer + "/form?to=strict")
    search_id = ask(phone, QUESTION).get_attribute("data-search-id")
    session = sessions[-1]

    spend_the_session(site.strict, session)
    phone.locator("[data-deflect-suggestion]").first.tap()
    assert stored(site.db, search_id, "click"), answers
    phone.wait_for_timeout(200)  # the browser's events are seen while Playwright is called
    assert answers[:2] == [("click", 429), ("click", 202)], answers

    spend_the_session(site.strict, session)
    phone.locator("[data-deflect-helpful]").tap()
    expect(phone.locator(".dfl-feedback-done")).to_contain_text("glad that helped", timeout=8000)
    assert stored(site.db, search_id, "helpful")
    phone.wait_for_timeout(200)
    assert answers[2:] == [("helpful", 429), ("helpful", 202)], answers


# --- text size -------------------------------------------------------------------------

SIZES = """() => {
  const size = s => { const e = document.querySelector(s); return e && parseFloat(getComputedStyle(e).fontSize); };
  return {title: size('.dfl-title'), snippet: size('.dfl-snippet'), previewTitle: size('.dfl-preview-title'),
          previewSnippet: size('.dfl-preview-snippet'), button: size('.dfl-button')};
}"""


def sizes_with_preview(page: Page) -> dict:
    ask(page, QUESTION)
    touch(page, page.locator("[data-deflect-suggestion]").first)
    expect(page.locator(".dfl-preview")).to_be_visible()
    return page.evaluate(SIZES)


def test_at_the_default_16px_the_widget_s_text_sizes_are_unchanged(phone, site):
    phone.goto(site.customer + "/form")
    assert sizes_with_preview(phone) == {"title": 16, "snippet": 14.4, "previewTitle": 16, "previewSnippet": 16, "button": 14.4}


def test_a_larger_default_font_grows_titles_and_snippets_together(phone, site):
    """A visitor's larger default font (root 24 px) on a page that sets its body in px."""
    phone.goto(site.customer + "/form?root=24")
    sizes = sizes_with_preview(phone)
    assert sizes["title"] >= sizes["snippet"] and sizes["previewTitle"] >= sizes["previewSnippet"] * 0.99, sizes
    assert sizes == {"title": 24, "snippet": 21.6, "previewTitle": 24, "previewSnippet": 24, "button": 21.6}


def test_on_deflect_s_own_help_page_a_larger_root_font_keeps_titles_as_large_as_snippets(phone, site):
    phone.goto(site.base + "/help")
    phone.evaluate("document.documentElement.style.fontSize = '150%'")
    sizes = sizes_with_preview(phone)
    assert sizes["title"] == 24 and sizes["title"] >= sizes["snippet"], sizes


# --- tap targets -----------------------------------------------------------------------


def tap_targets(page: Page) -> dict:
    targets = {"yes": "[data-deflect-helpful]", "no": "[data-deflect-not-helpful]", "open": "[data-deflect-open]"}
    return {name: page.locator(selector).bounding_box()["height"] for name, selector in targets.items()}


def test_on_a_touch_screen_the_buttons_and_the_article_link_are_44px_tall(phone, site):
    phone.goto(site.customer + "/form")
    if not phone.evaluate("matchMedia('(pointer: coarse)').matches"):
        pytest.skip("this Chromium does not report (pointer: coarse) for a has_touch context: nothing to measure")
    sizes_with_preview(phone)
    heights = tap_targets(phone)
    assert min(heights.values()) >= 44, heights
    assert phone.locator("[data-deflect-not-helpful]").bounding_box()["width"] >= 44


def test_with_a_mouse_the_buttons_keep_their_compact_size(browser, site):
    context, page = open_page(browser, viewport={"width": 1100, "height": 900})
    try:
        page.goto(site.customer + "/form")
        assert page.evaluate("matchMedia('(pointer: fine)').matches")
        ask(page, QUESTION)
        page.locator("[data-deflect-suggestion]").first.click()
        heights = tap_targets(page)
        assert max(heights.values()) < 40, heights
    finally:
        context.close()
