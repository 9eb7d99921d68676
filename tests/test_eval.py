"""`deflect eval` on a buyer's own benchmark: a set laid out wrongly is an error, not zeros; each
rate comes with its counts; confident wrong answers are reported; its files are read as
`deflect aliases import` reads them. Real model on tiny KBs (the older eval tests are in test_cli.py)."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_KB, write_kb

from deflect.cli import main
from deflect.errors import ConfigError
from deflect.settings import load_settings


@pytest.fixture
def runner(clean_env) -> CliRunner:
    return CliRunner()


@pytest.fixture
def bench(tmp_path, monkeypatch) -> Path:
    """A benchmark laid out as buyers lay theirs out: <bench>/kb and <bench>/queries.jsonl."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # eval's throwaway index in tmp_path
    root = tmp_path / "bench"
    write_kb(root / "kb", TINY_KB)
    _lines(root / "queries.jsonl", [
        {"text": "i forgot my password", "expected": "account/reset-password"},
        {"text": "can i get my money back for the yearly plan", "expected": "billing/refunds"},
        {"text": "post task updates into a slack channel", "expected": "integrations/slack"},
        {"text": "what is the weather in lisbon tomorrow", "expected": None},
    ])  # fmt: skip
    return root


def _lines(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _eval(runner, *args: str):
    return runner.invoke(main, ["eval", *args])


def test_a_set_that_measures_nothing_is_a_usage_error_naming_the_fix(runner, bench, tmp_path):
    """Before: each printed zeros (or a false-answer rate over nothing) and exited 0, so a CI gate
    or a buyer's script took them for results."""
    queries = str(bench / "queries.jsonl")
    too_high = _eval(runner, "--kb", str(bench), "--queries", queries, "--json")  # every id gets a kb/ prefix
    assert too_high.exit_code == 2, too_high.output
    assert f"none of the 3 expected article ids (3 queries) is in the KB at {bench}" in too_high.output
    assert "ids are paths relative to --kb, without .md" in too_high.output
    assert f"try --kb {bench / 'kb'}" in too_high.output
    assert too_high.stdout.count("{") == 0  # no report a script could read

    too_deep = _eval(runner, "--kb", str(bench / "kb" / "billing"), "--queries", queries)
    assert too_deep.exit_code == 2 and "the KB's 'refunds' is" in too_deep.output
    assert f"try --kb {bench / 'kb'}" in too_deep.output

    empty_kb = write_kb(tmp_path / "empty", {"notes.txt": "not an article"})
    result = _eval(runner, "--kb", str(empty_kb), "--queries", queries)
    assert result.exit_code == 2 and f"the KB at {empty_kb} has no articles" in result.output

    no_queries = tmp_path / "none.jsonl"
    no_queries.write_text("\n\n", encoding="utf-8")
    result = _eval(runner, "--kb", str(bench / "kb"), "--queries", str(no_queries))
    assert result.exit_code == 2 and f"{no_queries} has no queries" in result.output

    blank_id = _lines(tmp_path / "blank.jsonl", [{"text": "reset password", "expected": ""}])
    result = _eval(runner, "--kb", str(bench / "kb"), "--queries", str(blank_id))
    assert result.exit_code == 2 and f"{blank_id}:1: expected: empty" in result.output


def test_some_unknown_ids_stay_warnings_with_the_id_meant(runner, bench, tmp_path):
    queries = _lines(tmp_path / "q.jsonl", [
        {"text": "i forgot my password", "expected": "account/reset-password"},
        {"text": "refund please", "expected": "billing/refunds.md"},
        {"text": "slack", "expected": "Integrations/Slack"},
    ])  # fmt: skip
    result = _eval(runner, "--kb", str(bench / "kb"), "--queries", str(queries), "--json")
    assert result.exit_code == 0, result.output
    assert (f"warning: {queries}:2: expected 'billing/refunds.md' is no article of the KB (counted as a miss); "
            "did you mean 'billing/refunds'?") in result.stderr  # fmt: skip
    assert "did you mean 'integrations/slack'?" in result.stderr
    assert json.loads(result.stdout)["answerable"] == 3


def test_a_query_line_without_expected_is_warned_of_once_per_line_up_to_a_cap(runner, bench, tmp_path):
    """DESIGN section 8: "expected": <article id> or null. Before, a line without the key (or with
    the id under `label`) was silently unanswerable."""
    rows = [
        {"text": "i forgot my password", "expected": "account/reset-password"},
        {"text": "refund please"},
        {"text": "cancel my plan", "label": "billing/refunds"},
        {"text": "what is the weather", "expected": None},
    ] + [{"text": f"question {n}"} for n in range(12)]
    queries = _lines(tmp_path / "q.jsonl", rows)
    result = _eval(runner, "--kb", str(bench / "kb"), "--queries", str(queries), "--json")
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if 'no "expected"' in line]
    assert said[0] == (f'warning: {queries}:2: no "expected": counted as unanswerable; '
                       'write "expected": null to say so')  # fmt: skip
    assert said[1].startswith(f"warning: {queries}:3: ") and "its label 'billing/refunds' is an article id" in said[1]
    assert len(said) == 10 and f"{queries}:4:" not in result.stderr  # null is said on purpose
    assert 'warning: ... and 4 more lines without "expected"' in result.stderr
    assert json.loads(result.stdout)["unanswerable"] == 15


