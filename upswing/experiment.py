"""`upswing experiment report`: a trigger's measured lift, read from the API and said in plain words.

The figures are the API's (GET /v1/triggers/{name}/experiment, docs/api.md "Experiments"): this
module only fetches them with a reader key (scope accounts:read) and lays them out for a person —
as text, or (`--html`) as a self-contained page in the backtest report's look. Both are drawn from
one `Figures`, so they show the same numbers in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from upswing.backtest import html


class ReportError(Exception):
    """The API could not answer; the message says what to do."""


def fetch_report(
    http: httpx.Client, base_url: str, key: str, trigger: str, salt: str | None = None
) -> dict[str, Any]:
    """The experiment's figures as the API computes them."""
    url = f"{base_url.rstrip('/')}/v1/triggers/{quote(trigger, safe='')}/experiment"
    try:
        answer = http.get(
            url, params={"salt": salt} if salt else None, headers={"Authorization": f"Bearer {key}"}
        )
    except httpx.HTTPError as error:
        raise ReportError(f"could not reach the API at {base_url}: {type(error).__name__}") from None
    if answer.status_code != 200:
        try:
            message = str(answer.json().get("message", ""))
        except ValueError:
            message = answer.text[:200]
        raise ReportError(f"the API answered {answer.status_code}: {message}")
    report: dict[str, Any] = answer.json()
    return report


@dataclass(frozen=True)
class ArmFigures:
    label: str
    accounts: str
    expanded: str
    rate: str
    interval: str
    amount_per_account: str
    expansion_amount: str
    open_trials: str


@dataclass(frozen=True)
class Figures:
    """The report's figures as a person reads them: the text and the HTML report show these, so the
    two can never disagree."""

    title: str
    context: str
    verdict: str
    verdict_class: str  # a fixed CSS class of the HTML report, never user data
    arms: tuple[ArmFigures, ArmFigures]
    absolute: str | None
    relative: str | None
    open_trials: str | None
    power: str | None
    more_accounts_needed: str | None
    method: str


def figures(report: dict[str, Any]) -> Figures:
    percent = report.get("holdout_percent")
    holdout = f"holdout {percent:g}%" if percent else "no holdout in the active ruleset"
    arms = tuple(
        _arm(label, report[key]) for label, key in (("treated", "treated"), ("held out", "held_out"))
    )
    absolute, relative = report["absolute_lift"], report["relative_lift"]
    absolute_line = relative_line = None
    if absolute:
        low, high = absolute["interval_95"]
        absolute_line = f"{absolute['value']:+.1%} (95 % interval {low:+.1%} to {high:+.1%})"
    if relative:
        low, high = relative["interval_95"]
        relative_line = f"x{relative['value']:.2f} (95 % interval x{low:.2f} to x{high:.2f})"
    open_trials = report["treated"]["still_within_horizon"] + report["held_out"]["still_within_horizon"]
    needed = report.get("more_accounts_needed")
    return Figures(
        title=f"Experiment {report['salt']} on trigger {report['trigger']}",
        context=f"{holdout}, horizon {report['horizon_days']} days, as of {report['as_of']}",
        verdict=str(report["verdict"]),
        verdict_class=_verdict_class(str(report["verdict"]), bool(report.get("significant"))),
        arms=(arms[0], arms[1]),
        absolute=absolute_line,
        relative=relative_line,
        open_trials=f"{open_trials:,} trials are still within their horizon: rates are to date."
        if open_trials
        else None,
        power=report.get("power_note") or None,
        more_accounts_needed=f"{needed:,} more accounts per arm for a ±5-point interval" if needed else None,
        method=str(report["method"]),
    )


def render(report: dict[str, Any]) -> str:
    """The report as text: the verdict first, then each arm, the lifts and the notes."""
    f = figures(report)
    lines = [
        f"{f.title} ({f.context})",
        "",
        f"Verdict: {f.verdict}",
        "",
        f"{'':<10}{'accounts':>10}{'expanded':>10}{'rate':>9}  {'95 % interval':<18}amount per account",
    ]
    for arm in f.arms:
        lines.append(
            f"{arm.label:<10}{arm.accounts:>10}{arm.expanded:>10}{arm.rate:>9}  {arm.interval:<18}"
            f"{arm.amount_per_account}"
        )
    lines.append("")
    if f.absolute:
        lines.append(f"Absolute lift: {f.absolute}")
    if f.relative:
        lines.append(f"Relative lift: {f.relative}")
    if f.open_trials:
        lines.append(f.open_trials)
    if f.power:
        lines.append(f"Power: {f.power}")
    lines += ["", f"Method: {f.method}"]
    return "\n".join(lines)


