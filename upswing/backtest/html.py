"""The backtest as one self-contained HTML page, for a RevOps lead to send to the team.

The page is drawn from the backtest's JSON result (a plain mapping, as `json.loads` gives it), so
a saved result can be rendered again later. Self-contained means inline CSS, charts drawn here as
inline SVG, and no script, font, image or address of any kind: the file opens offline, survives
being mailed around, and prints. A restrictive Content-Security-Policy says the same to the browser.

Trigger names, paths, notes and problems come from user files, so every string from the result is
escaped where it enters the markup: `_el` escapes attribute values and `_t` escapes text, and the
only unescaped content they accept is markup that other helpers here made. The result is read
defensively (a missing or null field renders as "—"), so a partial result still renders.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from upswing.backtest import numbers

# Typographic signs, spelled as escapes so that they cannot be mistaken for - in the source.
EN_DASH, MINUS = "\u2013", "\u2212"
WIDTH = 1060  # every chart's drawing width; the page is ~1100 px wide
LABEL_RIGHT = 232  # right edge of the trigger-name column in the per-trigger charts
LABEL_CHARS = 32  # what fits in that column at 11 px
ROW = 28  # height of one trigger in the per-trigger charts

# Twelve colours that stay apart on white and in print; with more series they repeat with a dash.
PALETTE = (
    "#1f77b4",
    "#d95f02",
    "#1b9e77",
    "#d62728",
    "#7570b3",
    "#8c564b",
    "#e7298a",
    "#66a61e",
    "#17becf",
    "#b8860b",
    "#393b79",
    "#7f7f7f",
)
DASHES = ("", "7 3", "2 2", "9 3 2 3")
PRECISION_FILL = "#4c78a8"
RECALL_FILL = "#9ecae9"
BOX_FILL = "#c6dbef"
BOX_STROKE = "#2b5d8a"

# Verdicts map to fixed CSS classes: a verdict is user data and never becomes a class name itself.
VERDICT_CLASSES = {"predictive": "good", "weak": "weak", "vanity": "bad", "too few firings": "few"}
VERDICT_FILLS = {"good": "#2da44e", "weak": "#d4a72c", "bad": "#e5534b", "few": "#afb8c1"}

INPUT_COUNTS = (
    ("lines", "Lines read"),
    ("events", "Events accepted"),
    ("duplicates", "Duplicates"),
    ("rejected", "Rejected"),
    ("malformed", "Malformed"),
    ("late", "Late events"),
    ("accounts", "Accounts"),
    ("accounts_without_profile", "Accounts without profile"),
    ("outcomes", "Outcomes"),
    ("outcomes_unknown_accounts", "Outcomes for unknown accounts"),
)
PROBLEM_COUNTS = frozenset({"rejected", "malformed", "accounts_without_profile", "outcomes_unknown_accounts"})
MAX_PROBLEMS = 200


def render_report(result: Mapping[str, Any]) -> str:
    """The whole page for one backtest result (one ruleset, or two compared)."""
    rulesets = [ruleset for ruleset in _seq(result.get("rulesets")) if isinstance(ruleset, Mapping)]
    horizon = numbers.finite(result.get("horizon_days"))
    body = "".join(
        (
            _header(result, rulesets),
            _how_to_read(horizon),
            _headline_section(rulesets),
            _ranking_section(rulesets),
            _breakdown_section(rulesets),
            _comparison_section(rulesets[0], rulesets[1]) if len(rulesets) == 2 else "",
            _charts_section(rulesets, horizon),
            _input_section(_map(result.get("input"))),
            _footer(result),
        )
    )
    return _page(" vs ".join(_label(ruleset, i) for i, ruleset in enumerate(rulesets)), body)


# --- Sections ----------------------------------------------------------------------------------------


def _page(rulesets_title: str, body: str) -> str:
    return page("Upswing backtest" + (f" — {rulesets_title}" if rulesets_title else ""), body)


def page(title: str, body: str) -> str:
    """A self-contained page around `body` (markup): the report's head, style and policy."""
    head = "".join(
        (
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="color-scheme" content="light">',
            # Nothing may load or run: inline styles only, whatever ends up in the file.
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'\">",
            _t("title", title),
            _el("style", CSS),
        )
    )
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>{head}</head>\n<body>\n{body}</body>\n</html>\n'


def _header(result: Mapping[str, Any], rulesets: Sequence[Mapping[str, Any]]) -> str:
    period = _map(result.get("period"))
    when = (
        f"Period {_text(period.get('first_day'))} to {_text(period.get('last_day'))}"
        f" · horizon {_plural(numbers.finite(result.get('horizon_days')), 'day')}"
        f" · generated {_text(result.get('generated_at'))}"
    )
    lines = [_ruleset_line(ruleset, i) for i, ruleset in enumerate(rulesets)] or [
        "No ruleset in this result."
    ]
    return _el(
        "header",
        _t("h1", "Upswing backtest")
        + "".join(_t("p", line, class_="meta") for line in lines)
        # The period line last: it belongs to every ruleset above it.
        + _t("p", when, class_="meta"),
    )


def _ruleset_line(ruleset: Mapping[str, Any], index: int) -> str:
    metrics = _triggers(ruleset)
    signals = sum(1 for m in metrics if m.get("kind") == "signal")
    parts = [
        f"Ruleset {_label(ruleset, index)}: {_text(ruleset.get('path'))}",
        f"version {_text(ruleset.get('version'))}",
        _plural(len(metrics) - signals, "trigger")
        + (f" and {_plural(signals, 'signal')}" if signals else ""),
    ]
    seconds = numbers.finite(ruleset.get("seconds"))
    if seconds is not None:
        parts.append(f"evaluated in {seconds:,.1f} s")
    return " · ".join(parts)