def test_rates_come_with_counts_and_confident_wrong_answers_are_reported(runner, bench, tmp_path):
    """An answerable question answered=true with another article first counted in no figure, and
    --show-misses could not list the false answers a buyer most needs to review."""
    queries = _lines(tmp_path / "q.jsonl", [
        {"text": "i forgot my password", "expected": "billing/refunds"},  # answered, with the other article
        {"text": "can i get my money back", "expected": "billing/refunds"},
        {"text": "i forgot my password and cannot log in", "expected": None},  # answered: a false answer
        {"text": "what is the weather in lisbon tomorrow", "expected": None},
    ])  # fmt: skip
    args = ["--kb", str(bench / "kb"), "--queries", str(queries)]
    result = _eval(runner, *args, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("queries", "answerable", "unanswerable", "hit_at_1", "hit_at_3", "mrr_at_10", "auroc",
                "answered_correct_rate", "false_answer_rate", "feedback_replayed"):  # fmt: skip
        assert key in report, key  # every key a script already reads
    assert report["answered_wrong"] == 1 and report["answered_wrong_rate"] == 0.5
    assert report["false_answers"] == 1 and report["false_answer_rate"] == 0.5
    assert report["answered_correct"] == 1 and report["answered_correct_rate"] == 0.5
    assert "misses" not in report  # listed only when asked

    text = _eval(runner, *args, "--show-misses", "5")
    assert text.exit_code == 0, text.output
    assert "false_answer_rate: 0.5 (1 of 2 unanswerable: answered=true)" in text.stdout
    assert "answered_wrong_rate: 0.5 (1 of 2 answerable: answered=true, wrong article first)" in text.stdout
    assert "hit_at_1: 0.5 (1 of 2 answerable)" in text.stdout
    assert "answer_threshold 0.5, target_false_answer 0.07" in text.stdout
    assert "false answer: 'i forgot my password and cannot log in' got account/reset-password" in text.stdout
    assert "wrong answer: 'i forgot my password' expected billing/refunds got ['account/reset-password'" in text.stdout

    listed = json.loads(_eval(runner, *args, "--json", "--show-misses", "5").stdout)  # still one JSON document
    assert listed["false_answer_list"][0]["got"] == ["account/reset-password"]
    assert listed["misses"][0]["answered"] is True and listed["misses"][0]["probability"] >= 0.5


def test_a_set_without_unanswerable_questions_says_n_a_not_zero_in_text(runner, bench, tmp_path):
    queries = _lines(tmp_path / "q.jsonl", [{"text": "i forgot my password", "expected": "account/reset-password"}])
    result = _eval(runner, "--kb", str(bench / "kb"), "--queries", str(queries))
    assert result.exit_code == 0, result.output
    assert "false_answer_rate: n/a (no unanswerable queries)" in result.stdout
    assert json.loads(_eval(runner, "--kb", str(bench / "kb"), "--queries", str(queries), "--json").stdout)[
        "false_answer_rate"] == 0.0  # fmt: skip  - JSON keeps its meaning for scripts


def test_feedback_is_read_as_aliases_import_reads_it(runner, bench, tmp_path):
    """Before: a BOM broke line 1, a Latin-1 file was not named, extra keys passed unsaid, and a
    queries file passed as --feedback replayed nothing and reported the plain figures, exit 0."""
    args = ["--kb", str(bench / "kb"), "--queries", str(bench / "queries.jsonl"), "--json"]
    line = json.dumps({"text": "the purple elephant code", "article": "billing/refunds", "source": "zendesk"})
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + line.encode("utf-8") + b"\n")
    result = _eval(runner, *args, "--feedback", str(bom))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["feedback_replayed"] == 1
    assert f"warning: {bom}:1: not read: 'source' (a feedback line has text and article)" in result.stderr

    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"text": "caf\u00e9", "article": "billing/refunds"}\n'.encode("latin-1"))
    result = _eval(runner, *args, "--feedback", str(latin))
    assert result.exit_code == 2 and f"{latin}: not UTF-8" in result.output and "nothing imported" not in result.output

    result = _eval(runner, *args, "--feedback", str(bench / "queries.jsonl"))
    assert result.exit_code == 2, result.output
    assert f"no line of {bench / 'queries.jsonl'} is a feedback line" in result.output
    assert "is it a queries file?" in result.output


