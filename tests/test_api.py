"""The HTTP API over real HTTP (DESIGN section 5)."""

from __future__ import annotations

import json
import logging
import re

import pytest
import requests
import sqlalchemy as sa
from conftest import ADMIN_TOKEN, DATA, SAMPLE_KB, TINY_KB, read_jsonl, serve_app, write_kb

from deflect.index_folder import current_version_dir
from deflect.kb_folder import load_kb

TIMEOUT = 60


def post_suggest(base: str, body, **kwargs) -> requests.Response:
    return requests.post(f"{base}/api/suggest", json=body, timeout=TIMEOUT, **kwargs)


@pytest.fixture(scope="module")
def article_locales(live_server) -> dict[str, str]:
    articles = requests.get(f"{live_server}/api/articles", timeout=TIMEOUT).json()["articles"]
    return {a["id"]: a["locale"] for a in articles}


# --- health, articles, openapi -------------------------------------------------------


def test_healthz(live_server, sample_runtime):
    r = requests.get(f"{live_server}/healthz", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) >= {"status", "articles", "ideas", "index_version"}
    assert body["status"] == "ok"
    assert body["articles"] == len(load_kb(SAMPLE_KB)[0])
    ideas = requests.get(f"{live_server}/api/ideas", timeout=TIMEOUT).json()["ideas"]
    assert body["ideas"] == len(ideas) > 0
    assert isinstance(body["index_version"], str) and body["index_version"]
    assert current_version_dir(sample_runtime.settings.index_dir).name == f"v-{body['index_version']}"


def test_list_articles(live_server):
    r = requests.get(f"{live_server}/api/articles", timeout=TIMEOUT)
    assert r.status_code == 200
    articles = r.json()["articles"]
    expected = {a.id: a for a in load_kb(SAMPLE_KB)[0]}
    assert {a["id"] for a in articles} == set(expected)
    for a in articles:
        assert {"id", "title", "url", "locale", "tags"} <= a.keys()
        assert a["title"] == expected[a["id"]].title
        assert a["locale"] == expected[a["id"]].locale


def test_get_one_article_with_html(live_server):
    r = requests.get(f"{live_server}/api/articles/account/reset-password", timeout=TIMEOUT)
    assert r.status_code == 200
    article = r.json()
    assert article["id"] == "account/reset-password"
    assert article["title"] and article["url"]
    assert "<h" in article["html"] and "<p>" in article["html"]
    assert "<script" not in article["html"].lower()
    assert article["markdown"].strip()


def test_get_korean_article(live_server):
    r = requests.get(f"{live_server}/api/articles/ko/reset-password", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json()["locale"] == "ko"
    assert "비밀번호" in r.json()["html"]


@pytest.mark.parametrize("article_id", ["no/such-article", "account", "account/reset-password/extra"])
def test_unknown_article_is_a_404_json_error(live_server, article_id):
    r = requests.get(f"{live_server}/api/articles/{article_id}", timeout=TIMEOUT)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] and error["message"]
    assert error.get("field") == "id"


def test_unknown_route_is_a_404_json_error(live_server):
    r = requests.get(f"{live_server}/api/no-such-endpoint", timeout=TIMEOUT)
    assert r.status_code == 404
    assert r.json()["error"]["code"]


def test_openapi_lists_the_endpoints(live_server):
    r = requests.get(f"{live_server}/api/openapi.json", timeout=TIMEOUT)
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.")
    assert "post" in spec["paths"]["/api/suggest"]
    for path in ("/healthz", "/api/articles", "/api/reindex"):
        assert path in spec["paths"]


# --- suggest -------------------------------------------------------------------------


def _check_result_shape(results):
    for r in results:
        assert set(r) >= {"type", "id", "title", "url", "snippet", "score"}
        assert r["type"] in ("article", "idea")
        assert isinstance(r["id"], str) and r["id"]
        assert isinstance(r["title"], str) and r["title"]
        assert isinstance(r["url"], str) and r["url"]
        assert isinstance(r["snippet"], str)
        assert isinstance(r["score"], (int, float)) and 0.0 <= r["score"] <= 1.0
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True), "results must be best first"


