"""The backtest's HTML report: one offline file, every user string escaped, ranked, compared, charted."""

from __future__ import annotations

import copy
import math
import random
import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from upswing.backtest.html import render_report

# Typographic signs in the report, spelled as escapes (they look like x and - in the source).
X, EN_DASH, MINUS = "\u00d7", "\u2013", "\u2212"
HOSTILE = "<script>alert(1)</script> R&D \"quoted\" 'single'"
WEEKS = 52
FIRST_MONDAY = date(2024, 12, 30)

# name, kind, category, lift, recall, firings, verdict: shaped like the reference ruleset on the
# simulated history (docs/simulate.md, "What a backtest on it should know"), base rate 0.14.
REFERENCE_TRIGGERS: list[tuple[str, str, str | None, float | None, float, int, str]] = [
    ("seat-expansion", "trigger", "commercial", 4.8, 0.41, 812, "predictive"),
    ("admin-growth", "trigger", "stakeholder", 4.6, 0.22, 388, "predictive"),
    ("paywall-intent", "trigger", "intent", 4.5, 0.31, 455, "predictive"),
    ("seat-growth", "trigger", "adoption", 4.3, 0.37, 690, "predictive"),
    ("advanced-growth", "trigger", "value", 4.1, 0.28, 530, "predictive"),
    ("upgrade", "trigger", "commercial", 4.0, 0.52, 1210, "predictive"),
    ("api-limit", "trigger", "commercial", 3.9, 0.19, 301, "predictive"),
    ("feature-breadth", "trigger", "adoption", 3.7, 0.33, 602, "predictive"),
    ("integration-friction", "trigger", "risk", 2.1, 0.17, 740, "weak"),
    ("analytics-champions", "trigger", "stakeholder", 1.9, 0.21, 910, "weak"),
    ("dashboards_built", "signal", None, 0.6, 0.29, 2900, "vanity"),
    ("sustained-seat-pressure", "trigger", "commercial", None, 0.0, 14, "too few firings"),
]
NOTES = {
    "integration-friction": "Fires on churners' integration tickets as well as on growth.",
    "dashboards_built": "Fires on a third of all accounts, growers or not: no better than chance.",
    "sustained-seat-pressure": "Only 14 scored firings: too few to tell.",
}


# --- A realistic result ------------------------------------------------------------------------------


def sample_result() -> dict[str, Any]:
    """Two rulesets compared: the reference and a candidate that retunes, drops and adds a trigger."""
    rng = random.Random(7)
    retuned = {"seat-expansion": 5.2, "upgrade": 3.6, "integration-friction": 2.6}
    candidate = [
        (name, kind, category, retuned.get(name, lift), recall, firings, verdict)
        for name, kind, category, lift, recall, firings, verdict in REFERENCE_TRIGGERS
        if name != "sustained-seat-pressure"
    ]
    candidate.append(("dashboards-vanity", "trigger", "adoption", 0.7, 0.3, 2400, "vanity"))
    return {
        "tool": "upswing backtest",
        "version": "0.1.0",
        "generated_at": "2026-11-23T15:00:00Z",
        "command": "upswing backtest --events sim/events.jsonl --outcomes sim/outcomes.csv "
        "--rules rules/reference.yaml --compare rules/candidate.yaml --html report.html",
        "period": {"first_day": "2025-01-01", "last_day": "2025-12-31"},
        "horizon_days": 90,
        "input": {
            "files": ["sim/events.jsonl", "sim/accounts.jsonl", "sim/outcomes.csv"],
            "lines": 1_000_000,
            "events": 999_000,
            "duplicates": 10,
            "rejected": 5,
            "malformed": 3,
            "late": 100,
            "accounts": 1000,
            "accounts_without_profile": 2,
            "outcomes": 183,
            "outcomes_unknown_accounts": 0,
            "problems": [
                {"file": "sim/events.jsonl", "line": 17, "message": "value: must be a finite number"},
                {"file": "sim/events.jsonl", "line": 90211, "message": "occurred_at: not a date-time"},
            ],
        },
        "rulesets": [
            ruleset("A", "rules/reference.yaml", "2026-11-23.2", REFERENCE_TRIGGERS, rng),
            ruleset("B", "rules/candidate.yaml", "2026-11-24.1", candidate, rng),
        ],
    }


