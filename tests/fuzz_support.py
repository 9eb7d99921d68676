"""Fuzzing shared by tests/test_fuzz*.py (a few hundred inputs each, in CI) and bench/fuzz.py (the big run).

Two kinds of fuzzing:
- `fuzz_api`: schemathesis generates requests from GET /api/openapi.json (valid ones, and
  invalid ones that break the schema on purpose), sends them to a real server with the admin
  token, and checks that none gets a 5xx and that every answer matches the document (status
  code listed, content type, response schema, headers).
- `PROPERTIES`: hypothesis on the article parser and renderer and on the request validators.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.reporting import with_reporter

# --- the API against its OpenAPI document ------------------------------------------------


@dataclass
class FuzzReport:
    """What one fuzzing run tried and found."""

    tried: int = 0
    server_errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    per_operation: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, other: FuzzReport) -> None:
        self.tried += other.tried
        self.server_errors += other.server_errors
        for code, n in other.statuses.items():
            self.statuses[code] = self.statuses.get(code, 0) + n
        self.failures += other.failures
        for name, n in other.per_operation.items():
            self.per_operation[name] = self.per_operation.get(name, 0) + n
        self.seconds += other.seconds


def api_checks() -> list:
    """No 5xx, and every answer is one the OpenAPI document describes."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]


# Operations that change the server's state in ways that would stop the rest of a run from
# exercising anything (they are fuzzed all the same, just last).
_LAST = ("POST /api/reindex", "POST /api/clusters/rebuild")
REQUEST_TIMEOUT = 30  # seconds; any answer takes far less, so a wait this long is a hang