def render_html(report: dict[str, Any]) -> str:
    """The same figures as one self-contained HTML page, in the backtest report's look
    (upswing/backtest/html.py: its page, cards, tables and escaping)."""
    f = figures(report)
    header = html.element(
        "header",
        html.text_element("h1", f.title)
        + html.text_element("p", f.context, class_="meta")
        + html.text_element("p", f"ruleset {report.get('ruleset_version') or '—'}", class_="meta"),
    )
    badge = html.text_element("span", f.verdict, class_=f"badge {f.verdict_class}")
    cards = html.cards_markup(
        [
            ("Verdict", "significant" if report.get("significant") else "not significant", "", badge),
            *(
                (f"{arm.label.capitalize()} rate", arm.rate, f"{arm.expanded} of {arm.accounts} accounts", "")
                for arm in f.arms
            ),
            ("Absolute lift", (f.absolute or "—").split(" (")[0], _interval_of(f.absolute), ""),
            ("Relative lift", (f.relative or "—").split(" (")[0], _interval_of(f.relative), ""),
        ]
    )
    columns = (
        ("Arm", "", ""),
        ("Accounts", "num", "Trials: each account's first firing in the experiment"),
        ("Expanded", "num", "Trials an expansion was attributed to within the horizon"),
        ("Rate", "num", ""),
        ("95 % interval", "num", "Wilson score interval"),
        ("Amount per account", "num", "Expansion amount over every account of the arm, per currency"),
        ("Expansion amount", "num", ""),
        ("Within horizon", "num", "Trials whose horizon has not passed: they may still expand"),
    )
    rows = "".join(
        html.element(
            "tr",
            html.text_element("td", arm.label, class_="name")
            + "".join(
                html.text_element("td", value, class_="num")
                for value in (
                    arm.accounts,
                    arm.expanded,
                    arm.rate,
                    arm.interval,
                    arm.amount_per_account,
                    arm.expansion_amount,
                    arm.open_trials,
                )
            ),
        )
        for arm in f.arms
    )
    arms_table = html.table(html.header_row(columns), html.element("tbody", rows), "arms")
    lifts = "".join(
        html.text_element("p", f"{name}: {value}")
        for name, value in (("Absolute lift", f.absolute), ("Relative lift", f.relative))
        if value
    )
    notes = "".join(
        html.text_element("p", text)
        for text in (f.open_trials, f.power and f"Power: {f.power}", f.more_accounts_needed)
        if text
    )
    body = "".join(
        (
            header,
            html.section(
                "Verdict", html.element("div", cards, class_="cards") + html.text_element("p", f.verdict)
            ),
            html.section("Arms", arms_table + _rates_chart(report) + lifts + notes),
            html.section("Method", html.text_element("p", f.method, class_="how")),
        )
    )
    return html.page(f"Upswing — {f.title}", body)


# ── helpers ─────────────────────────────────────────────────────────────────────────────────────

_VERDICT_CLASSES = {"works": "good", "hurts": "bad"}


def _verdict_class(verdict: str, significant: bool) -> str:
    if significant:
        return next((cls for word, cls in _VERDICT_CLASSES.items() if word in verdict), "good")
    return "few" if verdict.startswith("not enough data") else "weak"


def _arm(label: str, arm: dict[str, Any]) -> ArmFigures:
    rate = arm["rate"]
    amounts = ", ".join(f"{value} {currency}" for currency, value in arm["amount_per_account"].items())
    total = ", ".join(f"{value} {currency}" for currency, value in arm["expansion_amount"].items())
    return ArmFigures(
        label=label,
        accounts=f"{arm['accounts']:,}",
        expanded=f"{arm['expanded']:,}",
        rate=f"{rate['value']:.1%}" if rate else "-",
        interval=f"{rate['interval_95'][0]:.1%} to {rate['interval_95'][1]:.1%}" if rate else "-",
        amount_per_account=amounts or "-",
        expansion_amount=total or "-",
        open_trials=f"{arm['still_within_horizon']:,}",
    )


def _interval_of(line: str | None) -> str:
    return line.split(" (", 1)[1].rstrip(")") if line and " (" in line else ""


def _rates_chart(report: dict[str, Any]) -> str:
    """Each arm's rate with its 95 % interval on one 0-100 % axis."""
    arms = [("treated", report["treated"]["rate"]), ("held out", report["held_out"]["rate"])]
    if not any(rate for _, rate in arms):
        return ""
    high = max(rate["interval_95"][1] for _, rate in arms if rate)
    top = min(1.0, max(0.1, round(high + 0.05, 1)))
    scale = html.Scale(0.0, top, 120.0, float(html.WIDTH) - 20)
    marks = []
    for index, (label, rate) in enumerate(arms):
        y = 20.0 + index * 34
        marks.append(html.text_at(110.0, y + 4, label, anchor="end"))
        if not rate:
            continue
        low, high_end = rate["interval_95"]
        tip = f"{label}: {rate['value']:.1%} (95 % interval {low:.1%} to {high_end:.1%})"
        marks.append(html.line(scale(low), y, scale(high_end), y, stroke="#2b5d8a", stroke_width=2))
        marks.append(html.rect(scale(rate["value"]) - 4, y - 8, 8.0, 16.0, tip=tip, fill="#4c78a8"))
    ticks = [(top * i / 5, f"{top * i / 5:.0%}") for i in range(6)]
    content = "".join(marks) + html.x_ticks(scale, ticks, 4.0, 76.0)
    return html.element(
        "figure",
        html.text_element("figcaption", "Expansion rate per arm, with its 95 % interval")
        + html.svg(100.0, content, "Expansion rate per arm with 95 % intervals"),
    )
