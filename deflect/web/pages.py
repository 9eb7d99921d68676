"""The pages people use: the demo help form, articles, the idea board and the admin dashboard.

Pages are rendered with Jinja's autoescaping; article bodies come from the core's sanitising
Markdown renderer. Anything dynamic in the browser is done by static scripts (no inline
JavaScript), so the pages can run under a strict Content-Security-Policy (see security.py).
"""

from __future__ import annotations

import html
import re
from collections import defaultdict

from flask import Blueprint, current_app, redirect, render_template, request, send_file, url_for

from ..article_html import is_safe_url
from ..links import IMAGE_ROUTE, kb_image
from ..locales import is_language_tag, locale_matches, primary_language

pages = Blueprint("pages", __name__, template_folder="templates")

STATUS_LABELS = {
    "open": "Open",
    "planned": "Planned",
    "in_progress": "In progress",
    "shipped": "Shipped",
    "declined": "Declined",
    "merged": "Merged",
}
BOARD_STATUSES = ("open", "planned", "in_progress", "shipped", "declined")
MAX_TICKET_CHARS = 5000


def _runtime():
    return current_app.extensions["deflect"]


def _settings():
    return current_app.extensions["deflect_settings"]


@pages.app_template_filter("safe_href")
def safe_href(value: str | None) -> str:
    """A link target that cannot run script: unsafe schemes (javascript:, data:, ...) become '#'."""
    return value if value and is_safe_url(value) else "#"


@pages.app_template_filter("status_label")
def status_label(value: str) -> str:
    return STATUS_LABELS.get(value, value.replace("_", " ").capitalize())


def _category(article: dict) -> str:
    """Group articles by their top folder (account/, billing/, ...) for browsing; in a folder per
    language (ko/billing/...), by the folder inside it, with the language: "Billing (ko)", a group
    apart from the English "Billing" on /articles. The folder is the article's locale or its language
    (ko/ holds ko and ko-KR articles alike, as searches match them: one group, not two)."""
    parts = article["id"].split("/")
    head = parts[0] if len(parts) > 1 else "general"
    locale = str(article.get("locale", "")).lower().replace("_", "-")
    if len(parts) > 1 and head.lower().replace("_", "-") in (locale, primary_language(locale)):
        if len(parts) == 2:
            return f"Other languages ({head})"  # a folder per language, such as ko/
        return f"{_folder_name(parts[1])} ({head})"  # ko/billing/refunds
    return _folder_name(head)


def _folder_name(folder: str) -> str:
    return folder.replace("-", " ").replace("_", " ").capitalize()


def _topics(locale: str) -> list[tuple[str, str, int]]:
    """(category, anchor, article count) for the help page's "browse by topic" list; a locale
    matches as everywhere else (ko-KR and ko_KR list the ko articles)."""
    counts: dict[str, int] = defaultdict(int)
    for article in _runtime().articles():
        if not locale or locale_matches(article["locale"], locale):
            counts[_category(article)] += 1
    return [(name, _anchor(name), n) for name, n in sorted(counts.items())]


def _anchor(name: str) -> str:
    return "topic-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _page(template: str, code: int = 200, **context):
    return render_template(template, **context), code


@pages.get("/")
def home():
    return redirect(url_for("pages.help_form"))


@pages.get("/favicon.ico")
def favicon():
    return redirect(url_for("static", filename="favicon.svg"))


@pages.get("/help")
def help_form():
    locale = request.args.get("locale", "")
    locale = locale if is_language_tag(locale) else ""
    return _page("help.html", locale=locale, topics=_topics(locale), nav="help")


@pages.post("/help")
def help_sent():
    """The demo form's target: a real help desk would create the ticket here."""
    subject = (request.form.get("subject") or "").strip()
    details = (request.form.get("details") or "").strip()
    errors = []
    if not subject:
        errors.append(("subject", "Please tell us what your question is about."))
    if len(subject) > 300 or len(details) > MAX_TICKET_CHARS:
        errors.append(("details", "That message is too long."))
    if errors:
        return _page("help.html", 400, errors=errors, form=request.form, locale="", topics=_topics(""), nav="help")
    return _page("help_sent.html", subject=subject, email=(request.form.get("email") or "").strip(), nav="help")


@pages.errorhandler(413)
def _form_too_large(exc):
    """A form over the body limit (16 KB) is the help form said again with its error, not JSON."""
    errors = [("details", "That message is too long.")]
    return _page("help.html", 413, errors=errors, form={}, locale="", topics=_topics(""), nav="help")


@pages.get("/articles")
def article_list():
    groups: dict[str, list[dict]] = defaultdict(list)
    for article in sorted(_runtime().articles(), key=lambda a: a["title"].lower()):
        groups[_category(article)].append(article)
    listed = [(name, _anchor(name), items) for name, items in sorted(groups.items())]
    return _page("articles.html", groups=listed, nav="articles")


@pages.get("/articles/<path:article_id>")
def article_page(article_id: str):
    article = _runtime().article(article_id)
    if article is None:
        return _page("not_found.html", 404, what="article", nav="articles")
    body = _without_title_heading(article["html"], article["title"])
    return _page("article.html", article=article, body=body, category=_category(article), nav="articles")


_LEADING_H1 = re.compile(r"\A\s*<h1(?: [^>]*)?>(.*?)</h1>\s*", re.S)


def _without_title_heading(body_html: str, title: str) -> str:
    """Drop the body's leading "# Title" heading: the page already shows the title as its h1."""
    match = _LEADING_H1.match(body_html)
    if match and html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip() == title.strip():
        return body_html[match.end() :]
    return body_html


# Images are the writers' own files: an SVG opened on its own could carry script, so every image
# answer forbids running anything (sandbox: no script, no plugin, an origin of its own).
IMAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox; frame-ancestors 'none'"


@pages.get(IMAGE_ROUTE + "<path:name>")
def kb_image_file(name: str):
    """An image from kb_dir that a published article shows (deflect.links.kb_image says which files qualify)."""
    found = kb_image(_settings().kb_dir, name) if _runtime().shows_image(name) else None
    if found is None:
        return _page("not_found.html", 404, what="image", nav="articles")
    path, mimetype = found
    response = send_file(path, mimetype=mimetype, conditional=True, etag=True)
    response.headers["Content-Security-Policy"] = IMAGE_CSP
    return response


@pages.get("/ideas")
def ideas_board():
    from ..ideas import list_ideas

    status = request.args.get("status", "")
    if status and status not in BOARD_STATUSES:
        return _page("not_found.html", 404, what="idea status", nav="ideas")
    ideas = [i for i in list_ideas(_runtime().db) if i["status"] != "merged"]
    counts = {s: sum(1 for i in ideas if i["status"] == s) for s in BOARD_STATUSES}
    shown = [i for i in ideas if i["status"] == status] if status else ideas
    return _page(
        "ideas.html", ideas=shown, counts=counts, total=len(ideas), status=status, statuses=BOARD_STATUSES, nav="ideas"
    )


@pages.get("/admin")
def admin():
    return _page("admin.html", token_configured=bool(_settings().admin_token), nav="admin")
