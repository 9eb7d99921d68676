"""Lexical channel: language-agnostic tokenisation and normalised BM25."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from deflect import scoring
from deflect.lexical import BM25, tokenize, unspaced_share

# --- tokenisation --------------------------------------------------------------------


def test_korean_becomes_overlapping_bigrams():
    tokens = tokenize("비밀번호")
    assert tokens == ["비밀", "밀번", "번호"]


def test_korean_particles_still_share_tokens_with_the_bare_word():
    with_particle = set(tokenize("비밀번호를 잊어버렸어요"))
    bare = set(tokenize("비밀번호 재설정"))
    assert set(tokenize("비밀번호")) <= with_particle
    assert {"비밀", "밀번", "번호"} <= with_particle & bare


def test_single_cjk_character_is_kept():
    assert tokenize("문") == ["문"]


@pytest.mark.parametrize("text", ["パスワードを忘れた", "忘记密码了"])
def test_other_unspaced_scripts_become_bigrams(text):
    tokens = tokenize(text)
    assert tokens and all(len(t) == 2 for t in tokens)
    assert len(tokens) == len(text) - 1


def test_thai_vowel_marks_do_not_break_or_drop_characters():
    """Thai (named in lexical.py's docstring) writes vowels as combining marks; none may be lost."""
    text = "ลืมรหัสผ่าน"  # "forgot password"
    tokens = tokenize(text)
    covered = "".join(t[0] for t in tokens) + tokens[-1][1:]
    assert covered == text, tokens


def test_spaced_scripts_with_combining_marks_keep_whole_words():
    """Hindi vowel signs and viramas are combining marks; a word must not be chopped into pieces."""
    assert tokenize("पासवर्ड भूल गया") == ["पासवर्ड", "भूल", "गया"]


def test_latin_words_inside_korean_text_stay_whole():
    """Korean attaches particles to Latin words ("CSV로", "Slack과"); the Latin word must still match."""
    assert "csv" in tokenize("CSV로 내보내기")
    assert set(tokenize("Slack")) <= set(tokenize("Slack과 연동하기"))


def test_english_is_lowercased_and_nfkc_normalised():
    assert tokenize("PASSWORD") == tokenize("password")
    assert tokenize("ｐａｓｓｗｏｒｄ") == tokenize("password")  # full-width letters


def test_english_stopwords_are_dropped():
    assert tokenize("How do I reset the password?") == tokenize("reset password")
    assert tokenize("the and of to is") == []


def test_single_letters_dropped_but_numbers_kept():
    tokens = tokenize("a 2 x 2fa")
    assert "a" not in tokens and "x" not in tokens
    assert "2" in tokens and "2fa" in tokens


@pytest.mark.parametrize(
    "variants",
    [
        ("card", "cards"),
        ("company", "companies"),
        ("refund", "refunds", "refunded", "refunding"),
        ("charge", "charges", "charged"),
        ("invoice", "invoices"),
        ("update", "updated", "updates"),
    ],
)
def test_english_light_stemming_folds_common_endings(variants):
    stems = {tuple(tokenize(v)) for v in variants}
    assert len(stems) == 1, {v: tokenize(v) for v in variants}


def test_stemming_leaves_short_words_and_double_s_alone():
    assert tokenize("access") == ["access"]
    assert tokenize("bus") == ["bus"]


# --- BM25 ----------------------------------------------------------------------------

DOCS = [
    "Reset a forgotten password. Click forgot password on the sign in page to get a reset link.",
    "How refunds work. We refund annual plans within 30 days; monthly plans are not refunded.",
    "Connect Slack. Send task notifications to a Slack channel from the integrations page.",
    "비밀번호 재설정하기. 로그인 페이지에서 비밀번호를 잊으셨나요를 클릭하세요.",
    "환불 정책. 연간 요금제는 30일 이내에 환불됩니다.",
]


@pytest.fixture(scope="module")
def bm25():
    return BM25([tokenize(d) for d in DOCS])


@pytest.mark.parametrize(
    "query, expected",
    [
        ("I forgot my password", 0),
        ("can I get a refund for my annual plan", 1),
        ("slack notifications", 2),
        ("비밀번호를 잊었어요", 3),
        ("환불 받고 싶어요", 4),
    ],
)
def test_bm25_ranks_the_matching_document_first(bm25, query, expected):
    scores = bm25.scores(tokenize(query))
    assert int(np.argmax(scores)) == expected
    assert scores[expected] > 0
    others = np.delete(scores, expected)
    assert scores[expected] > others.max()


def test_bm25_scores_are_normalised_to_0_1(bm25):
    for query in ["password reset link", "refund", "slack channel integrations", "비밀번호 환불", "zebra"]:
        scores = bm25.scores(tokenize(query))
        assert scores.shape == (len(DOCS),)
        assert np.all(scores >= 0) and np.all(scores <= 1)
    assert np.all(bm25.scores(tokenize("zebra giraffe")) == 0)
    assert np.all(bm25.scores([]) == 0)


def test_bm25_score_approaches_1_when_a_document_is_all_query_terms():
    docs = [tokenize("apple " * 200), tokenize("banana split"), tokenize("cherry pie")]
    scores = BM25(docs).scores(tokenize("apple"))
    assert 0.9 < scores[0] <= 1.0
    assert scores[1] == 0 and scores[2] == 0


def test_bm25_rarer_terms_weigh_more():
    docs = [tokenize(t) for t in ["common rare", "common", "common", "common other"]]
    bm25 = BM25(docs)
    (rare,), (common,) = tokenize("rare"), tokenize("common")
    assert bm25.idf[rare] > bm25.idf[common]
    scores = bm25.scores(tokenize("common rare"))
    assert int(np.argmax(scores)) == 0


def test_bm25_score_without_removes_the_given_tokens(bm25):
    query = tokenize("slack notifications")
    full = float(bm25.scores(query)[2])
    assert bm25.score_without(query, 2, Counter()) == pytest.approx(full, rel=1e-5)
    removed = Counter(tokenize(DOCS[2]))
    assert bm25.score_without(query, 2, removed) == 0.0


def test_bm25_handles_empty_corpus_and_empty_documents():
    assert len(BM25([])) == 0
    assert BM25([]).scores(["x"]).shape == (0,)
    scores = BM25([[], tokenize("password")]).scores(tokenize("password"))
    assert scores[0] == 0 and scores[1] > 0


def test_ascii_fast_path_gives_the_same_tokens_as_the_general_one():
    """tokenize() skips the per-character loop for ASCII text; it must not change a single token."""
    import random
    import string

    from deflect.lexical import _tokenize_chars

    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \t\n_" + "aeiouyst"
    samples = ["I can't log-in (again)!", "cards_2024 ARE declined", "x 1 22 a-b", "Running   RUNS ran", ""]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(3000)]
    for text in samples:
        assert tokenize(text) == _tokenize_chars(text), text