def _how_to_read(horizon: float | None) -> str:
    within = (
        f"within the {numbers.days(horizon)}-day horizon" if horizon is not None else "within the horizon"
    )
    text = (
        "Every trigger was replayed day by day over the history, and its firings were compared with "
        "the expansions that really happened. <b>Precision</b> is the share of fired accounts that "
        f"expanded {escape(within)} after their first scored firing (with its 95 % Wilson interval). "
        "<b>Recall</b> is the share of expanding accounts that a firing preceded within the horizon. "
        "<b>Base rate</b> is matched in time: for each fired account, the share of all accounts active on "
        "the same day that expanded within the horizon, averaged — what a trigger firing at random on "
        "those days would score (the rate pooled over the whole window is in backtest.json). "
        f"<b>Lift</b> is precision ÷ base rate: 1.0{numbers.TIMES} is no better than chance, "
        f"3{numbers.TIMES} means "
        "fired accounts expanded three times as often as accounts in general on the same days; under it, "
        "its 95 % interval (Katz's log method, the base rate counted as one trial per account). No lift "
        f"is shown for fewer than 20 fired accounts. A <b>hit</b> is a fired account that expanded "
        "within the horizon; <b>unique</b> hits are those no other trigger of the ruleset found; "
        "<b>revenue captured</b> sums the amounts of the expansions the hits predicted. Not every "
        "firing is scored: firings in the <b>warm-up</b> (the first days of data, while a trigger "
        "cannot yet see its whole lookback window) and <b>censored</b> firings (too close to the end of "
        "the data for the horizon to have passed) are left out, as are firings after the account had "
        "already expanded; accounts a warm-up firing kept cooling down into the scored window are named "
        "in the note. Rows of kind “signal” score a signal as if it were a trigger. The verdict sums it "
        "up (predictive, weak, vanity, or too few firings to tell) and the note says why. "
        "<b>What a backtest cannot see:</b> it shows that a trigger <i>predicts</i> expansion, not that "
        "a play <i>causes</i> it (only a holdout can); it knows only the expansions in the outcomes "
        "file and the profiles as given (today's plan limits and segments, not their history); and it "
        "cannot see contact made outside Upswing."
    )
    return _section("How to read this", _el("p", text, class_="how"))


def _headline_section(rulesets: Sequence[Mapping[str, Any]]) -> str:
    blocks = [
        _ruleset_heading(ruleset, i) + _el("div", _headline_cards(ruleset), class_="cards")
        for i, ruleset in enumerate(rulesets)
    ]
    caption = _t(
        "p",
        "Precision, recall and lift here are the whole ruleset's (“any trigger”): an account "
        "counts as fired when any of the ruleset's triggers fired for it.",
        class_="meta",
    )
    return _section("Headline", "".join(blocks) + caption) if blocks else ""


def _headline_cards(ruleset: Mapping[str, Any]) -> str:
    overall = _map(ruleset.get("overall"))
    interval = _interval(overall)
    verdict = overall.get("verdict")
    seconds = numbers.finite(ruleset.get("seconds"))
    cards = (
        (
            "Evaluations",
            numbers.count(ruleset.get("evaluations")),
            f"in {seconds:,.1f} s" if seconds else "",
            "",
        ),
        ("Firings", numbers.count(ruleset.get("firings")), _scored(overall), ""),
        (
            "Accounts fired",
            numbers.count(overall.get("accounts_fired")),
            f"{numbers.count(overall.get('hits'))} hits",
            "",
        ),
        (
            "Precision",
            numbers.percent(overall.get("precision")),
            f"95 % interval {interval or numbers.DASH}",
            "",
        ),
        ("Recall", numbers.percent(overall.get("recall")), "of expanding accounts", ""),
        (
            "Lift",
            numbers.lift(overall.get("lift")),
            f"base rate {numbers.percent(overall.get('base_rate'))}",
            _verdict_badge(verdict) if verdict else "",
        ),
    )
    return cards_markup(cards)


def cards_markup(cards: Iterable[tuple[str, str, str, str]]) -> str:
    """Cards of (key, value, sub-line, extra markup such as a badge), for a `cards` div."""
    return "".join(
        _el(
            "div",
            _t("div", key, class_="k")
            + _t("div", value, class_="v")
            + _el("div", escape(sub) + " " + extra, class_="s"),
            class_="card",
        )
        for key, value, sub, extra in cards
    )


def _ranking_section(rulesets: Sequence[Mapping[str, Any]]) -> str:
    blocks = [_ruleset_heading(ruleset, i) + _ranked_table(ruleset) for i, ruleset in enumerate(rulesets)]
    return _section("Triggers ranked by lift", "".join(blocks)) if blocks else ""


# Title, class, tooltip. Kind and category sit under the trigger's name: twelve columns fit the page.
RANKED_COLUMNS = (
    ("#", "num", "rank: by lift, triggers with too few firings to judge last"),
    ("Trigger", "", "kind (trigger, or a signal scored as if it were one) · category"),
    ("Firings", "num", "all firings; under them, the scored ones"),
    ("Accounts fired", "num", "accounts with at least one scored firing"),
    (
        "Hits",
        "num",
        "fired accounts that expanded within the horizon; under it, those no other trigger found",
    ),
    ("Precision", "num", "hits ÷ accounts fired; under it, its 95 % interval"),
    ("Recall", "num", "share of expanding accounts that a firing preceded within the horizon"),
    ("Base rate", "num", "chance that an account active on the same days expands within the horizon"),
    ("Lift", "num", "precision ÷ base rate; 1.0 is chance; under it, its 95 % interval"),
    ("Median days", "num", "median days from firing to expansion, over the hits"),
    ("Verdict", "", ""),
    ("Note", "", ""),
)