def test_suggest_contract(live_server):
    r = post_suggest(live_server, {"query": "how do I get a refund"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) >= {"search_id", "answered", "results"}
    assert isinstance(body["search_id"], str) and body["search_id"]
    assert isinstance(body["answered"], bool)
    assert len(body["results"]) == 5  # default k
    _check_result_shape(body["results"])
    assert len({(x["type"], x["id"]) for x in body["results"]}) == 5, "no duplicates"
    articles = [x for x in body["results"] if x["type"] == "article"]
    assert all(x["snippet"] for x in articles)


def test_forgot_password_finds_the_reset_article(live_server):
    body = post_suggest(live_server, {"query": "I forgot my password"}).json()
    assert body["results"][0]["type"] == "article"
    assert body["results"][0]["id"] == "account/reset-password"
    assert body["results"][0]["url"] == "/articles/account/reset-password"


def test_search_ids_are_unique(live_server):
    ids = {post_suggest(live_server, {"query": "change my plan"}).json()["search_id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("k", [1, 3, 20])
def test_suggest_respects_k(live_server, k):
    body = post_suggest(live_server, {"query": "billing and invoices", "k": k}).json()
    assert len(body["results"]) == k
    _check_result_shape(body["results"])


def test_suggest_types_idea_returns_only_ideas(live_server):
    body = post_suggest(live_server, {"query": "dark mode for the app", "types": ["idea"], "k": 10}).json()
    assert body["results"], "the sample ideas board should match something"
    assert {r["type"] for r in body["results"]} == {"idea"}
    idea_ids = {i["id"] for i in requests.get(f"{live_server}/api/ideas", timeout=TIMEOUT).json()["ideas"]}
    assert {r["id"] for r in body["results"]} <= idea_ids
    _check_result_shape(body["results"])


def test_suggest_types_article_returns_only_articles(live_server, article_locales):
    body = post_suggest(live_server, {"query": "dark mode for the app", "types": ["article"]}).json()
    assert body["results"] and {r["type"] for r in body["results"]} == {"article"}
    assert {r["id"] for r in body["results"]} <= set(article_locales)


def test_ideas_are_suggested_alongside_articles(live_server):
    body = post_suggest(live_server, {"query": "I wish there was a dark theme", "k": 10}).json()
    assert "idea" in {r["type"] for r in body["results"]}


@pytest.mark.parametrize("locale", ["ko", "ko-KR", "KO", "ko_KR"])
def test_suggest_locale_ko_returns_only_korean_articles(live_server, article_locales, locale):
    body = post_suggest(
        live_server, {"query": "비밀번호를 잊어버렸어요", "locale": locale, "types": ["article"]}
    ).json()
    korean = [i for i, loc in article_locales.items() if loc == "ko"]
    assert len(body["results"]) == min(5, len(korean))
    assert all(article_locales[r["id"]] == "ko" for r in body["results"]), body["results"]
    assert body["results"][0]["id"] == "ko/reset-password"


def test_suggest_locale_en_excludes_korean_articles(live_server, article_locales):
    body = post_suggest(
        live_server, {"query": "비밀번호를 잊어버렸어요", "locale": "en", "k": 20, "types": ["article"]}
    ).json()
    assert body["results"]
    assert all(article_locales[r["id"]] == "en" for r in body["results"])


def test_suggest_posix_style_locale_matches_like_its_bcp47_form(live_server, article_locales):
    body = post_suggest(live_server, {"query": "I forgot my password", "locale": "en_US", "types": ["article"]}).json()
    assert body["results"] and all(article_locales[r["id"]] == "en" for r in body["results"])
    assert body["results"][0]["id"] == "account/reset-password"


@pytest.mark.parametrize("locale", ["fr", "fr-CA", "zz", "x-klingon"])
def test_suggest_in_a_language_the_kb_lacks_answers_in_its_default_language(live_server, article_locales, locale):
    """A French visitor of a help center written in English and Korean gets the English articles
    (default_locale), not an empty list; the Korean ones are never mixed in."""
    r = post_suggest(live_server, {"query": "I forgot my password", "locale": locale, "types": ["article"], "k": 20})
    assert r.status_code == 200
    results = r.json()["results"]
    assert results and all(article_locales[x["id"]] == "en" for x in results)
    assert results[0]["id"] == "account/reset-password"


@pytest.mark.parametrize(
    "query",
    ["???", "🙂🙂", "a", "x" * 1000, "  padded question about refunds  ", "Orbitask에서 CSV로 내보내기"],
)
def test_odd_but_valid_queries_succeed(live_server, query):
    r = post_suggest(live_server, {"query": query})
    assert r.status_code == 200, r.text
    _check_result_shape(r.json()["results"])


def test_content_type_with_charset_is_accepted(live_server):
    r = requests.post(
        f"{live_server}/api/suggest",
        data=json.dumps({"query": "refund"}).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200


def test_suggest_is_recorded_in_the_database(live_server, sample_runtime):
    query = "how do I export my tasks to a spreadsheet"
    body = post_suggest(live_server, {"query": query, "session": "sess-recorded", "k": 4}).json()
    sample_runtime.search_log.flush()  # searches are written by a background writer
    engine = sa.create_engine(sample_runtime.settings.database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT query, session, answered, top_score, index_version FROM searches WHERE id = :id"),
                {"id": body["search_id"]},
            ).one()
            shown = conn.execute(
                sa.text(
                    "SELECT rank, item_type, item_id, score FROM search_results WHERE search_id = :id ORDER BY rank"
                ),
                {"id": body["search_id"]},
            ).all()
    finally:
        engine.dispose()
    assert row.query == query
    assert row.session == "sess-recorded"
    assert bool(row.answered) == body["answered"]
    assert row.top_score == pytest.approx(body["results"][0]["score"])
    assert row.index_version == requests.get(f"{live_server}/healthz", timeout=TIMEOUT).json()["index_version"]
    assert [(s.rank, s.item_type, s.item_id) for s in shown] == [
        (i, r["type"], r["id"]) for i, r in enumerate(body["results"], 1)
    ]


def test_concurrent_suggests_all_succeed(live_server):
    from concurrent.futures import ThreadPoolExecutor

    questions = [q["text"] for q in read_jsonl(DATA / "sample_questions.jsonl")[:8]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda q: post_suggest(live_server, {"query": q}), questions))
    assert [r.status_code for r in responses] == [200] * len(questions)
    assert len({r.json()["search_id"] for r in responses}) == len(questions)


# --- bad input: always a 4xx JSON error naming the field, never a 500 -----------------


def _assert_error(r: requests.Response, field: str | None, statuses=range(400, 500)):
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    error = r.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:
        assert error.get("field") == field, error


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "query"),
        ({"k": 5}, "query"),
        ({"query": ""}, "query"),
        ({"query": "   \n\t "}, "query"),
        ({"query": "\u200b"}, "query"),  # zero-width space
        ({"query": "\u2060\ufeff \u00ad"}, "query"),  # word joiner, BOM, soft hyphen
        ({"query": "\u202e"}, "query"),  # right-to-left override
        ({"query": 42}, "query"),
        ({"query": 4.2}, "query"),
        ({"query": ["reset", "password"]}, "query"),
        ({"query": {"text": "reset"}}, "query"),
        ({"query": None}, "query"),
        ({"query": True}, "query"),
        ({"query": "x" * 1001}, "query"),
        ({"query": "refund", "k": 0}, "k"),
        ({"query": "refund", "k": -1}, "k"),
        ({"query": "refund", "k": 21}, "k"),
        ({"query": "refund", "k": 10**30}, "k"),
        ({"query": "refund", "k": "5"}, "k"),
        ({"query": "refund", "k": 2.5}, "k"),
        ({"query": "refund", "k": True}, "k"),
        ({"query": "refund", "k": None}, "k"),
        ({"query": "refund", "types": ["faq"]}, "types"),
        ({"query": "refund", "types": ["article", "faq"]}, "types"),
        ({"query": "refund", "types": "article"}, "types"),
        ({"query": "refund", "types": []}, "types"),
        ({"query": "refund", "types": [["article"]]}, "types"),
        ({"query": "refund", "types": {"article": True}}, "types"),
        ({"query": "refund", "locale": 123}, "locale"),
        ({"query": "refund", "locale": ""}, "locale"),
        ({"query": "refund", "locale": ["ko"]}, "locale"),
        ({"query": "refund", "locale": "ko; DROP TABLE"}, "locale"),
        ({"query": "refund", "session": 7}, "session"),
        ({"query": "refund", "session": ""}, "session"),
        ({"query": "refund", "session": "s" * 201}, "session"),
    ],
)
def test_bad_suggest_fields_are_400_naming_the_field(live_server, body, field):
    r = post_suggest(live_server, body)
    _assert_error(r, field, statuses=(400, 422))


