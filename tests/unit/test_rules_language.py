"""Rules files: the reference ruleset loads, and every kind of mistake gets a located, plain message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.rules.durations import days
from shared.rules.language import CompositeSignal, MetricSignal
from shared.rules.loading import RulesetError, load_ruleset, parse_ruleset
from shared.rules.schema import rules_json_schema

REPO = Path(__file__).resolve().parents[2]

VALID = """\
version: 2026-11-23
metrics: {seats.active: gauge, api.calls: count}
signals:
  seats_full: {measure: latest, metric: seats.active, window: 30d, per_limit: seats, at_least: 0.9}
  api_heavy: {measure: sum, metric: api.calls, window: 30d, at_least: {default: 1000, segments: {smb: 100}}}
  both: {signals: [seats_full, api_heavy], n_of: 2, within: 30d}
triggers:
  upgrade:
    category: commercial
    owner_role: ae
    play: upgrade-proposal
    when: both
    unless: [do_not_contact, {renewal_within: 60d}]
    cooldown: 30d
plays:
  upgrade-proposal: {channels: [hubspot_task, email]}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RulesetError) as caught:
        parse_ruleset(text, "rules/x.yaml")
    return [str(problem) for problem in caught.value.problems]


def test_given_the_reference_ruleset_then_it_loads_with_every_capability():
    ruleset = load_ruleset(REPO / "rules" / "reference.yaml")

    measures = {
        signal.measure.value for signal in ruleset.signals.values() if isinstance(signal, MetricSignal)
    }
    assert measures == {"sum", "distinct", "new_distinct", "active_days", "latest", "low", "share"}
    modifiers = [s for s in ruleset.signals.values() if isinstance(s, MetricSignal)]
    for modifier in ("per_limit", "sustained", "rising", "growth", "forecast"):
        assert any(getattr(signal, modifier) for signal in modifiers), modifier
    triggers = ruleset.triggers.values()
    assert any(trigger.requires for trigger in triggers)
    assert any(getattr(check, "signal", None) for trigger in triggers for check in trigger.unless)
    assert any(isinstance(s, CompositeSignal) for s in ruleset.signals.values())
    assert {t.category.value for t in ruleset.triggers.values()} >= {
        "commercial",
        "adoption",
        "intent",
        "risk",
    }