def _ranked_table(ruleset: Mapping[str, Any]) -> str:
    ranked = _ranked(_triggers(ruleset))
    rows = [
        _metric_row(m, str(m["rank"]) if numbers.finite(m.get("rank")) is not None else numbers.DASH)
        for m in ranked
    ]
    body = "".join(rows) or _empty_row("No triggers in this ruleset.", len(RANKED_COLUMNS))
    overall = ruleset.get("overall")
    foot = (
        _el("tfoot", _metric_row({**overall, "trigger": "any trigger"}, ""))
        if isinstance(overall, Mapping)
        else ""
    )
    return _table(_header_row(RANKED_COLUMNS), _el("tbody", body) + foot, "ranked")


BREAKDOWN_COLUMNS = (
    ("Trigger", "", ""),
    ("Revenue captured", "num", "the amounts of the expansions its hits predicted, per currency"),
    ("Precision by segment", "", "hits / accounts fired in each account segment (from the profiles)"),
    ("Hits by expansion kind", "", "the kinds of the expansions its hits predicted"),
)


def _breakdown_section(rulesets: Sequence[Mapping[str, Any]]) -> str:
    blocks = []
    for index, ruleset in enumerate(rulesets):
        rows = [_breakdown_row(m) for m in _ranked(_triggers(ruleset))]
        body = "".join(rows) or _empty_row("No triggers in this ruleset.", len(BREAKDOWN_COLUMNS))
        blocks.append(
            _ruleset_heading(ruleset, index)
            + _table(_header_row(BREAKDOWN_COLUMNS), _el("tbody", body), "breakdown")
        )
    return _section("Where the hits come from", "".join(blocks)) if blocks else ""


def _breakdown_row(m: Mapping[str, Any]) -> str:
    revenue = _map(m.get("revenue_captured"))
    money = " · ".join(f"{_str(currency)} {_str(amount)}" for currency, amount in revenue.items())
    missing = numbers.finite(m.get("hits_without_amount"))
    if missing:
        money += f" ({round(missing):,} without an amount)"
    segments = " · ".join(
        _segment_share(name, _map(part)) for name, part in _map(m.get("by_segment")).items()
    )
    kinds = " · ".join(
        f"{_str(kind)} {numbers.count(count)}" for kind, count in _map(m.get("by_kind")).items()
    )
    cells = (
        _el("td", _t("span", _name(m), class_="name"), class_="trigger"),
        _t("td", money or numbers.DASH, class_="num"),
        _t("td", segments or numbers.DASH, class_="note"),
        _t("td", kinds or numbers.DASH, class_="note"),
    )
    return _el("tr", "".join(cells), class_="signal" if m.get("kind") == "signal" else None)


def _segment_share(name: Any, part: Mapping[str, Any]) -> str:
    return f"{_str(name)} {numbers.count(part.get('hits'))}/{numbers.count(part.get('accounts_fired'))}"


def _metric_row(m: Mapping[str, Any], rank: str) -> str:
    kind = " · ".join(_str(m.get(key)) for key in ("kind", "category") if m.get(key))
    cells = (
        _t("td", rank, class_="num"),
        _el("td", _t("span", _name(m), class_="name") + _t("span", kind, class_="sub"), class_="trigger"),
        _td_with_sub(numbers.count(m.get("firings")), _scored(m), _firing_split(m)),
        _t("td", numbers.count(m.get("accounts_fired")), class_="num"),
        _td_with_sub(numbers.count(m.get("hits")), _unique(m), "hits no other trigger of the ruleset found"),
        _td_with_sub(
            numbers.percent(m.get("precision")), _interval(m) or "", "95 % interval of the precision"
        ),
        _t("td", numbers.percent(m.get("recall")), class_="num"),
        _t("td", numbers.percent(m.get("base_rate")), class_="num"),
        _td_with_sub(numbers.lift(m.get("lift")), _lift_interval(m) or "", "95 % interval of the lift"),
        _t("td", numbers.days(m.get("median_days_to_expansion")), class_="num"),
        _el("td", _verdict_badge(m.get("verdict"))),
        _t("td", _str(m.get("note")), class_="note"),
    )
    kind_class = "signal" if m.get("kind") == "signal" else None
    return _el("tr", "".join(cells), class_=kind_class)


def _scored(m: Mapping[str, Any]) -> str:
    scored = m.get("scored_firings")
    return f"{numbers.count(scored)} scored" if numbers.finite(scored) is not None else ""


def _firing_split(m: Mapping[str, Any]) -> str:
    return (
        f"{numbers.count(m.get('scored_firings'))} scored, "
        f"{numbers.count(m.get('warm_up_firings'))} in warm-up, "
        f"{numbers.count(m.get('censored_firings'))} censored, "
        f"{numbers.count(m.get('after_expansion_firings'))} after the expansion"
    )