def test_an_integer_too_long_to_convert_is_refused_naming_its_field(live_server):
    """Valid JSON, but past Python's 4,300-digit conversion limit: 400 naming k, not "invalid JSON"."""
    body = '{"query": "refund", "k": ' + "1" * 5000 + "}"
    r = requests.post(f"{live_server}/api/suggest", data=body, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    _assert_error(r, "k", statuses=(400,))


@pytest.mark.parametrize(
    "raw",
    [
        b"not json at all",
        b'{"query": "refund"',
        b"",
        b"null",
        b"\xff\xfe\x00garbage",
    ],
)
def test_body_not_json_is_a_400(live_server, raw):
    r = requests.post(
        f"{live_server}/api/suggest", data=raw, headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )
    _assert_error(r, "body", statuses=(400,))


def test_nan_k_is_a_400_naming_k(live_server):
    r = requests.post(
        f"{live_server}/api/suggest",
        data=b'{"query": "refund", "k": NaN}',
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    _assert_error(r, "k", statuses=(400,))


@pytest.mark.parametrize("raw", [b'["query", "refund"]', b'"refund"', b"42", b"true"])
def test_body_not_an_object_is_a_400(live_server, raw):
    r = requests.post(
        f"{live_server}/api/suggest", data=raw, headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )
    _assert_error(r, "body", statuses=(400,))


def test_deeply_nested_json_is_a_400_not_a_500(live_server):
    raw = b"[" * 5000 + b"]" * 5000  # 10 KB: under the size limit, over the JSON parser's recursion limit
    r = requests.post(
        f"{live_server}/api/suggest", data=raw, headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )
    _assert_error(r, "body", statuses=(400,))


def test_body_over_16_kb_is_a_413(live_server):
    r = post_suggest(live_server, {"query": "refund", "padding": "x" * (17 * 1024)})
    _assert_error(r, "body", statuses=(413,))
    assert r.json()["error"]["code"] == "payload_too_large"  # the same code as a body just over the limit


def test_body_over_16_kb_without_content_length_is_rejected(live_server):
    def chunks():
        yield b'{"query": "refund", "padding": "'
        for _ in range(20):
            yield b"x" * 1024
        yield b'"}'

    r = requests.post(
        f"{live_server}/api/suggest", data=chunks(), headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )
    _assert_error(r, "body", statuses=(413,))
    assert r.json()["error"]["code"] == "payload_too_large"


def test_a_body_one_byte_over_16_kb_is_the_same_413(live_server):
    body = b'{"query": "refund", "padding": "'
    body += b"x" * (16 * 1024 + 1 - len(body) - 2) + b'"}'
    assert len(body) == 16 * 1024 + 1
    r = requests.post(f"{live_server}/api/suggest", data=body, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    _assert_error(r, "body", statuses=(413,))
    assert r.json()["error"] == {"code": "payload_too_large", "message": "request body is larger than 16 KB", "field": "body"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},
    ],
)
def test_wrong_content_type_is_a_415(live_server, headers):
    r = requests.post(
        f"{live_server}/api/suggest", data=json.dumps({"query": "refund"}).encode(), headers=headers, timeout=TIMEOUT
    )
    _assert_error(r, "Content-Type", statuses=(415,))


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method_on_suggest_is_a_405_json_error(live_server, method):
    r = requests.request(method, f"{live_server}/api/suggest", timeout=TIMEOUT)
    _assert_error(r, None, statuses=(405,))
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"POST", "OPTIONS"}  # which methods are