def test_given_a_valid_file_then_dates_as_versions_and_calibrated_thresholds_are_read():
    ruleset = parse_ruleset(VALID, "rules/x.yaml")

    assert ruleset.version == "2026-11-23"
    assert ruleset.signals["api_heavy"].at_least.segments == {"smb": 100}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "rules/x.yaml:1:1: a ruleset must be a mapping"),
        ("version: [1,\n", "rules/x.yaml:2:1: not valid YAML"),
        (
            VALID.replace("window: 30d, per_limit", "window: 0d, per_limit"),
            "rules/x.yaml:4:63: signals.seats_full.window: '0d' is not a duration",
        ),
        (
            VALID.replace("per_limit: seats,", "per_limit: seats, colour: red,"),
            "signals.seats_full.colour: unknown key 'colour'",
        ),
        (
            VALID.replace("at_least: 0.9", "at_least: ninety"),
            "signals.seats_full.at_least: must be a number, got 'ninety'",
        ),
        (
            VALID.replace("category: commercial", "category: money"),
            "triggers.upgrade.category: 'money' is not one of",
        ),
        (VALID.replace("    play: upgrade-proposal\n", ""), "triggers.upgrade.play: is required"),
        (
            VALID.replace("[do_not_contact,", "[do_not_call,"),
            "triggers.upgrade.unless[0]: 'do_not_call' is not one of",
        ),
        (VALID.replace("n_of: 2", "n_of: 3"), "signals.both: n_of is 3 but only 2 signals are listed"),
        (
            VALID.replace("segments: {smb: 100}}", "industries: {}}"),
            "rules/x.yaml:5:99: signals.api_heavy.at_least.industries: dictionary should have at least 1",
        ),
        (
            VALID.replace("{default: 1000, segments: {smb: 100}}", "{default: 1000}"),
            "signals.api_heavy.at_least: give segments, industries or employees beside default",
        ),
        (
            VALID.replace(
                "segments: {smb: 100}}",
                "employees: [{at_least: 500, value: 3}, {at_least: 50, value: 2}]}",
            ),
            "signals.api_heavy.at_least: employee bands must be listed by at_least, smallest first",
        ),
        (
            VALID.replace("segments: {smb: 100}}", "employees: [{at_least: 100000000, value: 3}]}"),
            "signals.api_heavy.at_least.employees[0].at_least: input should be less than or equal to 1000",
        ),
        (
            VALID.replace(
                "window: 30d, at_least: {",
                "window: 30d, growth: {over: previous_window, from_zero: always}, at_least: {",
            ),
            "rules/x.yaml:5:104: signals.api_heavy.growth.from_zero: 'always' is not one of 'skip' or 'fire'",
        ),
        (VALID.replace("upgrade:\n", "upgrade:\n    cooldown: 1d\n"), "'cooldown' appears twice"),
    ],
)
def test_given_a_schema_mistake_then_the_message_names_file_line_path_and_what_is_wrong(text, expected):
    assert any(expected in problem for problem in problems(text)), problems(text)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("metric: api.calls", "metric: api.call"),
            "signals.api_heavy.metric: metric 'api.call' is not declared under metrics "
            "(did you mean 'api.calls'?)",
        ),
        (
            ("measure: latest", "measure: sum"),
            "signals.seats_full.measure: sum adds up counts, but 'seats.active' is a gauge",
        ),
        (
            ("measure: sum, metric: api.calls", "measure: peak, metric: api.calls"),
            "peak reads a gauge, but 'api.calls' is a count",
        ),
        (
            ("when: both", "when: bothh"),
            "triggers.upgrade.when: no signal named 'bothh' (did you mean 'both'?)",
        ),
        (
            ("[seats_full, api_heavy]", "[seats_full, ghost]"),
            "signals.both.signals[1]: no signal named 'ghost'",
        ),
        (("window: 30d, at_least: {", "window: 30d, sustained: 14, at_least: {"), "less than or equal to 12"),
        (
            ("unless: [do_not_contact,", "unless: [{signal: seats_ful}, do_not_contact,"),
            "rules/x.yaml:13:23: triggers.upgrade.unless[0].signal: no signal named 'seats_ful' "
            "(did you mean 'seats_full'?)",
        ),
        (
            ("unless: [do_not_contact,", "unless: [{signal: both}, do_not_contact,"),
            "rules/x.yaml:13:23: triggers.upgrade.unless[0].signal: the trigger is excluded by its own "
            "signal 'both': it could never fire",
        ),
        (
            ("unless: [do_not_contact,", "unless: [{signal: seats_full, days: 3}, do_not_contact,"),
            "rules/x.yaml:13:41: triggers.upgrade.unless[0].days: unknown key 'days'",
        ),
        (
            ("cooldown: 30d\n", "cooldown: 30d\n    requires: [{account_age: {}}]\n"),
            "rules/x.yaml:15:30: triggers.upgrade.requires[0].account_age: give at_least, at_most or both",
        ),
        (
            (
                "cooldown: 30d\n",
                "cooldown: 30d\n    requires: [{account_age: {at_least: 5w, at_most: 30d}}]\n",
            ),
            "triggers.upgrade.requires[0].account_age: at_least 5w is longer than at_most 30d: no age fits",
        ),
        (
            ("cooldown: 30d\n", "cooldown: 30d\n    requires: [{renewal_within: 60d}]\n"),
            "rules/x.yaml:15:15: triggers.upgrade.requires: renewal_within: 60d is both required and "
            "excluded: the trigger could never fire",
        ),
        (
            ("cooldown: 30d\n", "cooldown: 30d\n    requires: [{signal: seats_fll}]\n"),
            "rules/x.yaml:15:25: triggers.upgrade.requires[0].signal: no signal named 'seats_fll' "
            "(did you mean 'seats_full'?)",
        ),
        (
            ("measure: sum, metric: api.calls,", "measure: ratio,"),
            "signals.api_heavy: ratio ({numerator, denominator}) goes with measure ratio, and only there",
        ),
        (
            (
                "measure: sum, metric: api.calls,",
                "measure: ratio, ratio: {numerator: {measure: sum, metric: api.calls}, "
                "denominator: {measure: sum, metric: seats.active}},",
            ),
            "rules/x.yaml:5:108: signals.api_heavy.ratio.denominator.measure: sum adds up counts, but "
            "'seats.active' is a gauge",
        ),
        (
            (
                "measure: sum, metric: api.calls,",
                "measure: ratio, ratio: {numerator: {measure: sum, metric: api.errors}, "
                "denominator: {measure: sum, metric: api.calls}},",
            ),
            "rules/x.yaml:5:73: signals.api_heavy.ratio.numerator.metric: metric 'api.errors' is not",
        ),
        (
            (
                "measure: sum, metric: api.calls,",
                "measure: ratio, ratio: {numerator: {measure: share, metric: api.calls}, "
                "denominator: {measure: sum, metric: api.calls}},",
            ),
            "signals.api_heavy.ratio.numerator: a side of a ratio is a plain measure, not share",
        ),
        (
            (
                "measure: sum, metric: api.calls,",
                "measure: new_distinct, metric: api.calls, dimension: team,",
            ),
            "signals.api_heavy: not_seen_in is required with measure new_distinct, and only there",
        ),
        (
            ("measure: sum, metric: api.calls,", "measure: sum, metric: api.calls, not_seen_in: 30d,"),
            "signals.api_heavy: not_seen_in is required with measure new_distinct, and only there",
        ),
        (
            (
                "measure: sum, metric: api.calls,",
                "measure: new_distinct, metric: api.calls, not_seen_in: 30d,",
            ),
            "signals.api_heavy: dimension is required with measure distinct or new_distinct, and only there",
        ),
        (
            (
                "measure: sum, metric: api.calls, window: 30d,",
                "measure: new_distinct, metric: api.calls, dimension: team, not_seen_in: 53w, window: 30d,",
            ),
            "signals.api_heavy: looks back 401 days, more than the 400 days counters are kept",
        ),
        (
            ("window: 30d, at_least: {", "window: 30d, forecast: {reaches: 1, within: 30d}, at_least: {"),
            "signals.api_heavy: forecast is the threshold: no other threshold, growth, sustained or rising",
        ),
        (
            (
                "measure: latest, metric: seats.active, window: 30d, per_limit: seats, at_least: 0.9",
                "measure: peak, metric: seats.active, window: 30d, per_limit: seats, "
                "forecast: {reaches: 1, within: 30d}",
            ),
            "signals.seats_full: forecast projects a sum (its running total) or a gauge's latest readings",
        ),
        (
            (
                "measure: latest, metric: seats.active, window: 30d, per_limit: seats, at_least: 0.9",
                "measure: latest, metric: seats.active, window: 1d, per_limit: seats, "
                "forecast: {reaches: 1, within: 30d}",
            ),
            "signals.seats_full: forecast fits a trend: the window needs at least 2 days",
        ),
        (
            (
                "measure: latest, metric: seats.active, window: 30d, per_limit: seats, at_least: 0.9",
                "measure: latest, metric: seats.active, window: 30d, forecast: {reaches: 1, within: 0d}",
            ),
            "rules/x.yaml:4:99: signals.seats_full.forecast.within: '0d' is not a duration",
        ),
        (
            ("window: 30d, at_least: {", "where: {team: a, region: eu}, window: 30d, at_least: {"),
            "signals.api_heavy.where: dictionary should have at most 1 item",
        ),
        (
            ("window: 30d, at_least: {", "group_by: team, window: 30d, at_least: {"),
            "signals.api_heavy: group_by and groups_at_least go together",
        ),
        (
            (
                "window: 30d, at_least: {",
                "where: {team: a}, group_by: region, groups_at_least: 2, window: 30d, at_least: {",
            ),
            "signals.api_heavy: use where or group_by, not both",
        ),
        (
            ("window: 30d, at_least: {", "group_by: team, groups_at_least: 51, window: 30d, at_least: {"),
            "signals.api_heavy.groups_at_least: input should be less than or equal to 50",
        ),
        (
            (
                "measure: sum, metric: api.calls,",
                "measure: distinct, dimension: user, metric: api.calls, where: {team: a},",
            ),
            "signals.api_heavy: where slices a metric's own numbers: use sum, count, active_days, latest",
        ),
    ],
)
def test_given_a_reference_mistake_then_it_is_reported_at_its_place(change, expected):
    found = problems(VALID.replace(*change))
    assert any(expected in problem for problem in found), found