def _comparison_section(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    label_a, label_b = _label(a, 0), _label(b, 1)
    pairs = (
        ("Firings", "firings", numbers.count),
        ("Precision", "precision", numbers.percent),
        ("Recall", "recall", numbers.percent),
        ("Lift", "lift", numbers.lift),
    )
    groups = _el("th", "", rowspan=2) + "".join(
        _t("th", title, colspan=2, class_="num") for title, *_ in pairs
    )
    groups += _t("th", "Δ lift", rowspan=2, class_="num", title=f"lift in {label_b} minus lift in {label_a}")
    sides = "".join(_t("th", label, class_="num") for _ in pairs for label in (label_a, label_b))
    head = _el("thead", _el("tr", groups) + _el("tr", sides))

    def row(name: str, kind: str, left: Mapping[str, Any] | None, right: Mapping[str, Any] | None) -> str:
        only = f"only in {label_a}" if right is None else f"only in {label_b}" if left is None else ""
        title = _t("span", name, class_="name") + (" " + _t("span", only, class_="tag") if only else "")
        if kind == "signal":
            title += " " + _t("span", "signal", class_="tag")
        values = "".join(
            _t("td", fmt(side.get(key)) if side is not None else numbers.DASH, class_="num")
            for _, key, fmt in pairs
            for side in (left, right)
        )
        delta = _delta(left.get("lift") if left else None, right.get("lift") if right else None)
        return _el("tr", _el("td", title) + values + delta, class_="only" if only else None)

    by_key_a, by_key_b = _by_key(_triggers(a)), _by_key(_triggers(b))
    keys = list(by_key_a) + [key for key in by_key_b if key not in by_key_a]
    rows = [row(name, kind, by_key_a.get((name, kind)), by_key_b.get((name, kind))) for name, kind in keys]
    overall = row("any trigger", "ruleset", _map(a.get("overall")), _map(b.get("overall")))
    body = _el("tbody", overall, class_="overall") + _el(
        "tbody", "".join(rows) or _empty_row("No triggers in either ruleset.", 2 + 2 * len(pairs))
    )
    intro = _t(
        "p",
        f"{label_a}: {_text(a.get('path'))} (version {_text(a.get('version'))}) against "
        f"{label_b}: {_text(b.get('path'))} (version {_text(b.get('version'))}). "
        f"Δ lift is {label_b} minus {label_a}; triggers are matched by name.",
        class_="meta",
    )
    return _section("Comparison", intro + _table(head, body, "compare"))


def _delta(left: Any, right: Any) -> str:
    a, b = numbers.finite(left), numbers.finite(right)
    if a is None or b is None:
        return _t("td", numbers.DASH, class_="num")
    change = b - a
    trend = "up" if change > 0.05 else "down" if change < -0.05 else None
    return _t(
        "td", f"{change:+.1f}{numbers.TIMES}".replace("-", MINUS), class_=f"num {trend}" if trend else "num"
    )


def _charts_section(rulesets: Sequence[Mapping[str, Any]], horizon: float | None) -> str:
    if not rulesets:
        return ""
    styles = _series_styles(rulesets)
    charts = (
        ("Firings over time", lambda ruleset: _firings_chart(ruleset, styles)),
        ("Precision, recall and lift", lambda ruleset: _metrics_chart(_ranked(_triggers(ruleset)))),
        ("Time to expansion", lambda ruleset: _days_chart(_ranked(_triggers(ruleset)), horizon)),
    )
    return "".join(
        _section(
            title,
            "".join(
                _el("figure", _ruleset_heading(ruleset, i, "figcaption") + draw(ruleset))
                for i, ruleset in enumerate(rulesets)
            ),
        )
        for title, draw in charts
    )


def _input_section(summary: Mapping[str, Any]) -> str:
    if not summary:
        return _section("Input quality", _t("p", "The result has no input summary.", class_="meta"))
    files = ", ".join(_str(name) for name in _seq(summary.get("files"))) or numbers.DASH
    stats = "".join(
        _el(
            "div",
            _t("dt", title)
            + _t("dd", numbers.count(summary.get(key)), class_=_warn_class(key, summary.get(key))),
        )
        for key, title in INPUT_COUNTS
    )
    problems = [_map(problem) for problem in _seq(summary.get("problems"))]
    listed = "".join(_problem_item(problem) for problem in problems[:MAX_PROBLEMS])
    more = len(problems) - MAX_PROBLEMS
    problem_list = (
        _t("h3", f"First problems ({len(problems):,})")
        + _el("ol", listed, class_="problems")
        + (_t("p", f"and {more:,} more", class_="meta") if more > 0 else "")
        if problems
        else _t("p", "No problems found in the input.", class_="meta")
    )
    return _section(
        "Input quality",
        _t("p", f"Files: {files}", class_="meta") + _el("dl", stats, class_="stats") + problem_list,
    )


def _warn_class(key: str, value: Any) -> str | None:
    count = numbers.finite(value)
    return "warn" if key in PROBLEM_COUNTS and count else None


def _problem_item(problem: Mapping[str, Any]) -> str:
    where = _str(problem.get("file")) + (f":{problem['line']}" if problem.get("line") is not None else "")
    return _el("li", _t("code", where) + escape(f" — {_str(problem.get('message'))}"))


def _footer(result: Mapping[str, Any]) -> str:
    command = _str(result.get("command"))
    tool = " ".join(_str(result.get(key)) for key in ("tool", "version") if result.get(key)) or "upswing"
    produced = _t("p", "Produced by:") + _t("pre", command) if command else ""
    return _el(
        "footer",
        produced + _t("p", f"{tool} · generated {_text(result.get('generated_at'))}", class_="meta"),
    )


def _section(title: str, content: str) -> str:
    return _el("section", _t("h2", title) + content)


def _ruleset_heading(ruleset: Mapping[str, Any], index: int, tag: str = "h3") -> str:
    return _t(tag, f"Ruleset {_label(ruleset, index)} · {_text(ruleset.get('path'))}", class_="ruleset")


# --- Tables ------------------------------------------------------------------------------------------


def _table(head: str, body: str, kind: str) -> str:
    return _el("div", _el("table", head + body, class_=kind), class_="scroll")


def _header_row(columns: Sequence[tuple[str, str, str]]) -> str:
    cells = "".join(_t("th", title, class_=cls or None, title=tip or None) for title, cls, tip in columns)
    return _el("thead", _el("tr", cells))


def _empty_row(message: str, columns: int) -> str:
    return _el("tr", _t("td", message, colspan=columns, class_="empty"))


def _td_with_sub(value: str, sub: str, tip: str) -> str:
    return _el("td", escape(value) + _t("span", sub, class_="sub"), class_="num", title=tip)


def _verdict_badge(verdict: Any) -> str:
    text = _str(verdict) or numbers.DASH
    return _t("span", text, class_=f"badge {VERDICT_CLASSES.get(text, 'few')}")


# --- Charts ------------------------------------------------------------------------------------------


def _firings_chart(ruleset: Mapping[str, Any], styles: Mapping[str, int]) -> str:
    """Weekly firings, one line per trigger; hovering a week lists that week's counts."""
    weeks, series = _weekly_series(ruleset)
    if not weeks or not series:
        return _t("p", "No weekly firing counts in this result.", class_="meta")
    left, right, top, bottom = 64, WIDTH - 32, 26, 286
    y_ticks = _nice_ticks(max(max(counts) for _, counts in series), integer=True)
    x = _Scale(0, len(weeks) - 1, left + 6, right - 6)
    y = _Scale(0, y_ticks[-1], bottom, top)
    every = math.ceil(len(weeks) / 9)
    keys = [
        _Key(
            _truncate(name, 30),
            PALETTE[styles[name] % len(PALETTE)],
            DASHES[styles[name] // len(PALETTE) % len(DASHES)],
            f"{name}: {sum(counts):,} firings",
        )
        for name, counts in series
    ]
    legend, legend_height = _legend(keys, left, bottom + 52, right - left, 240)
    parts = [
        _text_at(0, 12, "Firings per week", cls="axis-title"),
        _y_ticks(y, [(tick, _compact(tick)) for tick in y_ticks], left, right),
        _x_ticks(x, [(i, weeks[i]) for i in range(0, len(weeks), every)], top, bottom),
        _text_at(
            (left + right) / 2, bottom + 34, "Week starting (Monday)", anchor="middle", cls="axis-title"
        ),
        _week_targets(weeks, series, x, top, bottom, left, right),
        *(
            _series_line(name, counts, key, weeks, x, y)
            for (name, counts), key in zip(series, keys, strict=True)
        ),
        legend,
    ]
    chart = _svg(bottom + 52 + legend_height, "".join(parts), f"Weekly firings per trigger ({len(series)})")
    left_out = _map(_map(ruleset.get("firings_by_week")).get("warm_up_left_out"))
    total = sum(round(numbers.finite(count) or 0) for count in left_out.values())
    if not total:
        return chart
    note = (
        f"Warm-up firings are not drawn ({total:,}): while a trigger cannot see its whole lookback it "
        "fires on many accounts at once, and that spike would flatten every line after it."
    )
    return chart + _t("p", note, class_="meta")


def _series_line(
    name: str, counts: Sequence[int], key: _Key, weeks: Sequence[str], x: _Scale, y: _Scale
) -> str:
    peak = max(range(len(counts)), key=counts.__getitem__)
    tip = f"{name}: {sum(counts):,} firings; peak {counts[peak]:,} in the week of {weeks[peak]}"
    points = " ".join(f"{_coord(x(i))},{_coord(y(count))}" for i, count in enumerate(counts))
    style = {"fill": "none", "stroke": key.colour, "stroke_width": 1.6, "stroke_dasharray": key.dash or None}
    if len(counts) == 1:  # one week of data: a line of one point would not show
        return _el("circle", _t("title", tip), cx=x(0), cy=y(counts[0]), r=4, fill=key.colour)
    return _el("polyline", _t("title", tip), points=points, stroke_linejoin="round", **style)


def _week_targets(
    weeks: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    x: _Scale,
    top: float,
    bottom: float,
    left: float,
    right: float,
) -> str:
    """Invisible week-wide columns under the lines, so hovering anywhere shows the week's counts."""
    half = (x(1) - x(0)) / 2 if len(weeks) > 1 else (right - left) / 2
    targets = []
    for i, week in enumerate(weeks):
        fired = sorted(((counts[i], name) for name, counts in series if counts[i]), reverse=True)
        listed = "\n".join(f"{name}: {count:,}" for count, name in fired[:15])
        rest = f"\n… and {len(fired) - 15} more" if len(fired) > 15 else ""
        tip = f"Week of {week}\n" + (listed + rest if fired else "no firings")
        start, end = max(left, x(i) - half), min(right, x(i) + half)
        targets.append(_rect(start, top, end - start, bottom - top, fill="transparent", tip=tip))
    return _el("g", "".join(targets), class_="targets")


def _metrics_chart(triggers: Sequence[Mapping[str, Any]]) -> str:
    """Per trigger: precision (with its interval) and recall as grouped bars, lift beside them."""
    if not triggers:
        return _t("p", "No triggers to chart.", class_="meta")
    rate_panel, lift_panel = (244.0, 600.0), (690.0, 1005.0)
    lifts = [value for m in triggers if (value := numbers.finite(m.get("lift"))) is not None]
    lift_ticks = _nice_ticks(max([1.0, *lifts]))
    rate = _Scale(0, 1, *rate_panel)
    lift = _Scale(0, lift_ticks[-1], *lift_panel)
    keys = [_Key("precision (95 % interval)", PRECISION_FILL), _Key("recall", RECALL_FILL)]
    keys += [_Key(f"lift: {verdict}", VERDICT_FILLS[cls]) for verdict, cls in VERDICT_CLASSES.items()]
    legend, legend_height = _legend(keys, 8, 4, WIDTH - 8, 170)
    top = 4 + legend_height + 28
    bottom = top + ROW * len(triggers)
    chance = lift(1.0)
    parts = [
        legend,
        _text_at(rate_panel[0], top - 8, "Precision and recall", cls="axis-title"),
        _text_at(lift_panel[0], top - 8, "Lift (precision ÷ base rate)", cls="axis-title"),
        _zebra(len(triggers), top, WIDTH),
        _x_ticks(rate, [(t / 100, f"{t} %") for t in range(0, 101, 20)], top, bottom),
        _x_ticks(lift, [(t, f"{numbers.number(t)}{numbers.TIMES}") for t in lift_ticks], top, bottom),
        _line(chance, top - 4, chance, bottom + 4, stroke="#24292f", stroke_dasharray="4 3"),
        _text_at(chance, bottom + 30, f"1.0{numbers.TIMES} = chance", anchor="middle", cls="tick"),
        *(_metric_marks(i, m, top + i * ROW, rate, lift) for i, m in enumerate(triggers)),
    ]
    return _svg(bottom + 38, "".join(parts), f"Precision, recall and lift of {len(triggers)} triggers")


def _metric_marks(index: int, m: Mapping[str, Any], row_top: float, rate: _Scale, lift: _Scale) -> str:
    precision, recall, lift_value = (
        numbers.finite(m.get("precision")),
        numbers.finite(m.get("recall")),
        numbers.finite(m.get("lift")),
    )
    verdict_fill = VERDICT_FILLS[VERDICT_CLASSES.get(_str(m.get("verdict")), "few")]
    low, high = numbers.finite(m.get("precision_low")), numbers.finite(m.get("precision_high"))
    interval = (
        _line(rate(low), row_top + 8, rate(high), row_top + 8, stroke="#24292f", stroke_width=1.2)
        if low is not None and high is not None
        else ""
    )
    tip = (
        f"#{index + 1} {_name(m)} ({_text(m.get('kind'))}): precision {numbers.percent(precision)} "
        f"({_interval(m) or numbers.DASH}), recall {numbers.percent(recall)}, "
        f"base rate {numbers.percent(m.get('base_rate'))}, "
        f"lift {numbers.lift(lift_value)}, {_text(m.get('verdict'))}"
    )
    return _el(
        "g",
        _t("title", tip)
        + _row_label(m, row_top)
        + _bar(rate, precision, row_top + 3, 10, PRECISION_FILL, numbers.percent(precision), label_after=high)
        + interval
        + _bar(rate, recall, row_top + 15, 10, RECALL_FILL, numbers.percent(recall))
        + _bar(lift, lift_value, row_top + 6, 16, verdict_fill, numbers.lift(lift_value)),
    )


def _bar(
    scale: _Scale,
    value: float | None,
    y: float,
    height: float,
    fill: str,
    label: str,
    label_after: float | None = None,
) -> str:
    """A horizontal bar from the scale's zero with its value after it (and after `label_after`, an
    interval drawn over it); "—" alone when the value is null."""
    start = scale(0)
    end = scale(max(0.0, min(value, scale.hi))) if value is not None else start
    bar = _rect(start, y, end - start, height, fill=fill) if value is not None else ""
    label_x = max(end, scale(label_after) if label_after is not None else end) + 4
    return bar + _text_at(label_x, y + height / 2 + 3.5, label, cls="value")


def _days_chart(triggers: Sequence[Mapping[str, Any]], horizon: float | None) -> str:
    """For each trigger with hits: the days from firing to expansion as a box and whiskers."""
    rows = [(m, days) for m in triggers if (days := sorted(_numbers(m.get("days_to_expansion"))))]
    if not rows:
        return _t("p", "No hits yet: no trigger preceded an expansion.", class_="meta")
    left, right, top = 244.0, 900.0, 30
    bottom = top + ROW * len(rows)
    longest = max(days[-1] for _, days in rows)
    ticks = _nice_ticks(max(horizon or 0.0, longest, 1.0), integer=True)
    x = _Scale(0, ticks[-1], left, right)
    parts = [
        _text_at(
            left,
            14,
            "Days from firing to expansion. Box: middle half of the hits; bar: median; whiskers: "
            "earliest to latest.",
            cls="axis-title",
        ),
        _zebra(len(rows), top, WIDTH),
        _x_ticks(x, [(tick, numbers.number(tick)) for tick in ticks], top, bottom),
    ]
    if horizon is not None:
        parts.append(
            _line(x(horizon), top - 4, x(horizon), bottom + 4, stroke="#24292f", stroke_dasharray="4 3")
        )
        parts.append(
            _text_at(
                x(horizon), bottom + 30, f"horizon {numbers.number(horizon)} d", anchor="middle", cls="tick"
            )
        )
    parts += [_box(m, days, top + i * ROW, x) for i, (m, days) in enumerate(rows)]
    return _svg(bottom + 38, "".join(parts), f"Days from firing to expansion for {len(rows)} triggers")


def _box(m: Mapping[str, Any], days: Sequence[float], row_top: float, x: _Scale) -> str:
    low, q1, median, q3, high = _five_numbers(days)
    mid = row_top + ROW / 2
    tip = (
        f"{_name(m)}: {len(days):,} hits; earliest {numbers.number(low)}, Q1 {numbers.number(q1)}, median "
        f"{numbers.number(median)}, Q3 {numbers.number(q3)}, latest {numbers.number(high)} days"
    )
    marks = (
        _line(x(low), mid, x(high), mid, stroke=BOX_STROKE),
        _line(x(low), mid - 5, x(low), mid + 5, stroke=BOX_STROKE),
        _line(x(high), mid - 5, x(high), mid + 5, stroke=BOX_STROKE),
        _rect(x(q1), mid - 7, max(x(q3) - x(q1), 1.0), 14, fill=BOX_FILL, stroke=BOX_STROKE),
        _line(x(median), mid - 7, x(median), mid + 7, stroke=BOX_STROKE, stroke_width=2.5),
        _text_at(912, mid + 4, f"n={len(days):,} · median {numbers.number(median)} d", cls="value"),
    )
    return _el("g", _t("title", tip) + _row_label(m, row_top) + "".join(marks))


def _row_label(m: Mapping[str, Any], row_top: float) -> str:
    name = _name(m)
    cls = "label signal" if m.get("kind") == "signal" else "label"
    return _text_at(
        LABEL_RIGHT - 8, row_top + ROW / 2 + 4, _truncate(name, LABEL_CHARS), anchor="end", cls=cls
    )


def _zebra(rows: int, top: float, width: float) -> str:
    return "".join(_rect(0, top + i * ROW, width, ROW, fill="#f6f8fa") for i in range(1, rows, 2))


# --- Chart data ----------------------------------------------------------------------------------


def _weekly_series(ruleset: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, list[int]]]]:
    """The weeks and each trigger's counts (ranked order first), padded or cut to the weeks."""
    by_week = _map(ruleset.get("firings_by_week"))
    weeks = [_str(week) for week in _seq(by_week.get("weeks"))]
    counts = _map(by_week.get("counts"))
    names = _series_names(ruleset)
    series = []
    for name in names:
        values = [int(numbers.finite(v) or 0) for v in _seq(counts.get(name))[: len(weeks)]]
        series.append((name, values + [0] * (len(weeks) - len(values))))
    return weeks, series