def fuzz_api(
    base: str,
    token: str,
    examples: int,
    modes: tuple[str, ...] = ("positive", "negative"),
    only: Callable[[str], bool] | None = None,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """Fuzz every operation of base's /api/openapi.json with up to `examples` inputs per operation and mode."""
    import requests
    import schemathesis
    from schemathesis import GenerationMode

    document = requests.get(f"{base}/api/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: op.label in _LAST)
    checks = api_checks()
    auth = {"Authorization": f"Bearer {token}"}
    report = FuzzReport()
    with requests.Session() as http:
        for operation in operations:
            if only is not None and not only(operation.label):
                continue
            for mode in modes:
                if mode == "negative" and not _has_inputs(operation):
                    continue  # nothing to make invalid
                one = _fuzz_operation(http, base, operation, GenerationMode(mode), examples, checks, auth, seed)
                report.add(one)
                if progress is not None:
                    progress(f"{operation.label} [{mode}]: {one.tried} inputs, {one.server_errors} 5xx, "
                             f"{len(one.failures)} failures, {one.seconds:.1f} s")
    return report


class _GiveUp(Exception):
    """Stop fuzzing an operation: the server did not answer."""


def _has_inputs(operation) -> bool:
    return any(len(part) for part in (operation.path_parameters, operation.query, operation.body))


def _fuzz_operation(http, base, operation, mode, examples, checks, auth, seed) -> FuzzReport:
    import requests

    report = FuzzReport()
    seen_failures: set[str] = set()
    started = time.monotonic()

    def attempt(case) -> None:
        try:
            response = case.call(base_url=base, session=http, headers=auth, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as exc:
            report.failures.append(f"{operation.label} [{mode.value}]: no answer: {exc}\n"
                                   f"    reproduce: {case.as_curl_command(headers=auth)}")
            raise _GiveUp from None
        report.tried += 1
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            report.server_errors += 1
        try:
            case.validate_response(response, checks=checks, headers=auth)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every check failure is reported, not raised
            text = f"{operation.label} [{mode.value}] {response.status_code}: {_first_lines(exc)}"
            key = text.split("\n")[0]
            if key not in seen_failures:
                seen_failures.add(key)
                report.failures.append(f"{text}\n    reproduce: {case.as_curl_command(headers=auth)}")

    run = _fuzz_settings(examples, seed)(given(case=operation.as_strategy(generation_mode=mode))(attempt))
    try:
        with with_reporter(lambda *_: None):  # failures are collected above, not printed by hypothesis
            run()
    except _GiveUp:
        pass  # a server that stops answering would make every further input time out too
    except Unsatisfiable:
        pass  # nothing to negate (an operation without parameters or body has no invalid input)
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - e.g. a schema hypothesis cannot generate from
        report.failures.append(f"{operation.label} [{mode.value}]: could not fuzz: {_first_lines(exc)}")
    report.per_operation[f"{operation.label} [{mode.value}]"] = report.tried
    report.seconds = time.monotonic() - started
    return report


def _first_lines(exc: BaseException, n: int = 6) -> str:
    return "\n    ".join(str(exc).strip().splitlines()[:n]) or type(exc).__name__


# --- hostile text ----------------------------------------------------------------------------

# Each would set window.__xss (or call fetch) if it ever ran in a page.
HOSTILE_FRAGMENTS = [
    "<script>window.__xss='script'</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=\"window.__xss='img'\">",
    "<svg onload=\"window.__xss='svg'\"><circle r=1 /></svg>",
    "<svg><script>window.__xss='svg-script'</script></svg>",
    "<a href=\"javascript:window.__xss='a'\">a</a>",
    "<a href='x' onclick=\"window.__xss='onclick'\">b</a>",
    "<iframe src=\"javascript:window.__xss='iframe'\"></iframe>",
    "<iframe srcdoc=\"<script>window.__xss='srcdoc'</script>\"></iframe>",
    "<object data=\"javascript:window.__xss='object'\"></object>",
    "<embed src=\"data:text/html,<script>window.__xss='embed'</script>\">",
    "<details open ontoggle=\"window.__xss='toggle'\">d</details>",
    "<body onload=\"window.__xss='body'\">",
    "<style>@import 'javascript:window.__xss=1';</style>",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:window.__xss='meta'\">",
    "<form action=\"javascript:window.__xss='form'\"><button>go</button></form>",
    "<math><mtext><table><mglyph><style><img src=x onerror=\"window.__xss='mxss'\"></style></mglyph></table></mtext></math>",
    "<<script>script>window.__xss='nested'<</script>/script>",
    "<img src=\"x\" on\x00error=\"window.__xss='nul'\">",
    "[link](javascript:window.__xss='md-link')",
    "[caps](JaVaScRiPt:window.__xss='caps')",
    "[entity](jav&#x61;script:window.__xss='entity')",
    "[decimal](&#106;avascript:window.__xss='decimal')",
    "[colon](javascript&colon;window.__xss='colon')",
    "[spaced]( javascript:window.__xss='spaced')",
    "[angle](<javascript:window.__xss='angle'>)",
    "[tab](java\tscript:window.__xss='tab')",
    "[vb](vbscript:msgbox(1))",
    "[data](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MTwvc2NyaXB0Pg==)",
    "![image](javascript:window.__xss='md-image')",
    "![svg](data:image/svg+xml,<svg onload=window.__xss=1>)",
    "![title](x \"\" onerror=\"window.__xss='title'\")",
    "[ref][evil]\n\n[evil]: javascript:window.__xss='ref'",
    "<javascript:window.__xss='autolink'>",
    "<http://a.example/\"onmouseover=\"window.__xss='autolink-attr'>",
    "`<script>window.__xss='code'</script>`",
    "```html\n<script>window.__xss='fence'</script>\n```",
    "&lt;script&gt;window.__xss='escaped'&lt;/script&gt;",
    "\"><script>window.__xss='break-attr'</script>",
    "'><img src=x onerror=window.__xss='single'>",
    "{{ 7*7 }}{% raw %}",
    "</textarea><script>window.__xss='textarea'</script>",
    "</title><script>window.__xss='title-tag'</script>",
    # Raw HTML that the allowlist (article_raw_html = "safe") must take apart: URLs, nesting, parser tricks.
    "<a href=\"jaVasCript:window.__xss='raw-caps'\">c</a>",
    "<a href=\"&#106;avascript:window.__xss='raw-decimal'\">d</a>",
    "<a href=\"java&#x09;script:window.__xss='raw-tab'\">t</a> <a href=\" javascript:window.__xss='raw-space'\">s</a>",
    "<img src=\"data:image/svg+xml,&lt;svg onload=window.__xss=1&gt;\" alt=\"data\">",
    "<img srcset=\"javascript:window.__xss='srcset'\" src=\"x\"><input type=image src=x onerror=\"window.__xss='input'\">",
    "<button formaction=\"javascript:window.__xss='button'\">b</button><table background=\"javascript:1\"><tr><td>t</td></tr></table>",
    "<base href=\"javascript:window.__xss='base'//\"><link rel=stylesheet href=\"javascript:window.__xss='link'\">",
    "<svg><a xlink:href=\"javascript:window.__xss='xlink'\"><text>x</text></a></svg><math href=\"javascript:1\">m</math>",
    "<div style=\"background:url(javascript:window.__xss=1)\" id=\"main\" class=\"btn\">styled</div>",
    "<noscript><p title=\"</noscript><img src=x onerror=window.__xss='noscript'>\"></noscript>",
    "<template><script>window.__xss='template'</script></template><!--><img src=x onerror=\"window.__xss='cmt'\">-->",
    "<object data=\"data:text/html,<script>window.__xss='object-data'</script>\"></object>",
    "<a href=\"https://ok.example/\" target=\"_blank\" ping=\"https://evil.example/\">ok</a>",
    "<div><b><a href=\"javascript:window.__xss='unclosed-a'\">unclosed <p>nested<table><td>cell",
    "<img src=\"x\" alt=\"unclosed\" onerror=\"window.__xss='unclosed-img'\"",
]

MARKDOWN_PIECES = [
    "# A heading\n", "## Sub heading\n", "- a list item that is long enough\n", "1. step one\n",
    "> quoted\n", "**bold** and _em_\n", "| a | b |\n|---|---|\n| 1 | 2 |\n", "\n\n", "---\n",
    "[ok](https://help.example.com/x)", "![pic](/static/favicon.svg)", "[rel](../billing/refunds)",
    "mailto:someone@example.com", "    indented code\n",
]

hostile_text = st.lists(
    st.one_of(
        st.sampled_from(HOSTILE_FRAGMENTS),
        st.sampled_from(MARKDOWN_PIECES),
        st.text(max_size=40),
        st.text(alphabet="<>&\"'=/:;()[]!#*`\\ \n\tjavascriptonerrorload", max_size=60),
    ),
    max_size=12,
).map("".join)

# Never in a rendered article or anywhere in our pages.
_SCRIPTABLE_TAGS = {"script", "iframe", "frame", "object", "embed", "applet", "base", "style", "svg", "math"}
# Our page templates use these; rendered Markdown never may.
_PAGE_TAGS = {"meta", "link", "form", "input", "textarea", "button", "select"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag


def scriptable_url(value: str) -> bool:
    """Would a browser run (or render as a document) this URL? Decoded the way a browser does."""
    decoded = html.unescape(html.unescape(value))
    compact = "".join(c for c in decoded if ord(c) > 0x20 and c not in "\x7f").lower()
    return compact.startswith(("javascript:", "vbscript:", "data:"))


def inert_problems(markup: str, allowed_scripts: tuple[str, ...] = (), page: bool = False) -> list[str]:
    """Everything in an HTML fragment (or with page=True, a whole page) that could run script; [] when inert."""
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    problems = []
    for tag, attrs in parser.tags:
        if tag == "script" and any(n == "src" and v in allowed_scripts for n, v in attrs):
            continue
        if tag in _SCRIPTABLE_TAGS or (tag in _PAGE_TAGS and not page):
            problems.append(f"<{tag}>")
        if tag == "meta" and any(n == "http-equiv" and (v or "").lower() == "refresh" for n, v in attrs):
            problems.append("<meta http-equiv=refresh>")
        for name, value in attrs:
            if name.startswith("on") or name in ("srcdoc", "formaction"):
                problems.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action", "data", "xlink:href", "poster", "background") and value is not None:
                if scriptable_url(value):
                    problems.append(f"<{tag} {name}={value!r}>")
    return problems


# --- properties: the article parser and renderer ---------------------------------------------

_yaml_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
    st.sampled_from(HOSTILE_FRAGMENTS), st.dates(),
)
_yaml_value = st.recursive(_yaml_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=10), inner, max_size=4), max_leaves=12)
_front_keys = st.sampled_from(["id", "title", "locale", "tags", "url", "draft"]) | st.text(max_size=10)


# Past Python's recursion limit PyYAML raises RecursionError, which parse_article turns into
# a warning (tests/test_fuzz_inputs.py::test_deeply_nested_front_matter_is_a_warning_not_a_crash).
MAX_FRONT_MATTER_DEPTH = 3000


@st.composite
def article_bytes(draw) -> bytes:
    """Article files as writers (and accidents) make them: front matter or not, any encoding, hostile text."""
    import yaml

    kind = draw(st.sampled_from(["yaml", "raw-front", "plain", "bytes", "deep"]))
    body = draw(hostile_text)
    if kind == "yaml":
        meta = draw(st.dictionaries(_front_keys, _yaml_value, max_size=6))
        try:
            front = yaml.safe_dump(meta, allow_unicode=draw(st.booleans()))
        except yaml.YAMLError:
            front = "title: x\n"
        text = f"---\n{front}---\n{body}"
    elif kind == "raw-front":
        front = draw(st.text(alphabet=st.sampled_from(list("abc:-[]{}'\"!&*|>%@` \n\t#") + ["\u00e9", "\ufeff"]),
                             max_size=80))
        text = f"---\n{front}\n---\n{body}"
    elif kind == "deep":
        depth = draw(st.integers(1, MAX_FRONT_MATTER_DEPTH))
        text = f"---\ntitle: {'[' * depth}{']' * draw(st.integers(0, depth))}\n---\n{body}"
    else:
        text = body
    raw = text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"])), errors="replace")
    if kind == "bytes":
        raw = draw(st.binary(max_size=200))
    return raw


def check_parse_article(raw: bytes) -> None:
    """Any file parses into a well-formed article or raises ArticleError (a warning), never anything else."""
    from deflect.articles import ArticleError, parse_article, render_html

    try:
        article = parse_article(raw, "fuzz/article.md")
    except ArticleError as exc:
        assert str(exc)
        return
    assert isinstance(article.id, str) and article.id
    assert isinstance(article.title, str)
    assert all(isinstance(t, str) for t in article.tags)
    assert isinstance(article.url, str) and isinstance(article.locale, str)
    assert article.passages and article.passages[0].kind == "title"
    assert inert_problems(render_html(article.body)) == []


def check_render_html(markdown_text: str) -> None:
    """Whatever the Markdown, the HTML has no script, no event handler and no script-capable URL."""
    from deflect.articles import render_html

    rendered = render_html(markdown_text)
    assert inert_problems(rendered) == [], (markdown_text, rendered)


@st.composite
def kb_folders(draw) -> dict[str, bytes]:
    names = draw(st.lists(st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8})?", fullmatch=True), min_size=1, max_size=5, unique=True))
    return {f"{name}.md": draw(article_bytes()) for name in names}


def check_load_kb(files: dict[str, bytes]) -> None:
    """A KB of good and bad files loads the good ones; each bad one gets a warning naming it."""
    from deflect.articles import ArticleError, parse_article
    from deflect.front_matter import is_ignored_keys_warning
    from deflect.kb_folder import load_kb

    with tempfile.TemporaryDirectory() as tmp:
        for rel, raw in files.items():
            path = Path(tmp, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(raw)
        articles, warnings = load_kb(tmp)
    loaded = {a.path for a in articles}
    # A key deflect does not read is one warning for the whole KB, naming its first file in brackets.
    keys_not_read = [w for w in warnings if is_ignored_keys_warning(w)]
    assert all(re.search(r"\((?:the first: )?(.+)\); deflect reads ", w).group(1) in files for w in keys_not_read), warnings
    warned = {w.split(":", 1)[0] for w in warnings if w not in keys_not_read}
    assert warned <= set(files), warnings
    for rel, raw in files.items():
        try:
            draft = parse_article(raw, rel).draft
        except ArticleError:
            assert rel in warned, (rel, warnings)
            continue
        assert draft or rel in loaded or rel in warned, (rel, warnings)  # warned: a duplicate id


# --- properties: request validators ----------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)


def _field_dicts(fields: list[str], good: dict) -> st.SearchStrategy[dict]:
    """Objects whose fields are mostly plausible and sometimes anything at all."""
    value = {name: st.one_of(st.just(good[name]), json_values) if name in good else json_values for name in fields}
    return st.fixed_dictionaries({}, optional=value | {"unexpected": json_values})


def _expect_api_error(call, *args) -> object:
    from deflect.web.errors import ApiError

    try:
        return call(*args)
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.code and exc.message and exc.field, vars(exc)
        return None


def check_suggest_request(data: dict) -> None:
    from deflect.web.validation import suggest_request

    out = _expect_api_error(suggest_request, data, 1000)
    if out is not None:
        assert isinstance(out["query"], str) and out["query"].strip()
        assert isinstance(out["k"], int) and 1 <= out["k"] <= 20
        assert set(out["types"]) <= {"article", "idea"} and out["types"]


def check_event_request(data: dict) -> None:
    from deflect.web.validation import EVENT_TYPES, event_request

    out = _expect_api_error(event_request, data)
    if out is not None:
        assert out["event_type"] in EVENT_TYPES and isinstance(out["search_id"], str)
        requester = out["requester"]
        assert requester is None or set(requester) == {"customer_id", "email", "mrr"}


def check_requester(data) -> None:
    from deflect.web.validation import requester_fields

    out = _expect_api_error(requester_fields, data)
    if out is not None:
        assert out["mrr"] is None or (0 <= out["mrr"] < 1e12)


def check_timestamp(value: str) -> None:
    from deflect.web.errors import ApiError
    from deflect.web.validation import period_params

    for bound in ("since", "until"):
        try:
            out = period_params({bound: value})
        except ApiError as exc:
            assert exc.status == 400 and exc.field == bound and exc.message, vars(exc)
            continue
        assert out[bound == "since"] is None  # the other bound stays open
        assert out[bound == "until"] is None if value == "" else isinstance(out[bound == "until"], float)


def check_json_body(case: tuple[bytes, str]) -> None:
    """Any body with any content type: a JSON object free of NUL/lone surrogates, or a 4xx naming what is wrong."""
    from flask import Flask, request

    from deflect.web.validation import bad_text_field, json_body

    raw, content_type = case
    with Flask(__name__).test_request_context("/api/x", method="POST", data=raw, content_type=content_type):
        out = _expect_api_error(json_body, request)
    if out is not None:
        assert isinstance(out, dict) and bad_text_field(out) is None


def check_validate_idea(data: dict) -> None:
    from deflect.ideas import MAX_VOTES, IdeaError, validate_idea

    try:
        out = validate_idea(data)
    except IdeaError as exc:
        assert exc.field and str(exc)
        return
    assert 0 <= out["votes"] <= MAX_VOTES and out["title"]


_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=100),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 2000).map(lambda n: b"[" * n + b"]" * n),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(lambda v: json.dumps(v).encode()),
)
_content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", "", "application/x-www-form-urlencoded"])