def test_given_a_window_longer_than_the_retention_then_it_is_an_impossible_window():
    too_long = VALID.replace("window: 30d, at_least: {", "window: 30w, sustained: 2, at_least: {")
    # 53 weeks, plus 29 more days for the composite that looks at it over 30 days: 400.
    just_fits = VALID.replace("window: 30d, at_least: {", "window: 53w, at_least: {")

    assert any(
        "looks back 420 days, more than the 400 days counters are kept" in p for p in problems(too_long)
    )
    parse_ruleset(just_fits, "rules/x.yaml")


def test_given_composites_that_refer_to_each_other_then_the_cycle_is_named():
    text = VALID.replace(
        "  both: {signals: [seats_full, api_heavy], n_of: 2, within: 30d}\n",
        "  both: {signals: [seats_full, loop], n_of: 2, within: 30d}\n"
        "  loop: {signals: [both, api_heavy], n_of: 1, within: 30d}\n",
    )

    assert any("cycle: both → loop → both" in problem for problem in problems(text))


def test_given_durations_then_days_and_weeks_are_whole_days():
    assert (days("30d"), days("13w")) == (30, 91)


def test_given_the_committed_schema_then_it_matches_the_models():
    committed = json.loads((REPO / "docs" / "rules.schema.json").read_text())

    assert committed == rules_json_schema(), (
        "regenerate with `upswing rules schema --out docs/rules.schema.json`"
    )


