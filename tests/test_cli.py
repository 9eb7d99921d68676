"""The `deflect` command (DESIGN section 4), in-process with CliRunner plus one real subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from datetime import UTC
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import TINY_KB, write_kb

from deflect.cli import main
from deflect.settings import SETTINGS


def _every_command(group: click.Group = main, path: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command and group of the CLI, as the words that name it: none is left out of the checks."""
    found = []
    for name, command in sorted(group.commands.items()):
        found.append([*path, name])
        if isinstance(command, click.Group):
            found += _every_command(command, (*path, name))
    return found


COMMANDS = _every_command()


def _command(words: list[str]) -> click.Command:
    command = main
    for word in words:
        command = command.commands[word]
    return command


@pytest.fixture
def runner(clean_env) -> CliRunner:
    return CliRunner()


@pytest.fixture
def paths(tmp_path) -> list[str]:
    kb = write_kb(tmp_path / "kb", TINY_KB)
    return ["--kb", str(kb), "--index-dir", str(tmp_path / "index"), "--database-url", f"sqlite:///{tmp_path / 'd.db'}"]


def invoke(runner: CliRunner, args: list[str]):
    result = runner.invoke(main, args, catch_exceptions=False)
    return result


def test_real_executable_help():
    exe = Path(sys.executable).parent / "deflect"
    assert exe.exists(), f"console script not installed at {exe}"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    for command in ("serve", "index", "suggest", "ideas", "eval", "settings"):
        assert re.search(rf"^\s+{command}\b", proc.stdout, re.M), command


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(runner, command):
    result = invoke(runner, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert len(result.stdout.strip().splitlines()) > 3
    assert _command(command).help, command  # says what it does
    unexplained = [p.name for p in _command(command).params if isinstance(p, click.Option) and not p.help]
    assert unexplained == [], (command, unexplained)  # and every option says what it is for


def test_version(runner):
    from importlib.metadata import version

    result = invoke(runner, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"deflect {version('deflect')}"


def test_the_command_walk_finds_them_all():
    assert len(COMMANDS) > 30 and ["outbox", "list"] in COMMANDS and ["searches", "forget"] in COMMANDS


def test_serve_help_lists_the_documented_options(runner):
    out = invoke(runner, ["serve", "--help"]).stdout
    for option in ("--host", "--port", "--kb", "--index-dir", "--database-url"):
        assert option in out


def test_eval_help_lists_the_documented_options(runner):
    out = invoke(runner, ["eval", "--help"]).stdout
    for option in ("--kb", "--queries", "--feedback", "--json"):
        assert option in out


def _count(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return int(match.group(1))


def test_index_prints_counts_and_is_incremental(runner, paths, tmp_path):
    first = invoke(runner, ["index", *paths])
    assert first.exit_code == 0, first.output
    assert _count(r"(\d+) added", first.stdout) == len(TINY_KB)
    assert _count(r"(\d+) passages embedded", first.stdout) > 0
    assert (tmp_path / "index" / "CURRENT").exists()

    second = invoke(runner, ["index", *paths])
    assert second.exit_code == 0, second.output
    assert _count(r"(\d+) added", second.stdout) == 0
    assert _count(r"(\d+) changed", second.stdout) == 0
    assert _count(r"(\d+) unchanged", second.stdout) == len(TINY_KB)
    assert _count(r"(\d+) passages embedded", second.stdout) == 0

    (tmp_path / "kb" / "billing" / "refunds.md").write_text("# How refunds work\n\nRefunds take 5 days.\n")
    third = invoke(runner, ["index", *paths])
    assert _count(r"(\d+) changed", third.stdout) == 1
    assert 0 < _count(r"(\d+) passages embedded", third.stdout) < _count(r"(\d+) passages embedded", first.stdout)


def test_index_warns_about_a_malformed_file_and_indexes_the_rest(clean_env, paths, tmp_path):
    """The real command, as a writer runs it: the skipped file is named once, with its line."""
    write_kb(tmp_path / "kb", {"broken.md": "---\ntitle: [oops\n---\n# Broken\n\nText.\n"})
    exe = Path(sys.executable).parent / "deflect"
    proc = subprocess.run([str(exe), "index", *paths], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    named = [line for line in proc.stderr.splitlines() if "broken.md" in line]
    assert len(named) == 1 and "skipped: bad YAML front matter, line 2" in named[0], proc.stderr
    assert _count(r"(\d+) added", proc.stdout) == len(TINY_KB)
    assert "1 file skipped" in proc.stdout


def test_a_missing_kb_folder_is_an_error_and_leaves_the_index_alone(runner, paths, tmp_path):
    """A mistyped --kb (or an unmounted volume) must not save an empty version that every server would serve."""
    assert invoke(runner, ["index", *paths]).exit_code == 0
    live = (tmp_path / "index" / "CURRENT").read_text()
    missing = ["--kb", str(tmp_path / "kb-typo"), *paths[2:]]
    for command in (["index"], ["suggest", "I forgot my password"]):
        result = invoke(runner, [*command, *missing])
        assert result.exit_code == 1, result.output
        assert f"Error: knowledge-base folder {tmp_path / 'kb-typo'} not found" in result.output
        assert "Traceback" not in result.output
    assert (tmp_path / "index" / "CURRENT").read_text() == live
    assert _count(r"(\d+) unchanged", invoke(runner, ["index", *paths]).stdout) == len(TINY_KB)


def test_index_reads_paths_from_the_environment(runner, tmp_path):
    kb = write_kb(tmp_path / "kb", TINY_KB)
    env = {"DEFLECT_KB_DIR": str(kb), "DEFLECT_INDEX_DIR": str(tmp_path / "env-index")}
    result = runner.invoke(main, ["index"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env-index" / "CURRENT").exists()


def test_suggest_prints_a_ranked_list(runner, paths):
    result = invoke(runner, ["suggest", "I forgot my password and can't log in", *paths])
    assert result.exit_code == 0, result.output
    assert re.search(r"^answered: (yes|no)$", result.stdout, re.M)
    ranked = re.findall(r"^(\d+)\. \[(article|idea)\] (.+?)  \((\S+), score ([0-9.]+)\)$", result.stdout, re.M)
    assert [int(r[0]) for r in ranked] == list(range(1, len(TINY_KB) + 1))
    assert ranked[0][3] == "account/reset-password"
    scores = [float(r[4]) for r in ranked]
    assert scores == sorted(scores, reverse=True)


def test_suggest_json_matches_the_api_contract(runner, paths):
    result = invoke(runner, ["suggest", "refund my annual plan", "--json", "-k", "2", "--type", "article", *paths])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert isinstance(answer["search_id"], str) and isinstance(answer["answered"], bool)
    assert len(answer["results"]) == 2
    assert answer["results"][0]["id"] == "billing/refunds"
    assert all(r["type"] == "article" and 0 <= r["score"] <= 1 for r in answer["results"])


def test_suggest_records_the_search_unless_told_not_to(runner, paths):
    from deflect.db import make_engine
    from deflect.exports import search_rows

    url = paths[paths.index("--database-url") + 1]
    recorded = json.loads(invoke(runner, ["suggest", "how do refunds work", "--json", *paths]).stdout)
    tried = json.loads(invoke(runner, ["suggest", "how do refunds work for teams", "--json", "--no-record", *paths]).stdout)
    assert tried["search_id"] is None and tried["results"][0]["id"] == "billing/refunds"
    engine = make_engine(url)
    queries = [row["query"] for row in search_rows(engine)]
    engine.dispose()
    assert recorded["search_id"] and "how do refunds work" in queries and "how do refunds work for teams" not in queries


@pytest.mark.parametrize("k", ["0", "21", "two"])
def test_suggest_rejects_a_bad_k(runner, paths, k):
    result = runner.invoke(main, ["suggest", "refund", "-k", k, *paths])
    assert result.exit_code == 2
    assert "-k" in result.output


@pytest.mark.parametrize(
    "args, named",
    [
        (["suggest", ""], "'QUESTION': must not be empty"),
        (["suggest", "   "], "'QUESTION': must not be empty"),
        (["suggest", "\u200b\u00ad"], "'QUESTION': must not be empty"),
        (["suggest", "x" * 1001], "'QUESTION': must be at most 1000 characters"),
        (["suggest", "refund", "--locale", "x y"], "'--locale': must be a language tag"),
    ],
)
def test_suggest_checks_the_question_and_locale_as_the_api_does(runner, paths, tmp_path, args, named):
    result = runner.invoke(main, [*args, *paths])
    assert result.exit_code == 2 and named in result.output, result.output
    assert not (tmp_path / "d.db").exists()  # refused before anything was searched or recorded


def test_ideas_import_reports_skipped_lines(runner, tmp_path):
    from deflect.db import make_engine
    from deflect.ideas import list_ideas

    ideas = tmp_path / "ideas.jsonl"
    ideas.write_text(
        "\n".join(
            [
                json.dumps({"id": "dark-mode", "title": "Dark mode", "status": "planned", "votes": 3}),
                "{this is not json",
                json.dumps({"title": "Gantt export to PDF", "description": "Print the timeline."}),
                json.dumps({"title": "", "status": "open"}),
                "",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    url = f"sqlite:///{tmp_path / 'ideas.db'}"
    result = invoke(runner, ["ideas", "import", str(ideas), "--database-url", url])
    assert result.exit_code == 1, result.output  # the good lines are in; a script must still hear of the bad ones
    assert f"Error: 2 lines of {ideas} skipped (named above); the rest was imported" in result.stderr
    assert _count(r"(\d+) ideas added", result.stdout) == 2
    assert _count(r"(\d+) skipped", result.stdout) == 2
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 2
    assert any(":2:" in line for line in skipped) and any(":4:" in line and "title" in line for line in skipped)
    engine = make_engine(url)
    try:
        stored = {i["id"]: i for i in list_ideas(engine)}
    finally:
        engine.dispose()
    assert set(stored) == {"dark-mode", "gantt-export-to-pdf"}
    assert stored["dark-mode"]["status"] == "planned" and stored["dark-mode"]["votes"] == 3

    again = invoke(runner, ["ideas", "import", str(ideas), "--database-url", url])
    assert _count(r"(\d+) ideas added", again.stdout) == 0
    assert _count(r"(\d+) updated", again.stdout) == 2


def test_ideas_import_of_a_missing_file_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(main, ["ideas", "import", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2


@pytest.fixture
def eval_files(tmp_path) -> tuple[Path, Path]:
    kb = write_kb(tmp_path / "bench-kb", TINY_KB)
    queries = tmp_path / "queries.jsonl"
    rows = [
        {"text": "i forgot my password", "expected": "account/reset-password", "label": "reset"},
        {"text": "can i get my money back for the yearly plan", "expected": "billing/refunds", "label": "refund"},
        {"text": "post task updates into a slack channel", "expected": "integrations/slack", "label": "slack"},
        {"text": "what is the weather in lisbon tomorrow", "expected": None, "label": "none"},
    ]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return kb, queries


def test_eval_json_reports_hit_at_1(runner, eval_files, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # keep eval's throwaway index in tmp_path
    kb, queries = eval_files
    result = invoke(runner, ["eval", "--kb", str(kb), "--queries", str(queries), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["queries"] == 4 and report["answerable"] == 3 and report["unanswerable"] == 1
    for key in ("hit_at_1", "hit_at_3", "mrr_at_10", "answered_correct_rate", "false_answer_rate"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["hit_at_1"] <= report["hit_at_3"] == 1.0  # only three articles
    assert report["hit_at_1"] >= 2 / 3
    assert "auroc" in report


def test_eval_json_says_null_where_a_set_has_nothing_to_measure_and_names_unread_keys(runner, eval_files, tmp_path,
                                                                                     monkeypatch):
    """JSON has no NaN: a set without unanswerable questions has no AUROC (null; the rates stay 0.0),
    and a misspelt `expected` (a line then counts as unanswerable) is named on stderr."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kb, _ = eval_files
    queries = tmp_path / "answerable.jsonl"
    queries.write_text(json.dumps({"text": "i forgot my password", "expected": "account/reset-password"}) + "\n"
                       + json.dumps({"text": "post updates to slack", "expect": "integrations/slack"}) + "\n")
    result = invoke(runner, ["eval", "--kb", str(kb), "--queries", str(queries), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # strict: NaN would not parse in most JSON readers
    assert "NaN" not in result.stdout
    assert report["answerable"] == 1 and report["unanswerable"] == 1 and report["auroc"] is not None
    assert f"{queries}:2: no \"expected\": counted as unanswerable" in result.stderr
    assert "(not read: 'expect')" in result.stderr
    only_answerable = tmp_path / "only.jsonl"
    only_answerable.write_text(json.dumps({"text": "i forgot my password", "expected": "account/reset-password"}) + "\n")
    result = invoke(runner, ["eval", "--kb", str(kb), "--queries", str(only_answerable), "--json"])
    report = json.loads(result.stdout)
    assert report["auroc"] is None and report["false_answer_rate"] == 0.0 and report["hit_at_1"] == 1.0


def test_eval_plain_output(runner, eval_files, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kb, queries = eval_files
    result = invoke(runner, ["eval", "--kb", str(kb), "--queries", str(queries), "--show-misses", "5"])
    assert result.exit_code == 0, result.output
    assert re.search(r"hit_at_1: [0-9.]+", result.stdout)


def test_eval_leaves_no_temporary_index_behind(runner, eval_files, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    kb, queries = eval_files
    result = invoke(runner, ["eval", "--kb", str(kb), "--queries", str(queries), "--json"])
    assert result.exit_code == 0, result.output
    assert list(scratch.iterdir()) == [], "deflect eval should delete its throwaway index folder"


def test_eval_requires_kb_and_queries(runner, tmp_path):
    assert runner.invoke(main, ["eval"]).exit_code == 2
    assert (
        runner.invoke(main, ["eval", "--kb", str(tmp_path / "missing"), "--queries", str(tmp_path / "q")]).exit_code
        == 2
    )


def test_eval_checks_its_queries_before_embedding_anything(runner, eval_files, tmp_path):
    kb, _ = eval_files
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "refund please", "expected": "billing/refunds"}\n{"text": 5}\n\n[1, 2]\n'
                   '{"text": "x", "expected": 3}\n', encoding="utf-8")  # fmt: skip
    result = runner.invoke(main, ["eval", "--kb", str(kb), "--queries", str(bad)])
    assert result.exit_code == 2, result.output
    for problem in (f"{bad}:2: text", f"{bad}:4: not a JSON object", f"{bad}:5: expected"):
        assert problem in result.output, result.output


def test_eval_warns_of_an_expected_article_the_kb_has_not(runner, eval_files, tmp_path):
    kb, queries = eval_files
    odd = tmp_path / "odd.jsonl"
    odd.write_text(queries.read_text(encoding="utf-8") + '{"text": "where is my parcel", "expected": "no/such"}\n',
                   encoding="utf-8")  # fmt: skip
    result = runner.invoke(main, ["eval", "--kb", str(kb), "--queries", str(odd), "--json"])
    assert result.exit_code == 0, result.output
    line = len(queries.read_text(encoding="utf-8").splitlines()) + 1
    assert f"warning: {odd}:{line}: expected 'no/such' is no article of the KB" in result.stderr


def test_settings_lists_every_setting(runner):
    result = invoke(runner, ["settings"])
    assert result.exit_code == 0
    for setting in SETTINGS:
        assert f"DEFLECT_{setting.name.upper()}" in result.stdout
        assert setting.help in result.stdout


def test_settings_checks_the_configuration_and_shows_what_is_in_force(runner, tmp_path, clean_env):
    bad = runner.invoke(main, ["settings"], env={"DEFLECT_PORT": "abc"})
    assert bad.exit_code == 2 and "DEFLECT_PORT" in bad.output
    config = tmp_path / "site.toml"
    config.write_text('kb_dir = "/srv/kb"\nport = 8100\n', encoding="utf-8")
    env = {"DEFLECT_CONFIG": str(config), "DEFLECT_PORT": "8200", "DEFLECT_ADMIN_TOKEN": "s3cret-token",
           "DEFLECT_DATABASE_URL": "postgresql+psycopg://deflect:hunter2@db.internal/deflect",
           "DEFLECT_WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/xoxsecret", "DEFLECT_WEBHOOK_SECRET": "hmac-key"}  # fmt: skip
    result = runner.invoke(main, ["settings", "--values"], env=env)
    assert result.exit_code == 0, result.output
    lines = dict(line.split(" = ", 1) for line in result.stdout.splitlines())
    assert lines["kb_dir"] == f"'/srv/kb'  ({config})"
    assert lines["port"] == "8200  (DEFLECT_PORT)"  # the environment wins over the file
    assert lines["index_dir"] == "'indexes'  (default)"
    for secret in ("hunter2", "s3cret-token", "xoxsecret", "hmac-key"):
        assert secret not in result.stdout
    assert lines["webhook_url"] == "'https://hooks.example.com/*** (set)'  (DEFLECT_WEBHOOK_URL)"


def test_a_bad_deflect_toml_is_a_one_line_config_error(runner, tmp_path, clean_env):
    """Exit status 2, `Error: ...` naming the file, and no usage lines (it is not a usage error)."""
    config = tmp_path / "deflect.toml"
    config.write_text('no_such_setting = "x"\n')
    clean_env.setenv("DEFLECT_CONFIG", str(config))
    result = runner.invoke(main, ["index", "--kb", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output == f"Error: {config}: unknown setting 'no_such_setting'\n"


def test_eval_feedback_replays_helpful_events_into_aliases(runner, eval_files, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kb, queries = eval_files
    odd = {"text": "the purple elephant code from the conference", "expected": "billing/refunds", "label": "odd"}
    with queries.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(odd) + "\n")
    base = json.loads(invoke(runner, ["eval", "--kb", str(kb), "--queries", str(queries), "--json"]).stdout)
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(
        json.dumps({"text": odd["text"], "article": "billing/refunds"}) + "\n"
        + json.dumps({"text": "x", "article": "no/such-article"}) + "\n",
        encoding="utf-8",
    )
    result = runner.invoke(main, ["eval", "--kb", str(kb), "--queries", str(queries), "--feedback", str(feedback), "--json"])
    assert result.exit_code == 0, result.output
    warm = json.loads(result.stdout)
    assert warm["feedback_replayed"] == 1
    assert "no/such-article" in result.stderr  # the bad line is named, the rest replayed
    assert base["hit_at_1"] < 1.0  # the odd query is a miss without feedback...
    assert warm["hit_at_1"] > base["hit_at_1"]  # ...and a hit once its confirmed answer is learned


def _seed_events(tmp_path) -> str:
    """A store with searches and events written through the real runtime."""
    from deflect.runtime import Runtime
    from deflect.settings import load_settings

    url = f"sqlite:///{tmp_path / 'events.db'}"
    settings = load_settings(
        config_file="none", env={}, kb_dir=str(write_kb(tmp_path / "kb", TINY_KB)),
        index_dir=str(tmp_path / "index"), database_url=url,
    )
    runtime = Runtime(settings, sync=False)
    answer = runtime.suggest("I forgot my password", session="cli")
    runtime.record_event(answer["search_id"], "click", item_id="account/reset-password")
    runtime.record_event(answer["search_id"], "helpful", item_id="account/reset-password")
    lost = runtime.suggest("do you sell gift cards", session="cli-2")
    runtime.record_event(lost["search_id"], "ticket_created")
    runtime.close()
    runtime.db.dispose()
    return url


def test_metrics_events_export_and_aliases_commands(runner, tmp_path):
    url = _seed_events(tmp_path)
    table = runner.invoke(main, ["metrics", "--database-url", url], env={"DEFLECT_INDEX_DIR": str(tmp_path / "index")})
    assert table.exit_code == 0, table.output
    assert re.search(r"searches \(final\)\s+2", table.stdout)
    assert "Reset a forgotten password" in table.stdout  # rows are named by title, not only by id
    assert re.search(r"confirmed deflections\s+1", table.stdout)
    as_json = json.loads(invoke(runner, ["metrics", "--database-url", url, "--json"]).stdout)
    assert as_json["events"]["helpful"] == 1 and as_json["totals"]["tickets"] == 1
    assert runner.invoke(main, ["metrics", "--database-url", url, "--since", "last week"]).exit_code == 2

    jsonl = invoke(runner, ["events", "export", "--database-url", url])
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [r["type"] for r in rows] == ["click", "helpful", "ticket_created"]
    assert rows[0]["query"] == "I forgot my password" and rows[0]["session"] == "cli"
    # Each time also as a UTC date and time a spreadsheet reads, next to its exact Unix seconds.
    from datetime import datetime

    for row in rows:
        for key in ("created_at", "search_created_at"):
            shown = datetime.fromtimestamp(row[key], UTC).strftime("%Y-%m-%d %H:%M:%S")
            assert row[key + "_utc"] == shown, (key, row)
    assert list(rows[0])[list(rows[0]).index("created_at") + 1] == "created_at_utc"
    out = tmp_path / "events.csv"
    csv_run = invoke(runner, ["events", "export", "--database-url", url, "--format", "csv", "-o", str(out)])
    assert csv_run.exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("event_id,created_at,created_at_utc,") and len(lines) == 4
    searches_csv = invoke(runner, ["searches", "export", "--database-url", url, "--format", "csv"]).stdout
    assert searches_csv.startswith("search_id,created_at,created_at_utc,query,")

    listed = invoke(runner, ["aliases", "list", "--database-url", url])
    assert "account/reset-password" in listed.stdout and "I forgot my password" in listed.stdout
    alias_id = listed.stdout.split()[0]
    assert invoke(runner, ["aliases", "delete", alias_id, "--database-url", url]).exit_code == 0
    assert "no active learned aliases" in invoke(runner, ["aliases", "list", "--database-url", url]).stdout
    assert runner.invoke(main, ["aliases", "delete", alias_id, "--database-url", url]).exit_code == 1


def test_db_upgrade(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = invoke(runner, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0
    assert "revision 0010 (was empty)" in result.stdout
    assert "revision 0010 (was 0010)" in invoke(runner, ["db", "upgrade", "--database-url", url]).stdout
    assert "at revision 0010; this deflect's schema is 0010 (up to date)" in invoke(runner, ["db", "current", "--database-url", url]).stdout
    # Migrations go forward only: asking for an older revision says so instead of doing nothing quietly.
    back = runner.invoke(main, ["db", "upgrade", "--database-url", url, "--revision", "0006"])
    assert back.exit_code == 1 and "already past revision 0006" in back.output and "restore a backup" in back.output


def test_db_current_says_how_far_behind_a_database_is(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    typo = runner.invoke(main, ["db", "current", "--database-url", url])  # from the wrong folder, say
    assert typo.exit_code == 1 and "no database at" in typo.output and not (tmp_path / "old.db").exists()
    invoke(runner, ["db", "upgrade", "--database-url", url, "--revision", "0006"])
    said = invoke(runner, ["db", "current", "--database-url", url]).stdout
    assert "at revision 0006; this deflect's schema is 0010 (older: deflect db upgrade migrates it to 0010)" in said
    assert "at revision 0006;" in invoke(runner, ["db", "current", "--database-url", url]).stdout  # it migrated nothing
    # Alembic's relative and plural forms move forward and are no error.
    assert "revision 0007 (was 0006)" in invoke(runner, ["db", "upgrade", "--database-url", url, "--revision", "+1"]).stdout
    assert "revision 0010 (was 0007)" in invoke(runner, ["db", "upgrade", "--database-url", url, "--revision", "heads"]).stdout
    # deflect's table with no revision in it (a migration that never finished) is said, not a crash.
    import sqlite3

    blank = tmp_path / "blank.db"
    with sqlite3.connect(blank) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    said = invoke(runner, ["db", "current", "--database-url", f"sqlite:///{blank}"]).stdout
    assert "at revision -; this deflect's schema is 0010 (no revision recorded" in said


def test_serve_on_a_port_in_use_fails_at_once_with_one_line(runner, paths):
    """Before indexing, and without a traceback: another program already listens there."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke(runner, ["serve", *paths, "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output and "indexing" not in result.output


def test_ideas_import_of_nothing_usable_fails(runner, tmp_path):
    ideas = tmp_path / "ideas.jsonl"
    ideas.write_text('{not json\n{"title": ""}\n', encoding="utf-8")
    result = runner.invoke(main, ["ideas", "import", str(ideas), "--database-url", f"sqlite:///{tmp_path / 'd.db'}"])
    assert result.exit_code == 1
    assert "0 ideas added, 0 updated, 2 skipped" in result.output and "no line of" in result.output


def test_aliases_list_says_when_there_are_none(runner, tmp_path):
    from deflect.db import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'd.db'}"
    upgrade(make_engine(url))
    assert "no active learned aliases" in invoke(runner, ["aliases", "list", "--database-url", url]).output
    assert "no learned aliases yet" in invoke(runner, ["aliases", "list", "--all", "--database-url", url]).output


def test_metrics_table_keeps_columns_with_korean_titles(tmp_path):
    """`deflect metrics` pads by terminal columns: a Hangul title (two columns a letter) keeps the numbers aligned."""
    import unicodedata

    from deflect.db import make_engine, upgrade
    from deflect.metrics import compute_metrics
    from deflect.metrics_table import format_report

    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    upgrade(engine)
    report = compute_metrics(engine)  # the real report shape, from an empty store
    row = {"impressions": 12, "clicks": 3, "helpful": 1, "not_helpful": 0, "tickets_after_shown": 1, "tickets_after_click": 0,
           "votes": 0, "effectiveness": 0.5}
    report["articles"] = [row | {"id": "ko/cancel", "title": "구독 해지하기"}, row | {"id": "billing/refunds", "title": "Refunds"}]

    def columns(line: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in line)

    lines = [line for line in format_report(report).splitlines() if line.startswith(("구독", "Refunds"))]
    assert len(lines) == 2 and columns(lines[0]) == columns(lines[1])


def test_metrics_table_shows_what_effectiveness_counts_and_keeps_a_query_on_one_line(tmp_path):
    """The table's ticket columns say which tickets count against an article, ideas show their votes,
    and a question typed with line breaks stays on its row."""
    from deflect.db import make_engine, upgrade
    from deflect.metrics import compute_metrics
    from deflect.metrics_table import format_report

    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    upgrade(engine)
    report = compute_metrics(engine)
    row = {"impressions": 5, "clicks": 2, "helpful": 1, "not_helpful": 0, "tickets_after_shown": 3,
           "tickets_after_click": 1, "votes": 7, "effectiveness": 0.5}  # fmt: skip
    report["articles"] = [row | {"id": "getting-started/keyboard-shortcuts", "title": "Keyboard shortcuts"}]
    report["ideas"] = [row | {"id": "dark-mode", "title": "Dark mode"}]
    report["content_gaps"] = [{"query": "line one\nline two", "count": 2, "answered": 1, "search_ids": []}]
    text = format_report(report)
    article = next(line for line in text.splitlines() if line.startswith("Keyboard shortcuts"))
    assert article.split()[-3:] == ["3", "1", "50.0%"]  # tickets after shown, after a click, effective
    idea = next(line for line in text.splitlines() if line.startswith("Dark mode"))
    assert idea.split()[-1] == "7"
    assert "     2        1  line one line two" in text.splitlines()  # asked, answered yet a ticket or a No

    # Two articles titled alike (a copy in another folder) are told apart by their ids.
    report["articles"] = [row | {"id": "integrations/slack", "title": "Connect Slack"},
                          row | {"id": "Integrations/Slack", "title": "Connect Slack"}]  # fmt: skip
    names = [line[:40].rstrip() for line in format_report(report).splitlines() if line.startswith("Connect Slack")]
    assert names == ["Connect Slack [integrations/slack]", "Connect Slack [Integrations/Slack]"]
    # Long ids (a help-centre export's folders) keep their end, where they differ; the row stays 40 columns.
    report["articles"] = [row | {"id": "help-center/getting-started/welcome-to-acme", "title": "Welcome to Acme"},
                          row | {"id": "help-center/getting-started/welcome-to-acme-2", "title": "Welcome to Acme"},
                          row | {"id": "도움말/시작하기/환영합니다-에이크미-데스크", "title": "Welcome to Acme"}]  # fmt: skip
    lines = [line for line in format_report(report).splitlines() if line.startswith("Welcome")]
    assert [line[:40] for line in lines[:2]] == ["Welcome to […ng-started/welcome-to-acme]",
                                                 "Welcome to […-started/welcome-to-acme-2]"]  # fmt: skip
    assert lines[2].endswith(lines[0][40:]) and "에이크미-데스크]" in lines[2]  # 40 columns, Hangul two each


def test_an_export_read_by_head_stops_quietly(tmp_path):
    """`deflect searches export | head`: the reader closes the pipe early; no error line, no traceback."""
    from deflect.db import make_engine, upgrade
    from deflect.events import write_searches

    url = f"sqlite:///{tmp_path / 'd.db'}"
    engine = make_engine(url)
    upgrade(engine)
    write_searches(engine, [({"id": f"{i:032x}", "query": "how do I export " * 20, "session": None, "locale": None,
                              "created_at": 1.7e9 + i, "answered": False, "top_score": 0.1, "index_version": "v"}, [])
                             for i in range(3000)])  # fmt: skip
    engine.dispose()
    proc = subprocess.Popen([sys.executable, "-m", "deflect", "searches", "export", "--database-url", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    first = proc.stdout.readline()
    proc.stdout.close()  # as head does after its lines
    _, err = proc.communicate(timeout=120)
    assert json.loads(first)["query"].startswith("how do I export")
    assert err.decode() == "" and proc.returncode == 1


@pytest.mark.parametrize("option", [["--threads", "0"], ["--threads", "-5"], ["--workers", "0"]])
def test_serve_refuses_a_server_that_could_answer_nothing(option):
    """With no request thread waitress would listen and queue every request for ever."""
    result = CliRunner().invoke(main, ["serve", "--port", "1", *option])
    assert result.exit_code == 2 and option[0] in result.output, result.output