def test_postings_list_every_document_of_a_term_with_its_frequency():
    docs = [tokenize(d) for d in DOCS] + [tokenize("refund refund refund password"), []]
    bm25 = BM25(docs)
    vocabulary = {t for d in docs for t in d}
    for term in vocabulary:
        ids, tfs = bm25.posting(term)
        expected = [(i, d.count(term)) for i, d in enumerate(docs) if term in d]
        assert list(zip(ids.tolist(), tfs.tolist())) == expected
    assert bm25.posting("not-a-term") is None
    # The score follows the BM25 formula term by term.
    query = tokenize("refund password")
    k1, b = bm25.k1, bm25.b
    lengths = [len(d) for d in docs]
    avg = sum(lengths) / len(lengths)
    for i, doc in enumerate(docs):
        raw = sum(
            bm25.idf[t] * doc.count(t) * (k1 + 1) / (doc.count(t) + k1 * (1 - b + b * lengths[i] / avg))
            for t in set(query)
            if t in doc
        )
        assert bm25.scores(query)[i] == pytest.approx(raw / bm25.max_score(query), rel=1e-5)


def test_unspaced_share_counts_bigram_script_tokens():
    assert unspaced_share(tokenize("how do I reset my password")) == 0.0
    assert unspaced_share(tokenize("비밀번호를 잊어버렸어요")) == 1.0
    mixed = tokenize("Slack 알림")
    assert mixed == ["slack", "알림"] and unspaced_share(mixed) == 0.5
    assert unspaced_share([]) == 0.0


def test_unspaced_queries_lean_on_the_lexical_channel_on_the_same_scale():
    dense, centroid, lexical = np.array([0.7, 0.5]), np.array([0.4, 0.4]), np.array([0.1, 0.9])
    english = scoring.fuse(dense, centroid, lexical)
    assert np.array_equal(english, dense + scoring.CENTROID_WEIGHT * centroid + scoring.LEXICAL_WEIGHT * lexical)
    assert np.argmax(english) == 0  # the dense channel decides
    korean = scoring.fuse(dense, centroid, lexical, scoring.lexical_weight(1.0))
    assert np.argmax(korean) == 1  # word overlap decides
    ones = np.ones(1)
    for share in (0.0, 0.5, 1.0):  # a perfect match scores the same whatever the weight: one calibration reads all
        weight = scoring.lexical_weight(share)
        assert scoring.fuse(ones, ones, ones, weight)[0] == pytest.approx(1 + scoring.CENTROID_WEIGHT + scoring.LEXICAL_WEIGHT)
    assert scoring.lexical_weight(0.0) == scoring.LEXICAL_WEIGHT
    assert scoring.lexical_weight(1.0) == scoring.UNSPACED_LEXICAL_WEIGHT
