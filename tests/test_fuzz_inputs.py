"""Hypothesis on the article parser and renderer and on the request validators (bench/fuzz.py runs more)."""

from __future__ import annotations

import pytest
from fuzz_support import PROPERTIES, inert_problems, run_property

# A few hundred inputs each keeps this module at ~30 s; bench/fuzz.py runs thousands.
EXAMPLES = {"load_kb": 150}
DEFAULT_EXAMPLES = 300


@pytest.mark.parametrize("name, strategy, check", PROPERTIES, ids=[p[0] for p in PROPERTIES])
def test_property_holds_for_generated_inputs(name, strategy, check):
    examples = EXAMPLES.get(name, DEFAULT_EXAMPLES)
    tried, failures = run_property(strategy, check, examples)
    assert failures == []
    assert tried >= examples * 0.9  # the strategy really produced inputs


@pytest.mark.parametrize(
    "markup",
    [
        "<script>alert(1)</script>",
        "<p><img src=x onerror=alert(1)></p>",
        '<a href="jav&#x61;script:alert(1)">x</a>',
        '<a href="  JAVASCRIPT:alert(1)">x</a>',
        '<a href="java\tscript:alert(1)">x</a>',
        '<img src="data:image/svg+xml,<svg onload=alert(1)>">',
        "<svg><circle/></svg>",
        '<iframe srcdoc="x"></iframe>',
        '<form action="javascript:alert(1)"></form>',
    ],
)
def test_the_inertness_check_sees_script(markup):
    """The checker the properties rely on flags each way HTML can run script."""
    assert inert_problems(markup) != []


@pytest.mark.parametrize(
    "markup",
    [
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>",
        '<a href="https://help.example.com/x">x</a> <a href="/articles/a">a</a> <a href="mailto:a@b.example">m</a>',
        '<img src="/static/favicon.svg" alt="">',
        '<script src="/static/deflect-widget.js"></script>',
    ],
)
def test_the_inertness_check_accepts_safe_html(markup):
    assert inert_problems(markup, allowed_scripts=("/static/deflect-widget.js",)) == []


def test_deeply_nested_front_matter_is_a_warning_not_a_crash(tmp_path):
    from deflect.kb_folder import load_kb

    (tmp_path / "deep.md").write_text("---\ntitle: " + "[" * 5000 + "\n---\n# Deep\n\nBody.\n", encoding="utf-8")
    (tmp_path / "fine.md").write_text("# Fine\n\nA normal article.\n", encoding="utf-8")
    articles, warnings = load_kb(tmp_path)
    assert [a.id for a in articles] == ["fine"]
    assert len(warnings) == 1 and warnings[0].startswith("deep.md: skipped")