@pytest.mark.parametrize("layout", ["array", "pretty-array", "wrapped"])
def test_one_json_document_is_one_error_not_one_per_line(runner, bench, tmp_path, layout):
    rows = [{"text": f"question {n}", "expected": None} for n in range(30)]
    document = {"array": rows, "pretty-array": rows, "wrapped": {"queries": rows}}[layout]
    path = tmp_path / "queries.json"
    path.write_text(json.dumps(document, indent=None if layout == "array" else 2), encoding="utf-8")
    result = _eval(runner, "--kb", str(bench / "kb"), "--queries", str(path))
    assert result.exit_code == 2, result.output
    kind = "object" if layout == "wrapped" else "array"
    assert f"{path}: one JSON {kind}" in result.output and "not JSON lines" in result.output
    assert "'.queries[]'" in result.output if layout == "wrapped" else "'.[]'" in result.output
    assert "Expecting" not in result.output and "Extra data" not in result.output


def test_the_jsonl_reader_every_import_shares_names_one_document(tmp_path):
    """ideas import and aliases import read through jsonl.numbered_records too: the same one error
    (with their "nothing imported"), while good JSON lines, one object on one line included, read as before."""
    from deflect.jsonl import NotJsonLines, numbered_records

    pretty = tmp_path / "ideas.json"
    pretty.write_text(json.dumps([{"title": "Gantt"}, {"title": "Dark mode"}], indent=2), encoding="utf-8")
    with pytest.raises(NotJsonLines, match="one JSON array over 8 lines, not JSON lines.*; nothing imported"):
        list(numbered_records(pretty))
    one = tmp_path / "one.jsonl"
    one.write_text('{"title": "Gantt"}\n', encoding="utf-8")
    assert list(numbered_records(one)) == [(1, {"title": "Gantt"}, None)]
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"title": "Gantt"}\n\nnot json\n', encoding="utf-8")
    assert list(numbered_records(lines)) == [(1, {"title": "Gantt"}, None), (3, None, "not JSON (Expecting value)")]


def test_ideas_import_names_a_pretty_printed_file(clean_env, tmp_path):
    runner = CliRunner()
    pretty = tmp_path / "ideas.json"
    pretty.write_text(json.dumps([{"title": "Gantt"}], indent=2), encoding="utf-8")
    result = runner.invoke(main, ["ideas", "import", str(pretty), "--database-url", f"sqlite:///{tmp_path / 'd.db'}"])
    assert result.exit_code == 1 and f"{pretty}: one JSON array over 5 lines" in result.output


def test_target_false_answer_help_says_what_the_cap_does():
    """The help text's claims, checked against the code that applies the cap: it counts the KB's
    own pseudo-questions, it only lowers the bias, and 1 leaves the fit uncapped (0 did too, so the
    setting refuses it: someone who sets 0 means "never answer wrongly")."""
    from deflect import scoring
    from deflect.settings import SETTINGS

    help_text = next(s.help for s in SETTINGS if s.name == "target_false_answer")
    assert "practice questions" in help_text and "not on customers'" in help_text
    assert "only lower" in help_text and "1 means no cap" in help_text and "9.4%" in help_text
    weights = np.array([-2.0, 5.0, 1.0])
    negatives = np.random.default_rng(0).uniform(0, 1, size=(200, 2))
    assert (scoring.cap_false_answers(weights, negatives, 1.0) == weights).all()
    with pytest.raises(ConfigError, match="target_false_answer"):
        load_settings(config_file="none", env={"DEFLECT_TARGET_FALSE_ANSWER": "0"})
    biases = [scoring.cap_false_answers(weights, negatives, t)[0] for t in (0.01, 0.07, 0.3, 0.99)]
    assert biases == sorted(biases) and all(b <= weights[0] for b in biases)
    assert math.isclose(scoring.cap_false_answers(weights, negatives, 0.99)[0], weights[0])  # never raised