def _series_names(ruleset: Mapping[str, Any]) -> list[str]:
    counts = _map(_map(ruleset.get("firings_by_week")).get("counts"))
    ranked = [name for m in _ranked(_triggers(ruleset)) if (name := _name(m)) in counts]
    return list(dict.fromkeys([*ranked, *(str(name) for name in counts)]))


def _series_styles(rulesets: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """One style per trigger name across rulesets, so a trigger keeps its colour in both charts."""
    names = dict.fromkeys(name for ruleset in rulesets for name in _series_names(ruleset))
    return {name: i for i, name in enumerate(names)}


def _five_numbers(days: Sequence[float]) -> tuple[float, float, float, float, float]:
    if len(days) == 1:
        return (days[0],) * 5
    q1, median, q3 = statistics.quantiles(days, n=4, method="inclusive")
    return days[0], q1, median, q3, days[-1]


def _nice_ticks(high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Ticks from 0 to `high` or just past it, about `count` of them, at a 1-2-5 step (one decimal
    is then enough for their labels down to steps of 0.1)."""
    high = high if high > 0 else 1.0
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, step)  # counts and days: no tick between two whole numbers
    return [round(i * step, 9) for i in range(math.ceil(high / step - 1e-9) + 1)]


# --- SVG helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    """A linear map from data values [lo, hi] onto drawing coordinates [start, end]."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        if self.hi == self.lo:
            return (self.start + self.end) / 2
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)


@dataclass(frozen=True)
class _Key:
    """A legend entry: a line swatch when `dash` is given ("" is solid), a box otherwise."""

    label: str
    colour: str
    dash: str | None = None
    tip: str = ""


def _svg(height: float, content: str, label: str) -> str:
    size = {"width": WIDTH, "height": height, "viewBox": f"0 0 {WIDTH} {_coord(height)}"}
    return _el("svg", content, role="img", aria_label=label, class_="chart", **size)


def _line(x1: float, y1: float, x2: float, y2: float, **attrs: object) -> str:
    return _el("line", "", x1=x1, y1=y1, x2=x2, y2=y2, **attrs)


def _rect(x: float, y: float, width: float, height: float, *, tip: str = "", **attrs: object) -> str:
    content = _t("title", tip) if tip else ""
    return _el("rect", content, x=x, y=y, width=max(width, 0.0), height=max(height, 0.0), **attrs)


def _text_at(x: float, y: float, text: str, *, anchor: str = "start", cls: str = "", tip: str = "") -> str:
    content = escape(text) + (_t("title", tip) if tip else "")
    return _el(
        "text", content, x=x, y=y, text_anchor=None if anchor == "start" else anchor, class_=cls or None
    )


def _x_ticks(scale: _Scale, ticks: Iterable[tuple[float, str]], top: float, bottom: float) -> str:
    return "".join(
        _line(scale(value), top, scale(value), bottom, class_="grid")
        + _text_at(scale(value), bottom + 15, label, anchor="middle", cls="tick")
        for value, label in ticks
    ) + _line(scale.start, bottom, scale.end, bottom, class_="axis")


def _y_ticks(scale: _Scale, ticks: Iterable[tuple[float, str]], left: float, right: float) -> str:
    return "".join(
        _line(left, scale(value), right, scale(value), class_="grid")
        + _text_at(left - 6, scale(value) + 4, label, anchor="end", cls="tick")
        for value, label in ticks
    )


def _legend(keys: Sequence[_Key], left: float, top: float, width: float, column: float) -> tuple[str, float]:
    """Keys in a grid of `column`-wide cells; returns the markup and its height."""
    per_row = max(1, int(width // column))
    entries = []
    for i, key in enumerate(keys):
        x, y = left + (i % per_row) * column, top + (i // per_row) * 18
        swatch = (
            _line(
                x,
                y + 7,
                x + 24,
                y + 7,
                stroke=key.colour,
                stroke_width=2.2,
                stroke_dasharray=key.dash or None,
            )
            if key.dash is not None
            else _rect(x + 6, y + 1, 12, 12, fill=key.colour)
        )
        entries.append(_el("g", swatch + _text_at(x + 30, y + 11, key.label, tip=key.tip)))
    return _el("g", "".join(entries), class_="legend"), math.ceil(len(keys) / per_row) * 18


# --- Markup and formatting -----------------------------------------------------------------------


def _el(tag: str, content: str = "", /, **attrs: object) -> str:
    """An element: `content` is markup, attribute values (None: left out) are escaped here.

    Attribute names come from keywords: a trailing "_" is dropped and "_" becomes "-", so
    `class_="x"` and `stroke_width=2` give `class="x"` and `stroke-width="2"`.
    """
    rendered = "".join(
        f' {name.rstrip("_").replace("_", "-")}="{escape(_attribute(value))}"'
        for name, value in attrs.items()
        if value is not None
    )
    return f"<{tag}{rendered}>{content}</{tag}>"


def _t(tag: str, text: str, /, **attrs: object) -> str:
    """An element holding plain text, escaped."""
    return _el(tag, escape(text), **attrs)


def _attribute(value: object) -> str:
    return _coord(value) if isinstance(value, float) else str(value)


def _coord(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _lift_interval(m: Mapping[str, Any]) -> str | None:
    low, high = numbers.finite(m.get("lift_low")), numbers.finite(m.get("lift_high"))
    return f"{low:.1f}{EN_DASH}{high:.1f}" if low is not None and high is not None else None


def _unique(m: Mapping[str, Any]) -> str:
    unique = numbers.finite(m.get("unique_hits"))
    return f"{round(unique):,} unique" if unique is not None else ""


def _interval(m: Mapping[str, Any]) -> str | None:
    low, high = numbers.finite(m.get("precision_low")), numbers.finite(m.get("precision_high"))
    return f"{low * 100:.1f}{EN_DASH}{high * 100:.1f} %" if low is not None and high is not None else None


def _plural(count: float | None, noun: str) -> str:
    return numbers.DASH if count is None else f"{numbers.number(count)} {noun}{'' if count == 1 else 's'}"


def _compact(value: float) -> str:
    """Axis labels: 950, 9,500, 95k, 9.5M."""
    for threshold, size, suffix in ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / size:,.1f}".removesuffix(".0") + suffix
    return numbers.number(value)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _text(value: Any) -> str:
    """A field shown as it is, "—" when it is missing."""
    return _str(value) or numbers.DASH


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _numbers(value: Any) -> list[float]:
    return [number for item in _seq(value) if (number := numbers.finite(item)) is not None]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _triggers(ruleset: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in _seq(ruleset.get("triggers")) if isinstance(m, Mapping)]


def _ranked(triggers: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """In the backtest's rank (scoring.rank: by lift, the unjudgeable last); unranked rows last."""

    def by_rank(m: Mapping[str, Any]) -> tuple[bool, float]:
        rank = numbers.finite(m.get("rank"))
        return rank is None, rank or 0.0

    return sorted(triggers, key=by_rank)


def _by_key(triggers: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Triggers by (name, kind), first one kept: a signal may share a trigger's name."""
    keyed: dict[tuple[str, str], Mapping[str, Any]] = {}
    for m in _ranked(triggers):
        keyed.setdefault((_name(m), _str(m.get("kind"))), m)
    return keyed


def _name(m: Mapping[str, Any]) -> str:
    return _str(m.get("trigger")) or "(unnamed)"


def _label(ruleset: Mapping[str, Any], index: int) -> str:
    return _str(ruleset.get("label")) or ("AB"[index] if index < 2 else str(index + 1))


# --- Shared with the experiment report (upswing/experiment.py): one look, one escaping discipline --

element = _el
text_element = _t
section = _section
table = _table
header_row = _header_row
svg = _svg
rect = _rect
line = _line
text_at = _text_at
x_ticks = _x_ticks
Scale = _Scale


CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d8dee4;--zebra:#f6f8fa;--head:#eef1f4}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0 auto;max-width:1100px;padding:28px 20px 48px;color:var(--ink);background:#fff;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;
font-variant-numeric:tabular-nums}
h1{font-size:26px;margin:0 0 6px}
h2{font-size:19px;margin:36px 0 10px;padding-bottom:5px;border-bottom:1px solid var(--line)}
h3,figcaption{font-size:15px;font-weight:600;margin:18px 0 8px}
p{margin:6px 0}
.meta{color:var(--muted)}
.how{max-width:80ch}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 12px;color:var(--muted);font-size:12px}
.card .k{font-weight:600}
.card .v{color:var(--ink);font-size:24px;font-weight:600;line-height:1.3;white-space:nowrap}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{padding:5px 6px;text-align:left;vertical-align:top;border-bottom:1px solid var(--line)}
thead th{background:var(--head);font-weight:600;vertical-align:bottom}
tbody tr:nth-child(even){background:var(--zebra)}
tfoot td{border-top:2px solid var(--ink);font-weight:600}
.num{text-align:right;white-space:nowrap}
.strong{font-weight:600}
.sub{display:block;color:var(--muted);font-size:11px;font-weight:400}
.name{overflow-wrap:anywhere;font-weight:600}
td.trigger{min-width:13em}
th.num{white-space:normal}
.note{color:var(--muted);min-width:12em}
tr.signal .name{font-style:italic}
th[title]{cursor:help}
.empty{color:var(--muted);text-align:center;padding:14px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:11.5px;font-weight:600;
white-space:nowrap}
.badge.good{background:#dafbe1;color:#116329}
.badge.weak{background:#fff1c2;color:#7d4e00}
.badge.bad{background:#ffebe9;color:#a40e26}
.badge.few{background:#eaeef2;color:#424a53}
.tag{display:inline-block;padding:0 6px;border:1px solid var(--line);border-radius:4px;color:var(--muted);
font-size:11px;font-weight:400;white-space:nowrap}
table.compare tbody.overall td{font-weight:600}
table.compare tr.only{color:var(--muted)}
.up{color:#116329;font-weight:600}
.down{color:#a40e26;font-weight:600}
figure{margin:0 0 22px}
svg.chart{display:block;max-width:100%;height:auto}
svg text{font-family:inherit;font-size:11px;fill:var(--ink)}
svg .tick,svg .value{fill:var(--muted);font-size:10px}
svg .value{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
svg .axis-title{fill:var(--muted);font-weight:600}
svg .label.signal{font-style:italic}
svg .grid{stroke:#e6eaee}
svg .axis{stroke:#8c959f}
dl.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:6px 16px;margin:10px 0}
dl.stats dt{color:var(--muted);font-size:12px}
dl.stats dd{margin:0 0 4px;font-size:18px;font-weight:600}
dl.stats dd.warn{color:#9a6700}
ol.problems{font-size:12.5px;padding-left:28px}
ol.problems code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:var(--zebra);border:1px solid var(--line);border-radius:6px;padding:8px 10px;
white-space:pre-wrap;overflow-wrap:anywhere}
footer{margin-top:40px;padding-top:10px;border-top:1px solid var(--line);font-size:12.5px}
@page{margin:12mm}
@media print{
body{max-width:none;padding:0;font-size:11px}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
h2,h3,figcaption{break-after:avoid}
.cards{grid-template-columns:repeat(6,1fr);gap:6px}
.card .v{font-size:18px}
tfoot{display:table-row-group}
.scroll{overflow:visible}
figure,.card,tr,dl.stats{break-inside:avoid}
table{font-size:10px}
}
"""