def ruleset(label: str, path: str, version: str, rows: list[Any], rng: random.Random) -> dict[str, Any]:
    triggers = sorted(
        (metrics(*row, rng=rng) for row in rows),
        key=lambda m: (m["lift"] is None, -(m["lift"] or 0)),
    )
    for rank, m in enumerate(triggers, 1):
        m["rank"] = rank if m["lift"] is not None else None
    firings = sum(m["firings"] for m in triggers)
    overall = metrics("any trigger", "ruleset", None, 3.1, 0.81, firings, "predictive", rng=rng)
    overall.update(play=None, rank=None, days_to_expansion=[])
    return {
        "label": label,
        "path": path,
        "version": version,
        "evaluations": 341_000,
        "firings": firings,
        "seconds": 12.3,
        "overall": overall,
        "triggers": triggers,
        "firings_by_week": {
            "weeks": [(FIRST_MONDAY + timedelta(weeks=i)).isoformat() for i in range(WEEKS)],
            "counts": {m["trigger"]: weekly(m["firings"], rng) for m in triggers},
        },
    }


def metrics(
    name: str,
    kind: str,
    category: str | None,
    lift: float | None,
    recall: float,
    firings: int,
    verdict: str,
    *,
    rng: random.Random,
    base_rate: float = 0.14,
) -> dict[str, Any]:
    scored = round(firings * 0.8)
    accounts = max(1, round(scored / 2.4))
    precision = None if lift is None else min(1.0, lift * base_rate)
    hits = round(accounts * (precision or 0))
    days = [rng.randint(1, 90) for _ in range(hits)]
    low, high = wilson(precision, accounts) if precision is not None else (None, None)
    return {
        "trigger": name,
        "kind": kind,
        "category": category,
        "play": name if kind == "trigger" else None,
        "rank": None,
        "lookback_days": 30,
        "scored_from": "2025-01-30",
        "scored_to": "2025-10-02",
        "firings": firings,
        "scored_firings": scored,
        "warm_up_firings": round(firings * 0.12),
        "censored_firings": firings - scored - round(firings * 0.12),
        "after_expansion_firings": 0,
        "accounts_fired": accounts,
        "hits": hits,
        "precision": precision,
        "precision_low": low,
        "precision_high": high,
        "recall": recall if lift is not None else None,
        "base_rate": base_rate,
        "lift": lift,
        "lift_low": None if lift is None else round(lift * 0.8, 3),
        "lift_high": None if lift is None else round(lift * 1.25, 3),
        "unique_hits": hits // 3,
        "revenue_captured": {"USD": f"{hits * 1000}.00"} if hits else {},
        "hits_without_amount": 0,
        "by_segment": {"enterprise": {"accounts_fired": accounts, "hits": hits, "precision": precision}},
        "by_kind": {"seat_expansion": hits} if hits else {},
        "median_days_to_expansion": statistics.median(days) if days else None,
        "days_to_expansion": days,
        "verdict": verdict,
        "note": NOTES.get(name, ""),
    }


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - spread), min(1.0, centre + spread)


def weekly(total: int, rng: random.Random) -> list[int]:
    weights = [0.0] * 4 + [rng.uniform(0.5, 1.5) * (1 + i / WEEKS) for i in range(WEEKS - 4)]
    spread = Counter(rng.choices(range(WEEKS), weights=weights, k=total))
    return [spread[i] for i in range(WEEKS)]


# --- Reading the page back -----------------------------------------------------------------------------

VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr"})


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(child if isinstance(child, str) else child.text() for child in self.children)

    def own_text(self) -> str:
        """Text without the tooltips (SVG <title> children)."""
        return "".join(
            child if isinstance(child, str) else child.own_text() if child.tag != "title" else ""
            for child in self.children
        )

    def all(self, tag: str, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and (cls is None or cls in child.attrs.get("class", "").split()):
                    found.append(child)
                found += child.all(tag, cls)
        return found

    def one(self, tag: str, cls: str | None = None) -> Node:
        (found,) = self.all(tag, cls)
        return found

    def walk(self) -> list[Node]:
        return [self, *(node for child in self.children if isinstance(child, Node) for node in child.walk())]


class StrictTreeBuilder(HTMLParser):
    """A tree, and a list of every end tag that does not close the element it should."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.open = [self.root]
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.open[-1].children.append(node)
        if tag not in VOID:
            self.open.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open[-1].children.append(Node(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if self.open[-1].tag == tag:
            self.open.pop()
        else:
            self.errors.append(f"</{tag}> closes <{self.open[-1].tag}>")

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(data)


def parse(page: str) -> Node:
    builder = StrictTreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.errors == []
    assert [node.tag for node in builder.open] == ["#document"], "elements left open"
    return builder.root


def render(result: dict[str, Any]) -> tuple[str, Node]:
    page = render_report(result)
    return page, parse(page)


def ranked_rows(document: Node, table_index: int = 0, part: str = "tbody") -> list[dict[str, Node]]:
    """The rows of a ruleset's ranked table, each cell under its column's title."""
    table = document.all("table", "ranked")[table_index]
    titles = [th.text() for th in table.one("thead").all("th")]
    return [dict(zip(titles, row.all("td"), strict=True)) for row in table.one(part).all("tr")]


def ranked_names(document: Node, table_index: int = 0) -> list[str]:
    return [row["Trigger"].one("span", "name").text() for row in ranked_rows(document, table_index)]


def texts(row: dict[str, Node]) -> dict[str, str]:
    return {title: cell.text() for title, cell in row.items()}


def row_cells(table: Node, name: str) -> list[Node]:
    for row in table.all("tr"):
        names = row.all("span", "name")
        if names and names[0].text() == name:
            return row.all("td")
    raise AssertionError(f"no row for {name}")


def row_of(table: Node, name: str) -> list[str]:
    return [cell.text() for cell in row_cells(table, name)]


def chart_rows(chart: Node) -> list[Node]:
    """The per-trigger groups of a chart: each has the trigger's label."""
    return [group for group in chart.all("g") if group.all("text", "label")]


def svgs(document: Node) -> list[Node]:
    return document.all("svg")


# --- The sample -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> tuple[str, Node]:
    return render(sample_result())


def test_given_two_rulesets_then_the_page_is_well_formed_with_three_charts_per_ruleset(sample):
    page, document = sample

    assert page.startswith("<!DOCTYPE html>")
    assert len(svgs(document)) == 6
    assert page.count("<svg") == 6
    headings = [h2.text() for h2 in document.all("h2")]
    assert headings == [
        "How to read this",
        "Headline",
        "Triggers ranked by lift",
        "Where the hits come from",
        "Comparison",
        "Firings over time",
        "Precision, recall and lift",
        "Time to expansion",
        "Input quality",
    ]
    for svg in svgs(document):
        assert svg.attrs["viewbox"].startswith("0 0 1060 ")
        assert svg.all("title"), "every chart has tooltips on its marks"
        assert svg.all("text", "tick"), "every chart has an axis with tick labels"


def test_given_the_sample_then_nothing_is_loaded_or_run_from_anywhere(sample):
    page, document = sample

    for forbidden in ("http://", "https://", "src=", "<script", "@import", "url(", "<link", "<img", "//"):
        assert forbidden not in page, forbidden
    assert not [node for node in document.walk() if any(name.startswith("on") for name in node.attrs)]
    metas = {node.attrs.get("http-equiv"): node.attrs.get("content") for node in document.all("meta")}
    assert metas["Content-Security-Policy"].startswith("default-src 'none'")


def test_given_the_sample_then_the_header_names_rulesets_period_horizon_and_generation_time(sample):
    _, document = sample

    header = document.one("header").text()

    assert "Upswing backtest" in header
    assert "Ruleset A: rules/reference.yaml · version 2026-11-23.2 · 11 triggers and 1 signal" in header
    assert "Ruleset B: rules/candidate.yaml · version 2026-11-24.1" in header
    assert "Period 2025-01-01 to 2025-12-31 · horizon 90 days · generated 2026-11-23T15:00:00Z" in header
    how = document.one("p", "how").text()
    assert "within the 90-day horizon" in how
    for term in ("Precision", "Recall", "Base rate", "Lift", "warm-up", "censored"):
        assert term in how


def test_given_the_sample_then_headline_cards_show_the_whole_rulesets_figures(sample):
    _, document = sample

    cards = document.all("div", "cards")[0].all("div", "card")
    values = {card.one("div", "k").text(): card.one("div", "v").text() for card in cards}

    assert values == {
        "Evaluations": "341,000",
        "Firings": "9,552",
        "Accounts fired": "3,184",
        "Precision": "43.4 %",
        "Recall": "81.0 %",
        "Lift": f"3.1{X}",
    }
    assert "in 12.3 s" in cards[0].text()
    assert "7,642 scored" in cards[1].text()
    assert re.search(rf"95 % interval 41\.\d{EN_DASH}45\.\d %", cards[3].text())
    assert cards[5].one("span", "badge").text() == "predictive"
    assert "any trigger" in document.all("section")[1].text()


def test_given_the_sample_then_rows_are_ranked_by_lift_with_formatted_numbers_and_verdict_badges(sample):
    _, document = sample

    names = ranked_names(document)
    first = texts(ranked_rows(document)[0])
    table = document.all("table", "ranked")[0]

    assert names == [row[0] for row in REFERENCE_TRIGGERS]
    assert first["#"] == "1"
    assert first["Trigger"] == "seat-expansiontrigger · commercial"  # the name, then kind · category
    assert first["Firings"] == "812650 scored"
    assert re.fullmatch(rf"67\.2 %\d\d\.\d{EN_DASH}\d\d\.\d %", first["Precision"])  # with its interval
    assert (first["Recall"], first["Base rate"]) == ("41.0 %", "14.0 %")
    assert first["Lift"] == f"4.8{X}3.8{EN_DASH}6.0"  # with its interval under it
    assert first["Hits"].endswith(" unique")
    assert first["Median days"] == "47.5"
    badges = {badge.text(): badge.attrs["class"] for badge in table.all("span", "badge")}
    assert badges == {
        "predictive": "badge good",
        "weak": "badge weak",
        "vanity": "badge bad",
        "too few firings": "badge few",
    }
    (overall,) = ranked_rows(document, part="tfoot")
    assert overall["Trigger"].one("span", "name").text() == "any trigger"
    assert overall["Lift"].text() == f"3.1{X}2.5{EN_DASH}3.9"


def test_given_the_sample_then_breakdowns_show_revenue_segments_and_kinds_and_the_warm_up_note(sample):
    page, document = sample
    table = document.all("table", "breakdown")[0]
    first = table.one("tbody").all("tr")[0]
    cells = [cell.text() for cell in first.all("td")]
    assert cells[0] == "seat-expansion"
    assert cells[1].startswith("USD ")
    assert cells[2].startswith("enterprise ")
    assert cells[3].startswith("seat_expansion ")
    assert "What a backtest cannot see" in page
    assert "matched in time" in page


def test_given_warm_up_firings_left_out_then_the_firings_chart_says_how_many():
    result = sample_result()
    result["rulesets"][0]["firings_by_week"]["warm_up_left_out"] = {"seat-expansion": 1200, "api-limit": 34}
    page, _ = render(result)
    assert "Warm-up firings are not drawn (1,234)" in page


def test_given_a_trigger_without_a_lift_then_it_ranks_last_with_dashes_for_its_metrics(sample):
    _, document = sample

    last = texts(ranked_rows(document)[-1])

    assert last["#"] == "—"
    assert last["Trigger"].startswith("sustained-seat-pressure")
    assert last["Precision"] == "—"  # and no interval under it
    assert last["Recall"] == "—"
    assert last["Lift"] == "—"
    assert last["Median days"] == "—"
    assert last["Verdict"] == "too few firings"
    assert last["Note"] == "Only 14 scored firings: too few to tell."


def test_given_triggers_out_of_order_then_the_table_follows_their_rank_and_unranked_rows_go_last():
    result = sample_result()
    triggers = result["rulesets"][0]["triggers"]
    random.Random(1).shuffle(triggers)
    for position, trigger in enumerate(triggers, 1):
        trigger["rank"] = position
    triggers[0]["rank"] = None

    _, document = render(result)

    expected = [*triggers[1:], triggers[0]]
    assert ranked_names(document) == [m["trigger"] for m in expected]
    ranks = [row["#"].text() for row in ranked_rows(document)]
    assert ranks == [str(i) for i in range(2, len(triggers) + 1)] + ["—"]


def test_given_two_rulesets_then_the_comparison_matches_triggers_by_name_with_delta_lift(sample):
    _, document = sample

    table = document.one("table", "compare")

    assert row_of(table, "any trigger")[7:] == [f"3.1{X}", f"3.1{X}", f"+0.0{X}"]
    assert row_of(table, "seat-expansion")[1:] == [
        "812",
        "812",
        "67.2 %",
        "72.8 %",
        "41.0 %",
        "41.0 %",
        f"4.8{X}",
        f"5.2{X}",
        f"+0.4{X}",
    ]
    assert row_of(table, "upgrade")[-1] == f"{MINUS}0.4{X}"
    assert row_cells(table, "upgrade")[-1].attrs["class"] == "num down"
    assert row_cells(table, "seat-expansion")[-1].attrs["class"] == "num up"
    only_a = row_of(table, "sustained-seat-pressure")
    only_b = row_of(table, "dashboards-vanity")
    assert "only in A" in only_a[0]
    assert only_a[2] == "—"
    assert only_a[-1] == "—"
    assert "only in B" in only_b[0]
    assert only_b[1] == "—"
    assert only_b[-1] == "—"
    assert "signal" in row_of(table, "dashboards_built")[0]


def test_given_the_sample_then_the_firings_chart_has_a_line_and_a_legend_entry_per_trigger(sample):
    _, document = sample

    chart = svgs(document)[0]
    lines = chart.all("polyline")
    legend = [text.own_text() for text in chart.one("g", "legend").all("text")]

    assert len(lines) == 12
    assert legend[0] == "seat-expansion"
    assert set(legend) == {row[0] for row in REFERENCE_TRIGGERS}
    assert all(len(line.attrs["points"].split()) == WEEKS for line in lines)
    assert lines[0].one("title").text().startswith("seat-expansion: 812 firings; peak ")
    weeks = chart.one("g", "targets").all("rect")
    assert len(weeks) == WEEKS
    assert weeks[10].one("title").text().startswith("Week of 2025-03-10\n")


def test_given_the_same_trigger_in_both_rulesets_then_it_keeps_its_colour(sample):
    _, document = sample

    def colours(chart: Node) -> dict[str, str]:
        return {
            line.one("title").text().split(":")[0]: line.attrs["stroke"] for line in chart.all("polyline")
        }

    a, b = colours(svgs(document)[0]), colours(svgs(document)[1])

    assert {name: a[name] for name in a.keys() & b.keys()} == {name: b[name] for name in a.keys() & b.keys()}


def test_given_the_sample_then_the_metrics_chart_draws_bars_and_the_chance_line_in_ranked_order(sample):
    _, document = sample

    chart = svgs(document)[2]
    labels = [text.own_text() for text in chart.all("text", "label")]
    values = [text.text() for text in chart.all("text", "value")]

    assert labels == [row[0] for row in REFERENCE_TRIGGERS]
    assert f"1.0{X} = chance" in chart.text()
    assert f"4.8{X}" in values
    assert "67.2 %" in values
    assert "—" in values
    assert chart.all("text", "label")[10].attrs["class"] == "label signal"


def test_given_the_sample_then_time_to_expansion_has_a_box_per_trigger_with_hits(sample):
    _, document = sample

    chart = svgs(document)[4]
    boxes = chart_rows(chart)

    assert len(boxes) == 11  # every trigger but the one with too few firings
    assert boxes[0].one("title").text().startswith("seat-expansion: ")
    assert "horizon 90 d" in chart.text()


def test_given_input_counts_and_problems_then_the_input_section_lists_them(sample):
    _, document = sample

    stats = document.one("dl", "stats")
    pairs = dict(
        zip([dt.text() for dt in stats.all("dt")], [dd.text() for dd in stats.all("dd")], strict=True)
    )
    problems = [li.text() for li in document.one("ol", "problems").all("li")]

    assert pairs["Lines read"] == "1,000,000"
    assert pairs["Events accepted"] == "999,000"
    assert pairs["Late events"] == "100"
    assert pairs["Accounts without profile"] == "2"
    assert problems[0] == "sim/events.jsonl:17 — value: must be a finite number"
    assert [dd.attrs.get("class") for dd in stats.all("dd") if dd.attrs.get("class")] == ["warn"] * 3


def test_given_the_sample_then_the_footer_gives_the_command_and_the_tool_version(sample):
    _, document = sample

    footer = document.one("footer")

    assert footer.one("pre").text() == sample_result()["command"]
    assert "upswing backtest 0.1.0" in footer.text()


# --- Hostile strings ---------------------------------------------------------------------------------


def hostile_result() -> dict[str, Any]:
    result = sample_result()
    result.update(command=HOSTILE, generated_at=HOSTILE, tool=HOSTILE, version=HOSTILE)
    result["period"] = {"first_day": HOSTILE, "last_day": HOSTILE}
    result["input"]["files"] = [HOSTILE]
    result["input"]["problems"] = [{"file": HOSTILE, "line": HOSTILE, "message": HOSTILE}]
    for ruleset in result["rulesets"]:
        ruleset.update(label=HOSTILE + ruleset["label"], path=HOSTILE, version=HOSTILE)
        ruleset["overall"]["verdict"] = HOSTILE
        first = ruleset["triggers"][0]
        counts = ruleset["firings_by_week"]["counts"]
        counts[HOSTILE] = counts.pop(first["trigger"])
        first.update(trigger=HOSTILE, kind=HOSTILE, category=HOSTILE, verdict=HOSTILE, note=HOSTILE)
    return result


def test_given_hostile_strings_everywhere_then_they_appear_only_escaped():
    page, document = render(hostile_result())

    assert "<script" not in page
    assert "alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.findall(r"&(?!amp;|lt;|gt;|quot;|#x27;)", page), "a bare & in the markup"
    assert '"quoted"' not in page
    assert "'single'" not in page
    tags = {node.tag for node in document.walk()}
    assert "script" not in tags
    assert not [node for node in document.walk() if any(name.startswith("on") for name in node.attrs)]
    assert ranked_names(document)[0] == HOSTILE  # the text survives, as text
    badges = [badge for badge in document.all("span", "badge") if badge.text() == HOSTILE]
    assert {badge.attrs["class"] for badge in badges} == {"badge few"}  # never a class of its own
    assert document.one("footer").one("pre").text() == HOSTILE
    assert document.one("ol", "problems").one("li").text() == f"{HOSTILE}:{HOSTILE} — {HOSTILE}"


# --- Edge cases --------------------------------------------------------------------------------------


def single(result: dict[str, Any]) -> dict[str, Any]:
    result["rulesets"] = result["rulesets"][:1]
    return result


def no_triggers(result: dict[str, Any]) -> dict[str, Any]:
    ruleset = single(result)["rulesets"][0]
    ruleset.update(triggers=[], firings=0)
    ruleset["firings_by_week"]["counts"] = {}
    return result


def no_firings(result: dict[str, Any]) -> dict[str, Any]:
    for ruleset in single(result)["rulesets"]:
        for m in [*ruleset["triggers"], ruleset["overall"]]:
            m.update(firings=0, scored_firings=0, accounts_fired=0, hits=0, days_to_expansion=[])
            m.update(precision=None, precision_low=None, precision_high=None, recall=None, lift=None)
            m.update(median_days_to_expansion=None, verdict="too few firings")
        counts = ruleset["firings_by_week"]["counts"]
        ruleset["firings_by_week"]["counts"] = {name: [0] * WEEKS for name in counts}
        ruleset["firings"] = 0
    return result


def all_null(result: dict[str, Any]) -> dict[str, Any]:
    for ruleset in result["rulesets"]:
        for m in [*ruleset["triggers"], ruleset["overall"]]:
            for key in list(m):
                if key not in ("trigger", "kind", "days_to_expansion"):
                    m[key] = None
            m["days_to_expansion"] = []
        ruleset.update(evaluations=None, firings=None, seconds=None)
    result["horizon_days"] = None
    return result


def one_week(result: dict[str, Any]) -> dict[str, Any]:
    for ruleset in result["rulesets"]:
        by_week = ruleset["firings_by_week"]
        by_week["weeks"] = by_week["weeks"][:1]
        by_week["counts"] = {name: [3] for name in by_week["counts"]}
    return result


def huge(result: dict[str, Any]) -> dict[str, Any]:
    for ruleset in result["rulesets"]:
        ruleset.update(evaluations=10**10, firings=10**7)
        for m in ruleset["triggers"]:
            m.update(firings=10**7, scored_firings=9 * 10**6, accounts_fired=10**7, lift=123.4)
        ruleset["firings_by_week"]["counts"] = {
            name: [2 * 10**6] * WEEKS for name in ruleset["firings_by_week"]["counts"]
        }
    result["input"].update(lines=10**9, events=10**9)
    return result


LONG = "seat-expansion-for-accounts-whose-active-seats-stayed-above-ninety-percent-of-the-plan-limit-" * 3


def long_names(result: dict[str, Any]) -> dict[str, Any]:
    for ruleset in result["rulesets"]:
        first = ruleset["triggers"][0]
        counts = ruleset["firings_by_week"]["counts"]
        counts[LONG] = counts.pop(first["trigger"])
        first["trigger"] = LONG
    return result


def many_triggers(result: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(3)
    for ruleset in result["rulesets"]:
        extra = [
            metrics(
                f"trigger-{i:02d}",
                "trigger",
                "adoption",
                round(rng.uniform(0.3, 6), 1),
                0.2,
                300,
                "weak",
                rng=rng,
            )
            for i in range(30)
        ]
        ruleset["triggers"] += extra
        ruleset["firings_by_week"]["counts"].update({m["trigger"]: weekly(300, rng) for m in extra})
    return result


def nothing(result: dict[str, Any]) -> dict[str, Any]:
    return {}


EDGE_CASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "a single ruleset": single,
    "zero triggers": no_triggers,
    "zero firings": no_firings,
    "all-null metrics": all_null,
    "one week of data": one_week,
    "huge counts": huge,
    "long trigger names": long_names,
    "30+ triggers": many_triggers,
    "an empty result": nothing,
}


@pytest.mark.parametrize("case", EDGE_CASES, ids=list(EDGE_CASES))
def test_given_an_edge_case_then_the_page_still_renders_well_formed_and_offline(case):
    page, document = render(EDGE_CASES[case](sample_result()))

    assert document.one("h1").text() == "Upswing backtest"
    assert "<script" not in page
    assert "http" not in page.replace("http-equiv", "")


def test_given_a_single_ruleset_then_there_is_no_comparison_and_three_charts():
    _, document = render(single(sample_result()))

    assert "Comparison" not in [h2.text() for h2 in document.all("h2")]
    assert not document.all("table", "compare")
    assert len(svgs(document)) == 3


def test_given_zero_triggers_then_the_table_and_charts_say_so_instead_of_drawing():
    _, document = render(no_triggers(sample_result()))

    assert document.one("table", "ranked").one("tbody").text() == "No triggers in this ruleset."
    assert svgs(document) == []
    texts = [p.text() for p in document.all("p", "meta")]
    assert "No weekly firing counts in this result." in texts
    assert "No triggers to chart." in texts
    assert "No hits yet: no trigger preceded an expansion." in texts


def test_given_zero_firings_then_flat_lines_and_dashes_are_drawn_and_no_boxes():
    _, document = render(no_firings(sample_result()))

    firings, bars = svgs(document)
    assert {tick.text() for tick in firings.all("text", "tick")} >= {"0", "1"}
    heights = {
        point.split(",")[1] for line in firings.all("polyline") for point in line.attrs["points"].split()
    }
    assert len(heights) == 1  # every line flat, and all on the same (zero) line
    assert [row.all("rect") for row in chart_rows(bars)] == [[]] * 12
    assert {text.text() for text in bars.all("text", "value")} == {"—"}


def test_given_all_metrics_null_then_every_metric_cell_shows_a_dash():
    page, document = render(all_null(sample_result()))

    metric_columns = ("Firings", "Accounts fired", "Hits", "Precision", "Recall", "Base rate", "Lift")
    for row in ranked_rows(document) + ranked_rows(document, part="tfoot"):
        cells = texts(row)
        assert [cells[title] for title in (*metric_columns, "Median days", "Verdict")] == ["—"] * 9, cells
    cards = [card.one("div", "v").text() for card in document.all("div", "card")]
    assert set(cards) == {"—"}
    assert "horizon — · generated" in document.one("header").text()
    assert "NaN" not in page
    assert "None" not in page


def test_given_one_week_of_data_then_each_trigger_is_a_visible_point():
    _, document = render(one_week(sample_result()))

    chart = svgs(document)[0]

    assert not chart.all("polyline")
    assert len(chart.all("circle")) == 12
    assert [text.text() for text in chart.all("text", "tick") if "-" in text.text()] == ["2024-12-30"]


def test_given_huge_counts_then_they_are_grouped_in_tables_and_compact_on_axes():
    _page, document = render(huge(sample_result()))

    assert "10,000,000,000" in document.all("div", "card")[0].text()
    assert ranked_names(document)  # still a table
    assert "10,000,000" in document.all("table", "ranked")[0].text()
    ticks = {text.text() for text in svgs(document)[0].all("text", "tick")}
    assert "2M" in ticks
    assert "1,000,000,000" in document.one("dl", "stats").text()


def test_given_a_very_long_trigger_name_then_the_table_keeps_it_and_charts_shorten_it():
    _, document = render(long_names(sample_result()))

    assert ranked_names(document)[0] == LONG
    labels = svgs(document)[2].all("text", "label")
    assert labels[0].own_text().endswith("…")
    assert len(labels[0].own_text()) <= 34
    assert chart_rows(svgs(document)[2])[0].one("title").text().startswith(f"#1 {LONG} (trigger)")


def test_given_more_triggers_than_colours_then_lines_repeat_colours_with_other_dashes():
    _, document = render(many_triggers(sample_result()))

    chart = svgs(document)[0]
    styles = [
        (line.attrs["stroke"], line.attrs.get("stroke-dasharray", "")) for line in chart.all("polyline")
    ]

    assert len(styles) == 42
    assert len(set(styles)) == 42
    assert len({colour for colour, _ in styles}) == 12
    assert len(chart.one("g", "legend").all("g")) == 42
    assert len(ranked_names(document)) == 42


def test_the_sample_result_is_not_changed_by_rendering():
    result = sample_result()
    before = copy.deepcopy(result)

    render_report(result)

    assert result == before