def test_given_the_cli_then_validate_exits_non_zero_with_located_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("window: 30d, per_limit", "window: 0d, per_limit"))

    good = subprocess.run(
        [sys.executable, "-m", "upswing.cli", "rules", "validate", str(REPO / "rules")],
        capture_output=True,
        text=True,
    )
    failed = subprocess.run(
        [sys.executable, "-m", "upswing.cli", "rules", "validate", str(bad)], capture_output=True, text=True
    )

    assert good.returncode == 0, good.stderr
    assert "16 signals, 13 triggers" in good.stdout
    assert failed.returncode == 1
    assert f"{bad}:4:63: signals.seats_full.window" in failed.stderr
    assert "Traceback" not in failed.stderr


# ── plays ──────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("play: upgrade-proposal", "play: upgrade-proposl"),
            "rules/x.yaml:11:11: triggers.upgrade.play: no play named 'upgrade-proposl' under plays "
            "(did you mean 'upgrade-proposal'?)",
        ),
        (
            ("{channels: [hubspot_task, email]}", "{channels: [fax]}"),
            "plays.upgrade-proposal.channels[0]: unknown channel 'fax': one of hubspot_task, email, event, "
            "slack, webhook:NAME",
        ),
        (
            ("{channels: [hubspot_task, email]}", "{message: {subject: 'Hi $account.nme'}}"),
            "plays.upgrade-proposal.message: unknown placeholder $account.nme",
        ),
        (
            ("{channels: [hubspot_task, email]}", "{message: {body: 'costs 5 $'}}"),
            "plays.upgrade-proposal.message: a `$` must start a placeholder",
        ),
        (
            ("{channels: [hubspot_task, email]}", "{sla_business_days: -1}"),
            "plays.upgrade-proposal.sla_business_days: input should be greater than or equal to 0",
        ),
        (
            ("{channels: [hubspot_task, email]}", "{priority: {high_at: 30, medium_at: 60}}"),
            "plays.upgrade-proposal.priority: medium_at must not be above high_at",
        ),
        (
            (
                "{channels: [hubspot_task, email]}",
                "{escalation: [{after: 0d, channels: [email]}, {after: 0d, channels: [hubspot_task]}]}",
            ),
            "plays.upgrade-proposal: escalation tiers must come later and later",
        ),
        (
            ("{channels: [hubspot_task, email]}", "{escalation: [{after: 3d, channels: [email]}]}"),
            "plays.upgrade-proposal: the first escalation tier is the play itself: after: 0d",
        ),
        (
            ("{channels: [hubspot_task, email]}", "{fallback: {pools: {smb: []}}}"),
            "plays.upgrade-proposal.fallback.pools.smb: ",
        ),
    ],
)
def test_given_a_play_mistake_then_the_message_names_file_line_path_and_what_is_wrong(change, expected):
    found = problems(VALID.replace(*change))

    assert any(expected in problem for problem in found), found