def test_bad_input_does_not_break_the_next_request(live_server):
    post_suggest(live_server, {"query": 1})
    requests.post(
        f"{live_server}/api/suggest", data=b"{{{", headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )
    assert post_suggest(live_server, {"query": "refund"}).status_code == 200


# --- admin: reindex ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    ],
)
def test_reindex_refuses_without_the_right_token(live_server, headers):
    r = requests.post(f"{live_server}/api/reindex", headers=headers, timeout=TIMEOUT)
    _assert_error(r, "Authorization", statuses=(401,))


def test_reindex_with_the_right_token(live_server):
    version = requests.get(f"{live_server}/healthz", timeout=TIMEOUT).json()["index_version"]
    r = requests.post(f"{live_server}/api/reindex", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=TIMEOUT)
    assert r.status_code == 200
    body = r.json()
    assert body["added"] == [] and body["changed"] == [] and body["removed"] == []
    assert body["unchanged"] == len(load_kb(SAMPLE_KB)[0])
    assert body["index_version"] == version
    assert requests.get(f"{live_server}/healthz", timeout=TIMEOUT).json()["index_version"] == version


@pytest.fixture
def tiny_server(tmp_path, settings_factory):
    """A second real server over a tiny KB that the test may edit."""
    from deflect.runtime import Runtime
    from deflect.web import create_app

    kb = write_kb(tmp_path / "kb", TINY_KB)
    settings = settings_factory(kb_dir=str(kb))
    runtime = Runtime(settings)
    with serve_app(create_app(settings, runtime)) as base:
        yield base, kb
    runtime.db.dispose()


