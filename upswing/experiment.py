"""`upswing experiment report`: a trigger's measured lift, read from the API and said in plain words.

The figures are the API's (GET /v1/triggers/{name}/experiment, docs/api.md "Experiments"): this
module only fetches them with a reader key (scope accounts:read) and lays them out for a person.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


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


def render(report: dict[str, Any]) -> str:
    """The report as text: the verdict first, then each arm, the lifts and the notes."""
    percent = report.get("holdout_percent")
    holdout = f"holdout {percent:g}%" if percent else "no holdout in the active ruleset"
    lines = [
        f"Experiment {report['salt']} on trigger {report['trigger']} ({holdout}, "
        f"horizon {report['horizon_days']} days, as of {report['as_of']})",
        "",
        f"Verdict: {report['verdict']}",
        "",
        f"{'':<10}{'accounts':>10}{'expanded':>10}{'rate':>9}  {'95 % interval':<18}amount per account",
    ]
    for label, arm in (("treated", report["treated"]), ("held out", report["held_out"])):
        rate = arm["rate"]
        shown = f"{rate['value']:.1%}" if rate else "-"
        interval = f"{rate['interval_95'][0]:.1%} to {rate['interval_95'][1]:.1%}" if rate else "-"
        amounts = ", ".join(f"{value} {currency}" for currency, value in arm["amount_per_account"].items())
        counts = f"{arm['accounts']:>10,}{arm['expanded']:>10,}"
        lines.append(f"{label:<10}{counts}{shown:>9}  {interval:<18}{amounts or '-'}")
    lines.append("")
    absolute, relative = report["absolute_lift"], report["relative_lift"]
    if absolute:
        low, high = absolute["interval_95"]
        lines.append(f"Absolute lift: {absolute['value']:+.1%} (95 % interval {low:+.1%} to {high:+.1%})")
    if relative:
        low, high = relative["interval_95"]
        lines.append(f"Relative lift: x{relative['value']:.2f} (95 % interval x{low:.2f} to x{high:.2f})")
    open_trials = report["treated"]["still_within_horizon"] + report["held_out"]["still_within_horizon"]
    if open_trials:
        lines.append(f"{open_trials:,} trials are still within their horizon: rates are to date.")
    if report.get("power_note"):
        lines.append(f"Power: {report['power_note']}")
    lines += ["", f"Method: {report['method']}"]
    return "\n".join(lines)