# ── channels: slack and webhook:NAME ────────────────────────────────────────────────────────────

WITH_DESTINATION = (
    VALID
    + """\
destinations:
  webhooks:
    crm-sync: {url: "https://hooks.example.com/upswing", secret: upswing/webhooks/crm-sync}
"""
)


def test_given_slack_and_a_declared_webhook_then_the_play_keeps_them_in_order():
    ruleset = parse_ruleset(
        WITH_DESTINATION.replace(
            "{channels: [hubspot_task, email]}",
            "{channels: [slack, webhook:crm-sync], "
            "slack: {channels: {enterprise: C0123ABCD, default: '#csm'}}}",
        ),
        "rules/x.yaml",
    )

    play = ruleset.plays["upgrade-proposal"]
    assert play.channels == ["slack", "webhook:crm-sync"]
    assert play.slack.channel_for("enterprise", "ae") == "C0123ABCD"
    assert play.slack.channel_for("smb", "ae") == "#csm"
    destination = ruleset.destinations.webhooks["crm-sync"]
    assert (destination.url, destination.secret) == (
        "https://hooks.example.com/upswing",
        "upswing/webhooks/crm-sync",
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("{channels: [hubspot_task, email]}", "{channels: [email, webhook:crm-synk]}"),
            "rules/x.yaml:16:40: plays.upgrade-proposal.channels[1]: no webhook destination named 'crm-synk' "
            "under destinations.webhooks (did you mean 'crm-sync'?)",
        ),
        (
            (
                "{channels: [hubspot_task, email]}",
                "{escalation: [{after: 0d, channels: [email]}, {after: 7d, channels: [webhook:billing]}]}",
            ),
            "plays.upgrade-proposal.escalation[1].channels[0]: no webhook destination named 'billing' under "
            "destinations.webhooks (declare its url and secret there)",
        ),
        (
            ("{channels: [hubspot_task, email]}", "{channels: [webhook]}"),
            "plays.upgrade-proposal.channels[0]: a webhook channel names its destination: webhook:NAME",
        ),
        (
            ("{channels: [hubspot_task, email]}", "{channels: [webhook:Crm Sync]}"),
            "plays.upgrade-proposal.channels[0]: unknown channel 'webhook:Crm Sync'",
        ),
        (
            ("https://hooks.example.com/upswing", "http://hooks.example.com/upswing"),
            "destinations.webhooks.crm-sync.url: a webhook URL is https://host/path (http only for 127.0.0.1",
        ),
        (
            ("secret: upswing/webhooks/crm-sync", "secret: whsec_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH"),
            "destinations.webhooks.crm-sync.secret: ",
        ),
        (
            ("{channels: [hubspot_task, email]}", "{channels: [slack], slack: {channels: {smb: general}}}"),
            "plays.upgrade-proposal.slack.channels.smb: ",
        ),
    ],
)
def test_given_a_channel_mistake_then_the_message_names_its_place(change, expected):
    found = problems(WITH_DESTINATION.replace(*change))

    assert any(expected in problem for problem in found), found


def test_given_a_loopback_http_destination_then_it_is_accepted_for_the_local_stack():
    ruleset = parse_ruleset(
        WITH_DESTINATION.replace("https://hooks.example.com/upswing", "http://127.0.0.1:8123/hook"),
        "rules/x.yaml",
    )

    assert ruleset.destinations.webhooks["crm-sync"].url == "http://127.0.0.1:8123/hook"