PROPERTIES: list[tuple[str, st.SearchStrategy, Callable]] = [
    ("parse_article", article_bytes(), check_parse_article),
    ("render_html", hostile_text, check_render_html),
    ("load_kb", kb_folders(), check_load_kb),
    ("suggest_request", _field_dicts(["query", "k", "types", "locale", "session"],
                                     {"query": "I forgot my password", "k": 5, "types": ["article"], "locale": "en"}),
     check_suggest_request),
    ("event_request", _field_dicts(["search_id", "type", "item_id", "item_type", "requester", "session"],
                                   {"search_id": "abc123", "type": "click", "item_id": "billing/refunds",
                                    "item_type": "article"}), check_event_request),
    ("requester_fields", json_values | _field_dicts(["customer_id", "email", "mrr"],
                                                    {"customer_id": "c1", "email": "a@b.example", "mrr": 10}),
     check_requester),
    ("period_params", st.text(max_size=40) | st.from_regex(r"-?\d{1,14}(\.\d*)?(e\d{1,3})?", fullmatch=True)
     | st.datetimes().map(lambda d: d.isoformat()), check_timestamp),
    ("json_body", st.tuples(_bodies, _content_types), check_json_body),
    ("validate_idea", _field_dicts(["id", "title", "description", "status", "votes"],
                                   {"title": "Dark mode", "status": "open", "votes": 3}), check_validate_idea),
]


def _fuzz_settings(examples: int, seed: int | None) -> settings:
    """Hypothesis settings for counted runs: no deadline, no example database, no shrinking
    (failures are collected and reported as found, not minimised and raised)."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is not None,
        suppress_health_check=list(HealthCheck),
        phases=["explicit", "reuse", "generate"],
    )


def run_property(strategy: st.SearchStrategy, check: Callable, examples: int, seed: int | None = None) -> tuple[int, list[str]]:
    """Run one property for `examples` inputs; return (inputs tried, failures) instead of raising."""
    tried = [0]

    def counted(value) -> None:
        tried[0] += 1
        check(value)

    run = _fuzz_settings(examples, seed)(given(strategy)(counted))
    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported with its falsifying example
        return tried[0], [f"{type(exc).__name__}: {_first_lines(exc, 12)}"]
    return tried[0], []
