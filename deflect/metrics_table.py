"""`deflect metrics` as plain-text tables: the report of deflect.metrics, read in a terminal."""

from __future__ import annotations

import unicodedata
from collections import Counter
from datetime import UTC, datetime


def format_report(report: dict, top: int = 10) -> str:
    """The report as tables: totals, events, per article and idea, content gaps, the daily series."""

    def pct(value) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    def when(ts) -> str:
        return "-" if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M")

    t = report["totals"]
    lines = [
        f"period: {when(report['since'])} .. {when(report['until'])} (UTC)",
        "",
        f"searches (final)         {t['searches']:>8}   (+{t['superseded_searches']} superseded while typing)",
        f"answered rate            {pct(t['answered_rate']):>8}   (article first {pct(t['answered_by_article_rate'])}, "
        f"idea first {pct(t['answered_by_idea_rate'])})",
        f"click rate               {pct(t['click_rate']):>8}",
        f"confirmed deflections    {t['confirmed_deflections']:>8}",
        f"assumed deflections      {t['assumed_deflections']:>8}   ({t['assumed_pending']} still inside the window)",
        f"searches with a ticket   {t['tickets']:>8}",
        f"deflection rate          {pct(t['deflection_rate']):>8}   (confirmed only {pct(t['confirmed_deflection_rate'])})",
        "",
        "events: " + ", ".join(f"{k} {v}" for k, v in report["events"].items()),
    ]
    items = False
    for kind in ("articles", "ideas"):
        rows = report[kind][:top]
        if not rows:
            continue
        items = True
        votes = f" {'votes':>5}" if kind == "ideas" else ""
        lines += [
            "",
            f"{kind:<40} {'shown':>6} {'clicks':>6} {'yes':>5} {'no':>5} {'ticket':>6} {'ticket':>6} {'effective':>9}{votes}",
            f"{'':<40} {'':>6} {'':>6} {'':>5} {'':>5} {'shown':>6} {'click':>6}",
        ]
        titles = Counter((r.get("title") or r["id"]) for r in rows)
        for r in rows:
            title = _one_line(r.get("title") or r["id"])
            if titles[r.get("title") or r["id"]] > 1:  # titled alike (a copy in another folder): say which
                shown_id = _tail_columns(_one_line(r["id"]), 40 - 10 - 3)  # ids differ most at their end
                title = _fit_columns(title, 40 - _columns(shown_id) - 3).rstrip() + f" [{shown_id}]"
            name = _fit_columns(title, 40)
            votes = f" {r['votes']:>5}" if kind == "ideas" else ""
            lines.append(
                f"{name} {r['impressions']:>6} {r['clicks']:>6} {r['helpful']:>5} {r['not_helpful']:>5} "
                f"{r['tickets_after_shown']:>6} {r['tickets_after_click']:>6} {pct(r['effectiveness']):>9}{votes}"
            )
    if items:
        lines += [
            "",
            "ticket shown: searches that showed it and got a ticket; ticket click: tickets after it was clicked.",
            "effective = yes / (yes + no + ticket click).",
        ]
    if report["content_gaps"]:
        lines += ["", "content gaps: questions nothing answered (no answer, or one followed by a ticket or a No)",
                  f"{'asked':>6} {'answered':>8}  question"]
        for gap in report["content_gaps"][:top]:
            shipped = f"  (since idea {gap['shipped_idea']} shipped)" if gap.get("shipped_idea") else ""
            answered = f"  (answered since by {gap['answered_by']})" if gap.get("answered_by") else ""
            lines.append(f"{gap['count']:>6} {gap.get('answered', 0):>8}  {_one_line(gap['query'])[:70]}{shipped}{answered}")
    if report["series"]:
        days = len(report["series"])
        shown = f"  (the last {top} of {days} days with searches; --top N or --json for more)" if days > top else ""
        lines += ["", f"{'day (UTC)':<12} {'searches':>8} {'deflected':>9} {'tickets':>7} {'rate':>7}{shown}"]
        for day in report["series"][-top:]:
            lines.append(
                f"{day['date']:<12} {day['searches']:>8} {day['deflections']:>9} {day['tickets']:>7} "
                f"{pct(day['deflection_rate']):>7}"
            )
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """A query or title as one table line: its newlines and tabs would break the table."""
    return " ".join(text.split())


def _cells(char: str) -> int:
    """Terminal columns a character takes (Hangul, Han and kana take two)."""
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _columns(text: str) -> int:
    return sum(_cells(char) for char in text)


def _tail_columns(text: str, width: int) -> str:
    """text if it fits `width` columns, else "…" and as much of its end as fits."""
    if _columns(text) <= width:
        return text
    tail: list[str] = []
    used = 1  # the "…"
    for char in reversed(text):
        used += _cells(char)
        if used > width:
            break
        tail.append(char)
    return "…" + "".join(reversed(tail))


def _fit_columns(text: str, width: int) -> str:
    """Cut or pad text to `width` terminal columns (Hangul, Han and kana take two each)."""
    out, used = [], 0
    for char in text:
        if used + _cells(char) > width:
            break
        out.append(char)
        used += _cells(char)
    return "".join(out) + " " * (width - used)