@pytest.mark.parametrize(
    ("auto_close", "expected"),
    [
        ("{after: 0d}", "plays.upgrade-proposal.auto_close: auto_close.after must be 1d to 365d, not 0d"),
        ("{after: 400d}", "plays.upgrade-proposal.auto_close: auto_close.after must be 1d to 365d, not 400d"),
        ("{after: 7 days}", "16:68: plays.upgrade-proposal.auto_close.after: '7 days' is not a valid"),
        ("{after: 2m}", "plays.upgrade-proposal.auto_close.after: '2m' is not a valid"),
        ("{}", "plays.upgrade-proposal.auto_close.after: is required"),
        ("{after: 7d, note: hi}", "plays.upgrade-proposal.auto_close.note: unknown key 'note'"),
        ("7d", "plays.upgrade-proposal.auto_close: must be a mapping"),
    ],
)
def test_given_a_bad_auto_close_then_the_message_names_the_path_and_what_is_wrong(auto_close, expected):
    found = problems(
        VALID.replace(
            "{channels: [hubspot_task, email]}", f"{{channels: [hubspot_task], auto_close: {auto_close}}}"
        )
    )

    assert any(expected in problem for problem in found), found


def test_given_auto_close_on_a_play_without_a_hubspot_task_then_it_is_refused():
    found = problems(
        VALID.replace("{channels: [hubspot_task, email]}", "{channels: [email], auto_close: {after: 7d}}")
    )

    assert any("auto_close closes HubSpot tasks: the play has no hubspot_task channel" in p for p in found), (
        found
    )


def test_given_auto_close_then_it_is_kept_and_off_when_absent():
    plain = parse_ruleset(VALID, "rules/x.yaml")
    closing = parse_ruleset(
        VALID.replace(
            "{channels: [hubspot_task, email]}",
            "{escalation: [{after: 0d, channels: [email]}, {after: 7d, channels: [hubspot_task]}], "
            "auto_close: {after: 2w}}",
        ),
        "rules/x.yaml",
    )

    assert plain.plays["upgrade-proposal"].auto_close is None
    auto_close = closing.plays["upgrade-proposal"].auto_close
    assert auto_close is not None
    assert auto_close.after == "2w"


def test_given_the_reference_ruleset_then_every_trigger_has_a_play_with_a_narrative():
    ruleset = load_ruleset(REPO / "rules" / "reference.yaml")

    assert {trigger.play for trigger in ruleset.triggers.values()} == set(ruleset.plays)
    for play in ruleset.plays.values():
        assert "$evidence" in play.message.body
    upgrade = ruleset.plays["upgrade-proposal"]
    assert [(tier.after, tier.role, list(tier.channels)) for tier in upgrade.tiers()] == [
        ("0d", "csm", ["email"]),
        ("7d", "csm", ["hubspot_task"]),
        ("14d", "ae", ["hubspot_task", "email"]),
    ]


# ── "did you mean" names only keys valid where the mistake is ──────────────────────────────────


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # A misspelt trigger key gets the trigger's own key, not a signal's or a play's.
        (("    cooldown: 30d\n", "    coldown: 30d\n"), "unknown key 'coldown' (did you mean 'cooldown'?)"),
        (("window: 30d, per_limit", "windw: 30d, per_limit"), "unknown key 'windw' (did you mean 'window'?)"),
    ],
)
def test_given_an_unknown_key_then_the_suggestion_is_a_key_valid_at_that_place(change, expected):
    found = problems(VALID.replace(*change))

    assert any(expected in problem for problem in found), found


def test_given_a_key_valid_only_elsewhere_then_it_is_not_suggested_back_as_itself():
    # `renewal_within` is valid inside `unless`, not on the trigger: once suggested as itself.
    (problem,) = problems(
        VALID.replace("    cooldown: 30d\n", "    cooldown: 30d\n    renewal_within: 60d\n")
    )

    assert problem.endswith("triggers.upgrade.renewal_within: unknown key 'renewal_within'"), problem


def test_given_metric_names_with_capitals_in_a_ruleset_then_they_are_folded_like_event_names():
    ruleset = parse_ruleset(VALID.replace("api.calls", "API.Calls"), "rules/x.yaml")

    assert "api.calls" in ruleset.metrics
    assert ruleset.signals["api_heavy"].metric == "api.calls"