def test_korean_comes_back_as_utf8_not_escapes(live_server):
    """curl shows what a Korean help center answers, in half the bytes of \\uXXXX escapes."""
    r = post_suggest(live_server, {"query": "비밀번호를 잊어버렸어요", "locale": "ko", "types": ["article"]})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert "비밀번호".encode() in r.content and b"\\u" not in r.content
    assert r.json()["results"][0]["id"] == "ko/reset-password"


def test_an_article_result_says_its_language(live_server):
    results = post_suggest(live_server, {"query": "비밀번호를 잊어버렸어요", "k": 10}).json()["results"]
    languages = {r["id"]: r.get("locale") for r in results}
    assert languages["ko/reset-password"] == "ko"
    assert all(r.get("locale") == ("ko" if r["id"].startswith("ko/") else "en") for r in results if r["type"] == "article")
    assert all("locale" not in r for r in results if r["type"] == "idea")


def test_reindex_picks_up_a_new_article_while_serving(tiny_server):
    base, kb = tiny_server
    before = requests.get(f"{base}/healthz", timeout=TIMEOUT).json()
    assert before["articles"] == len(TINY_KB)
    write_kb(
        kb, {"data/export.md": "# Export your tasks\n\nDownload every task as a CSV or JSON file from Settings.\n"}
    )
    r = requests.post(f"{base}/api/reindex", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json()["added"] == ["data/export.md"]
    after = requests.get(f"{base}/healthz", timeout=TIMEOUT).json()
    assert after["articles"] == len(TINY_KB) + 1
    assert after["index_version"] == r.json()["index_version"] != before["index_version"]
    top = post_suggest(base, {"query": "download my tasks as csv", "types": ["article"]}).json()["results"][0]
    assert top["id"] == "data/export"
    assert requests.get(f"{base}/api/articles/data/export", timeout=TIMEOUT).status_code == 200


def test_reindex_lists_links_that_lead_nowhere_and_aliases_left_without_their_article(tiny_server):
    base, kb = tiny_server
    assert reindex(base)["link_warnings"] == [] and reindex(base)["alias_warning"] is None
    asked = post_suggest(base, {"query": "the purple elephant code from the conference", "types": ["article"]}).json()
    taught = requests.post(f"{base}/api/events", json={"search_id": asked["search_id"], "type": "helpful",
                                                       "item_id": "billing/refunds", "item_type": "article"}, timeout=TIMEOUT)
    assert taught.status_code == 202 and taught.json()["alias"]["status"] == "learned"
    (kb / "billing" / "refunds.md").unlink()
    write_kb(kb, {"data/export.md": "# Export your tasks\n\nSee [the refunds page](../billing/refunds.md).\n"})
    report = reindex(base)
    assert report["removed"] == ["billing/refunds.md"] and report["added"] == ["data/export.md"]
    assert len(report["link_warnings"]) == 1 and "data/export.md" in report["link_warnings"][0]
    assert "../billing/refunds.md" in report["link_warnings"][0]
    assert report["alias_warning"].startswith("1 learned alias now points at articles not in the KB: 'billing/refunds' (1)")
    # The alias is still active, and says it is not used; so does `deflect aliases list`.
    listed = requests.get(f"{base}/api/aliases", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=TIMEOUT).json()
    assert [(a["item_id"], a["active"], a["in_use"]) for a in listed["aliases"]] == [("billing/refunds", True, False)]
    from click.testing import CliRunner

    from deflect.cli import main

    index_dir, database = kb.parent / "index", f"sqlite:///{kb.parent / 'd.db'}"
    out = CliRunner().invoke(main, ["aliases", "list", "--database-url", database], env={"DEFLECT_INDEX_DIR": str(index_dir)})
    assert out.exit_code == 0 and "article:billing/refunds" in out.output
    assert "(not used: article not in the KB)" in out.output, out.output


def test_reindex_without_the_kb_folder_is_refused_and_the_index_keeps_serving(tiny_server):
    base, kb = tiny_server
    before = requests.get(f"{base}/healthz", timeout=TIMEOUT).json()
    kb.rename(kb.with_name("kb-unmounted"))
    try:
        r = requests.post(f"{base}/api/reindex", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=TIMEOUT)
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "kb_folder_missing" and str(kb) in r.json()["error"]["message"]
        health = requests.get(f"{base}/healthz", timeout=TIMEOUT).json()
        assert health == before | {"status": "degraded", "kb": "missing"}  # still serving, but an operator must see it
        top = post_suggest(base, {"query": "I forgot my password", "types": ["article"]}).json()["results"][0]
        assert top["id"] == "account/reset-password"
    finally:
        kb.with_name("kb-unmounted").rename(kb)
    assert reindex(base)["index_version"] == before["index_version"]  # nothing changed: the same version
    assert requests.get(f"{base}/healthz", timeout=TIMEOUT).json() == before | {"status": "ok", "kb": "ok"}


def reindex(base: str) -> dict:
    r = requests.post(f"{base}/api/reindex", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_new_file_with_a_taken_id_is_skipped_not_the_published_article(tiny_server, caplog):
    base, kb = tiny_server
    published = requests.get(f"{base}/api/articles/billing/refunds", timeout=TIMEOUT).json()
    # Sorts before billing/refunds.md, which used to hand it the id.
    write_kb(kb, {"account/aaa-dup.md": "---\nid: billing/refunds\ntitle: A newcomer\n---\nOther text.\n"})
    expected = "account/aaa-dup.md: skipped: id 'billing/refunds' already used by billing/refunds.md"
    with caplog.at_level(logging.INFO, logger="deflect"):
        assert reindex(base)["warnings"] == [expected]
        assert reindex(base)["warnings"] == [expected]  # still listed while the file is there...
    assert caplog.text.count(expected) == 1  # ...but logged once
    served = requests.get(f"{base}/api/articles/billing/refunds", timeout=TIMEOUT).json()
    assert served["title"] == published["title"] == "How refunds work"
    assert served["markdown"] == published["markdown"]


def test_ids_and_their_urls_serve_the_article(tiny_server):
    """The default url percent-encodes the id, and both article routes serve it."""
    base, kb = tiny_server
    write_kb(
        kb,
        {
            "ko/guide.md": "---\nid: ko/비밀번호-안내\nlocale: ko\n---\n# 비밀번호 안내\n\n비밀번호를 잊으셨나요?\n",
            "faq/what's new? #1 100%.md": "# What is new\n\nRelease notes.\n",
            "bad/traversal.md": "---\nid: ../../etc/passwd\n---\n# Sneaky\n\nText.\n",
            "bad/odd.md": "---\nid: \"FAQ: what's new? #1 / 100%\"\n---\n# Odd\n\nText.\n",
        },
    )
    body = reindex(base)
    assert sorted(body["added"]) == ["faq/what's new? #1 100%.md", "ko/guide.md"]
    assert {w.split(":")[0] for w in body["warnings"]} == {"bad/traversal.md", "bad/odd.md"}
    articles = {a["id"]: a for a in requests.get(f"{base}/api/articles", timeout=TIMEOUT).json()["articles"]}
    for article_id, title in (("ko/비밀번호-안내", "비밀번호 안내"), ("faq/what's new? #1 100%", "What is new")):
        url = articles[article_id]["url"]
        assert url.isascii() and " " not in url and "#" not in url and "?" not in url
        page = requests.get(base + url, timeout=TIMEOUT)
        assert page.status_code == 200 and title in page.text
        one = requests.get(base + url.replace("/articles/", "/api/articles/", 1), timeout=TIMEOUT)
        assert one.status_code == 200 and one.json()["id"] == article_id


def test_a_reindex_logs_one_info_line(tiny_server, caplog):
    base, kb = tiny_server
    write_kb(kb, {"data/export.md": "# Export your tasks\n\nDownload every task as a CSV file.\n"})
    with caplog.at_level(logging.INFO, logger="deflect"):
        version = reindex(base)["index_version"]
        reindex(base)
    lines = [r.getMessage() for r in caplog.records if r.name == "deflect.runtime"]
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"reindex after POST /api/reindex took \d+\.\d s: index {version}: 1 added, 0 changed, "
                        r"0 removed, 3 unchanged, [1-9]\d* passages embedded", lines[0]), lines[0]  # fmt: skip
    assert "0 added, 0 changed, 0 removed, 4 unchanged, 0 passages embedded" in lines[1]


def test_admin_endpoints_refuse_when_no_token_is_configured(tmp_path, settings_factory):
    from deflect.runtime import Runtime
    from deflect.web import create_app

    kb = write_kb(tmp_path / "kb", TINY_KB)
    settings = settings_factory(kb_dir=str(kb), admin_token="")
    runtime = Runtime(settings)
    try:
        with serve_app(create_app(settings, runtime)) as base:
            for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
                r = requests.post(f"{base}/api/reindex", headers=headers, timeout=TIMEOUT)
                _assert_error(r, "Authorization", statuses=(401,))
    finally:
        runtime.db.dispose()


def test_an_articles_markdown_leaves_out_what_its_page_never_shows(served, tiny_kb):
    """A writer's <!-- internal note --> is on no page, so not in the public API either; code that
    shows a comment keeps it."""
    (tiny_kb / "notes.md").write_text(
        "---\ntitle: Exporting reports\n---\n# Exporting reports\n\n"
        "<!-- internal: override code 4471 for VIP customers -->\n"
        "Open **Reports** and choose *Export*.\n\n```html\n<!-- a comment in an example stays -->\n```\n"
    )
    base, _ = served()
    article = requests.get(f"{base}/api/articles/notes", timeout=TIMEOUT).json()
    assert "4471" not in article["markdown"] and "4471" not in article["html"]
    assert "Open **Reports** and choose *Export*." in article["markdown"]
    assert "<!-- a comment in an example stays -->" in article["markdown"]
