"""Randomized holdouts on moto: a held-out firing is recorded and counted, never routed; each account
is one trial of its trigger's experiment, counted per arm exactly once; GET /v1/triggers/{name}/
experiment measures the lift from those counters.

Firings carry the evidence the rules engine writes (`arm`, `experiment`), drawn by the real
assignment (shared/experiments/arms.py) from a ruleset with `holdout: 10%`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.router.handler import route_fired
from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore
from shared.experiments.arms import assign
from shared.experiments.assignment import Arm
from shared.experiments.export import COLUMNS
from shared.horizon import DEFAULT_HORIZON_DAYS
from shared.outcomes.attribution import Attributor, StoredOutcomeFacts
from shared.outcomes.models import OutcomeKind
from shared.resources import EMAIL_QUEUE, HUBSPOT_QUEUE, PLAYS_TABLE
from shared.routing.dispatch import AwsDispatcher
from shared.routing.ledger import PlayLedger
from shared.routing.models import PlayStatus
from shared.routing.router import FiredMessage, Router, play_id
from shared.rules.language import Experiment, Rollout
from shared.rules.loading import parse_ruleset
from shared.rules.plays import Channel
from shared.trigger_metrics.counters import Count
from shared.trigger_metrics.store import TriggerMetricsStore
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.firings import fired_message
from tests.integration.builders import TEST_WRITER, account_path, call_api, proxy_event, sqs_event
from upswing.cli import main
from upswing.experiment import ReportError, fetch_report, figures, render, render_html

NOW = datetime.now(UTC).replace(microsecond=0)
TRIGGER = "seat-expansion"  # a trigger of the reference ruleset, which the API runs in tests
BUS = "upswing-experiments-bus"

RULES = parse_ruleset(
    """
version: experiments-test-1
metrics: {seats.active: gauge}
signals:
  busy: {measure: latest, metric: seats.active, window: 1d, at_least: 10}
triggers:
  seat-expansion:
    {category: commercial, owner_role: csm, play: seat-expansion, when: busy, cooldown: 30d, holdout: 10%}
plays:
  seat-expansion:
    escalation:
      - {after: 0d, channels: [hubspot_task, email]}
      - {after: 7d, role: ae, channels: [hubspot_task]}
""",
    "experiments-test.yaml",
)
CSM = {"name": "Casey CSM", "email": "casey@example.com", "hubspot_owner_id": "501"}
AE = {"name": "Alex AE", "email": "alex@example.com", "hubspot_owner_id": "601"}


def accounts_in(arm: Arm, count: int, prefix: str = "acct-") -> list[str]:
    """The first `count` account ids (acct-0, acct-1, ...) the trigger's draw puts in `arm`."""
    trigger = RULES.triggers[TRIGGER]
    found = []
    number = 0
    while len(found) < count:
        account = f"{prefix}{number}"
        assignment = assign(TRIGGER, trigger, account)
        if assignment and assignment.arm is arm:
            found.append(account)
        number += 1
    return found


def fired(account_id: str, at: datetime, *, salt: str | None = None) -> FiredMessage:
    """A firing as the engine writes it, with the account's arm drawn for the trigger."""
    trigger = RULES.triggers[TRIGGER]
    if salt is not None:
        trigger = trigger.model_copy(update={"experiment": Experiment(salt=salt)})
    assignment = assign(TRIGGER, trigger, account_id)
    assert assignment is not None
    return fired_message(
        account_id,
        at,
        trigger=TRIGGER,
        version="v1",
        firing_id=hashlib.sha256(f"{account_id}|{at.isoformat()}".encode()).hexdigest()[:24],
        arm=assignment.arm.value,
        experiment=assignment.as_evidence(),
    )


def put_account(aws: Aws, account_id: str, **profile: Any) -> None:
    AccountStore(aws.dynamodb, aws.accounts_table).put(
        account_id,
        AccountProfile.model_validate(
            {"name": account_id.title(), "owners": {"csm": CSM, "ae": AE}, **profile}
        ),
        TEST_WRITER,
    )


@pytest.fixture
def ledger(aws: Aws) -> PlayLedger:
    return PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS)


@pytest.fixture
def router(aws: Aws, ledger: PlayLedger) -> Router:
    from tests.conftest import _test_client

    events = _test_client("events")
    events.create_event_bus(Name=BUS)
    return Router(
        ruleset=RULES,
        accounts=AccountStore(aws.dynamodb, aws.accounts_table),
        ledger=ledger,
        dispatcher=AwsDispatcher(
            aws.sqs,
            {
                Channel.HUBSPOT_TASK: aws.queues[HUBSPOT_QUEUE.env_var],
                Channel.EMAIL: aws.queues[EMAIL_QUEUE.env_var],
            },
            events,
            BUS,
        ),
        signal_holds=lambda account_id, trigger, at: True,
    )


def delivered(aws: Aws) -> list[dict[str, Any]]:
    return [
        json.loads(message["Body"])
        for queue in (HUBSPOT_QUEUE, EMAIL_QUEUE)
        for message in aws.queue_messages(aws.queues[queue.env_var])
    ]


def cohort_totals(aws: Aws) -> tuple[dict[str, int], dict[str, Decimal]]:
    """The trigger's counts by name, and its experiment counts by `<salt>#<arm>#<what>`, all days."""
    cohorts = TriggerMetricsStore(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var]).cohorts(
        TRIGGER, date(2000, 1, 1), date(2100, 1, 1)
    )
    counts = {count.value: sum(c.counts[count] for c in cohorts) for count in Count}
    arms: dict[str, Decimal] = {}
    for cohort in cohorts:
        for name, value in cohort.arms.items():
            arms[name] = arms.get(name, Decimal(0)) + value
    return counts, arms


# ── the holdout ────────────────────────────────────────────────────────────────────────────────


def test_a_held_out_firing_is_recorded_and_counted_but_never_reaches_a_delivery_queue(
    aws: Aws, router: Router, ledger: PlayLedger
) -> None:
    # Given an account the draw holds out, and one it treats
    [held] = accounts_in(Arm.HOLDOUT, 1)
    [treated] = accounts_in(Arm.TREATED, 1)
    for account in (held, treated):
        put_account(aws, account)
    messages = [fired(held, NOW - timedelta(hours=1)), fired(treated, NOW - timedelta(hours=1))]

    # When the router function takes both firings (and the held-out one is redelivered)
    answer = route_fired(
        sqs_event([message.model_dump_json() for message in [*messages, messages[0]]]), router
    )

    # Then only the treated account's play reaches the queues
    assert answer == {"batchItemFailures": []}
    assert {delivery["account_id"] for delivery in delivered(aws)} == {treated}
    # And the held-out play is in the ledger, final, saying why, with its evidence and no escalation
    record = ledger.get(held, play_id(messages[0].firing_id, 0))
    assert record is not None
    assert record.status is PlayStatus.HELD_OUT
    assert record.reason is not None
    assert record.reason.startswith(f"held out: experiment {TRIGGER}, draw ")
    assert record.firing["arm"] == "holdout"
    assert record.firing["experiment"]["salt"] == TRIGGER
    assert record.firing["condition"]["detail"] == "latest seats.active = 12"
    assert ledger.get(held, play_id(messages[0].firing_id, 1)) is None
    assert ledger.get(treated, play_id(messages[1].firing_id, 1)) is not None  # the treated one escalates
    # And the trigger counts two firings, one routed, one held out, one account per arm — once
    counts, arms = cohort_totals(aws)
    assert (counts["firings"], counts["routed"], counts["held_out"]) == (2, 1, 1)
    assert arms == {f"{TRIGGER}#holdout#accounts": 1, f"{TRIGGER}#treated#accounts": 1}


def test_a_held_out_account_stays_held_out_and_is_one_trial_however_often_it_fires(
    aws: Aws, router: Router, ledger: PlayLedger
) -> None:
    # Given a held-out account that fires, then fires again after the cooldown
    [held] = accounts_in(Arm.HOLDOUT, 1)
    put_account(aws, held)
    first, second = fired(held, NOW - timedelta(days=40)), fired(held, NOW - timedelta(days=5))

    router.route_firing(first, NOW - timedelta(days=40))
    record = router.route_firing(second, NOW - timedelta(days=5))

    # Then both firings are held out (the draw is the same), neither is routed
    assert record.status is PlayStatus.HELD_OUT
    assert delivered(aws) == []
    # And only the first is the account's trial in the experiment
    assert ledger.get(held, play_id(first.firing_id, 0)).trial is True  # type: ignore[union-attr]
    assert ledger.get(held, play_id(second.firing_id, 0)).trial is False  # type: ignore[union-attr]
    counts, arms = cohort_totals(aws)
    assert (counts["firings"], counts["held_out"]) == (2, 2)
    assert arms == {f"{TRIGGER}#holdout#accounts": 1}


def test_a_new_salt_is_a_new_experiment_that_counts_the_account_again(
    aws: Aws, router: Router, ledger: PlayLedger
) -> None:
    # Given an account that entered the experiment under the trigger's name
    [account] = accounts_in(Arm.TREATED, 1)
    put_account(aws, account)
    router.route_firing(fired(account, NOW - timedelta(days=40)), NOW - timedelta(days=40))

    # When the trigger's experiment gets a new salt and the account fires again
    message = fired(account, NOW - timedelta(days=2), salt="seats-2027")
    router.route_firing(message, NOW - timedelta(days=2))

    # Then it is a trial of the new experiment too, counted under the new salt
    assert ledger.get(account, play_id(message.firing_id, 0)).trial is True  # type: ignore[union-attr]
    _, arms = cohort_totals(aws)
    new_arm = message.firing.model_dump()["arm"]
    assert arms == {f"{TRIGGER}#treated#accounts": 1, f"seats-2027#{new_arm}#accounts": 1}


# ── measured lift ──────────────────────────────────────────────────────────────────────────────


class Recorder:
    """The router's queues and bus, as lists (the lift tests route hundreds of firings)."""

    def __init__(self) -> None:
        self.delivered: list[Any] = []

    def deliver(self, deliveries: list[Any]) -> None:
        self.delivered += deliveries

    def announce(self, record: Any) -> None:
        pass


@pytest.fixture
def fast_router(aws: Aws, ledger: PlayLedger) -> Router:
    return Router(
        ruleset=RULES,
        accounts=AccountStore(aws.dynamodb, aws.accounts_table),
        ledger=ledger,
        dispatcher=Recorder(),
        signal_holds=lambda account_id, trigger, at: True,
    )


def run_experiment(
    router: Router, ledger: PlayLedger, plan: dict[Arm, tuple[int, int]], *, days_ago: int = 10
) -> None:
    """Fire `accounts` of each arm `days_ago`, and expand the first `expanded` of them 2 days later
    (amount 100 USD each)."""
    attributor = Attributor(plays=ledger, horizon_days=DEFAULT_HORIZON_DAYS)
    fired_at = NOW - timedelta(days=days_ago)
    for arm, (accounts, expanded) in plan.items():
        chosen = accounts_in(arm, accounts)
        for account in chosen:
            router.route_firing(fired(account, fired_at), fired_at)
        for number, account in enumerate(chosen[:expanded]):
            outcome = StoredOutcomeFacts(
                account_id=account,
                outcome_id=f"out-{account}-{number}",
                kind=OutcomeKind.SEAT_EXPANSION,
                occurred_at=fired_at + timedelta(days=2),
                amount=Decimal("100"),
                currency="USD",
            )
            attributor.attribute(outcome)


def experiment(salt: str | None = None) -> tuple[int, dict[str, Any]]:
    query = {"salt": salt} if salt else None
    path = f"/v1/triggers/{TRIGGER}/experiment"
    return call_api(proxy_event("GET", path, None, content_type=None, query=query))


def wilson(hits: int, trials: int) -> tuple[float, float]:
    """The Wilson score interval, written out here to check the API's arithmetic independently."""
    z = 1.959963984540054
    share = hits / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def test_the_experiment_route_reports_hand_computed_rates_lift_and_amounts(
    aws: Aws, fast_router: Router, ledger: PlayLedger
) -> None:
    # Given 30 treated accounts, 12 of which expanded, and 20 held out, 2 of which expanded
    run_experiment(fast_router, ledger, {Arm.TREATED: (30, 12), Arm.HOLDOUT: (20, 2)})

    # When RevOps reads the experiment
    status, answer = experiment()

    # Then the arms are counted per account
    assert status == 200
    assert answer["salt"] == TRIGGER
    assert (answer["treated"]["accounts"], answer["treated"]["expanded"]) == (30, 12)
    assert (answer["held_out"]["accounts"], answer["held_out"]["expanded"]) == (20, 2)
    assert answer["treated"]["expansion_amount"] == {"USD": "1200.00"}
    assert answer["treated"]["amount_per_account"] == {"USD": "40.00"}  # 1,200 over 30 accounts
    assert answer["held_out"]["amount_per_account"] == {"USD": "10.00"}  # 200 over 20
    assert answer["treated"]["still_within_horizon"] == 30
    # And the rates are 12/30 and 2/20 with their Wilson intervals
    assert answer["treated"]["rate"]["value"] == 0.4
    assert answer["treated"]["rate"]["interval_95"] == pytest.approx(wilson(12, 30), abs=1e-4)
    assert answer["held_out"]["rate"]["value"] == 0.1
    # And the absolute lift is 0.4 - 0.1 with Newcombe's interval (from the two Wilson intervals)
    (l1, u1), (l2, u2) = wilson(12, 30), wilson(2, 20)
    low = 0.3 - math.sqrt((0.4 - l1) ** 2 + (u2 - 0.1) ** 2)
    high = 0.3 + math.sqrt((u1 - 0.4) ** 2 + (0.1 - l2) ** 2)
    assert answer["absolute_lift"]["value"] == 0.3
    assert answer["absolute_lift"]["interval_95"] == pytest.approx([low, high], abs=1e-4)
    # And the relative lift is 4x with the Katz log interval
    spread = 1.959963984540054 * math.sqrt(1 / 12 - 1 / 30 + 1 / 2 - 1 / 20)
    assert answer["relative_lift"]["value"] == 4.0
    assert answer["relative_lift"]["interval_95"] == pytest.approx(
        [4 * math.exp(-spread), 4 * math.exp(spread)], abs=1e-3
    )
    assert answer["significant"] is True
    assert answer["verdict"].startswith("the play works")
    assert "Newcombe" in answer["method"]


def test_a_planted_effect_is_detected_and_a_null_effect_is_not_called_significant(
    aws: Aws, fast_router: Router, ledger: PlayLedger
) -> None:
    # Given the play works: 50 % of 30 treated accounts expand, 5 % of 20 held-out ones
    run_experiment(fast_router, ledger, {Arm.TREATED: (30, 15), Arm.HOLDOUT: (20, 1)})
    # And under another salt (another experiment), the play does nothing: 20 % in both arms
    salted = RULES.triggers[TRIGGER].model_copy(update={"experiment": Experiment(salt="null-run")})
    fired_at = NOW - timedelta(days=10)
    attributor = Attributor(plays=ledger, horizon_days=DEFAULT_HORIZON_DAYS)
    for arm, (size, grew) in {Arm.TREATED: (20, 4), Arm.HOLDOUT: (20, 4)}.items():
        chosen = accounts_in_salted(salted, arm, size)
        for account in chosen:
            fast_router.route_firing(fired(account, fired_at, salt="null-run"), fired_at)
        for account in chosen[:grew]:
            attributor.attribute(
                StoredOutcomeFacts(
                    account_id=account,
                    outcome_id=f"null-{account}",
                    kind=OutcomeKind.SEAT_EXPANSION,
                    occurred_at=fired_at + timedelta(days=1),
                    amount=Decimal("50"),
                    currency="USD",
                )
            )

    # When RevOps reads both experiments
    _, planted = experiment()
    _, null = experiment("null-run")

    # Then the planted effect is significant and positive
    assert (planted["treated"]["accounts"], planted["held_out"]["accounts"]) == (30, 20)
    assert planted["significant"] is True
    assert planted["absolute_lift"]["interval_95"][0] > 0
    assert planted["verdict"].startswith("the play works")
    # And the null effect is not called significant, and says how many more accounts would settle it
    assert (null["treated"]["accounts"], null["held_out"]["accounts"]) == (20, 20)
    assert null["absolute_lift"]["value"] == 0.0
    assert null["significant"] is False
    assert null["verdict"].startswith("no measurable effect yet")
    assert null["more_accounts_needed"] > 0
    assert null["power_note"] is not None  # 20 held-out accounts cannot see a 25 % lift at 20 %


def test_an_unknown_trigger_or_a_bad_salt_is_refused_with_a_plain_message(aws: Aws) -> None:
    status, answer = call_api(
        proxy_event("GET", "/v1/triggers/seat-expansio/experiment", None, content_type=None)
    )
    assert status == 404
    assert "Did you mean 'seat-expansion'?" in answer["message"]

    status, answer = experiment("Not A Salt")
    assert status == 400
    assert "is not a salt" in answer["message"]


def accounts_in_salted(trigger: Any, arm: Arm, count: int) -> list[str]:
    """Like accounts_in, for a trigger with its own salt."""
    found: list[str] = []
    number = 0
    while len(found) < count:
        account = f"null-{number}"
        assignment = assign(TRIGGER, trigger, account)
        if assignment and assignment.arm is arm:
            found.append(account)
        number += 1
    return found


# ── upswing experiment report ──────────────────────────────────────────────────────────────────


def api_transport() -> httpx.MockTransport:
    """The API handler behind an httpx transport, as API Gateway's `prod` stage: what the CLI asks
    reaches the real route (the stage is not part of the route's path)."""

    def handle(request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params) or None
        path = request.url.path.removeprefix("/prod")
        status, body = call_api(proxy_event(request.method, path, None, content_type=None, query=query))
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handle)


def test_the_report_command_says_the_verdict_and_each_arm_in_plain_words(
    aws: Aws, fast_router: Router, ledger: PlayLedger
) -> None:
    # Given 30 treated accounts (12 expanded) and 20 held out (2 expanded)
    run_experiment(fast_router, ledger, {Arm.TREATED: (30, 12), Arm.HOLDOUT: (20, 2)})

    # When RevOps asks for the report
    with httpx.Client(transport=api_transport()) as http:
        report = fetch_report(http, "https://api.example.test/prod/", "upk_reader", TRIGGER)
    text = render(report)

    # Then it leads with the verdict, then each arm, the lifts, the open trials and the power note
    lines = text.splitlines()
    assert lines[0].startswith(f"Experiment {TRIGGER} on trigger {TRIGGER} (no holdout in the active ruleset")
    assert lines[2].startswith("Verdict: the play works: treated accounts expanded +30.0%")
    assert lines[5].split()[:4] == ["treated", "30", "12", "40.0%"]
    assert lines[5].endswith("40.00 USD")
    assert lines[6].split()[:5] == ["held", "out", "20", "2", "10.0%"]
    assert "Absolute lift: +30.0% (95 % interval +4.7% to +49.1%)" in text
    assert "Relative lift: x4.00" in text
    assert "50 trials are still within their horizon: rates are to date." in text
    assert "Power: the held-out group (20 accounts) is too small" in text


def test_the_html_report_shows_the_same_figures_as_the_text_one_offline(
    aws: Aws, fast_router: Router, ledger: PlayLedger, tmp_path, monkeypatch, capsys
) -> None:
    # Given the experiment of the text report above
    run_experiment(fast_router, ledger, {Arm.TREATED: (30, 12), Arm.HOLDOUT: (20, 2)})
    monkeypatch.setenv("UPSWING_API_KEY", "upk_reader")
    monkeypatch.setattr(httpx, "Client", functools.partial(httpx.Client, transport=api_transport()))
    fetched: list[dict[str, Any]] = []

    def fetch(*args: Any, **kwargs: Any) -> dict[str, Any]:
        fetched.append(fetch_report(*args, **kwargs))
        return fetched[-1]

    monkeypatch.setattr("upswing.experiment.fetch_report", fetch)
    out = tmp_path / "experiment.html"

    # When RevOps asks for it as HTML too
    assert (
        main(
            [
                "experiment",
                "report",
                TRIGGER,
                "--endpoint",
                "https://api.example.test/prod",
                "--html",
                str(out),
            ]
        )
        == 0
    )

    # Then the page holds every figure of the text report, in the same words, and loads nothing
    text = capsys.readouterr().out
    page = out.read_text()
    (report,) = fetched
    assert text.strip() == render(report)
    shown = figures(report)
    for arm in shown.arms:
        for value in (arm.accounts, arm.expanded, arm.rate, arm.interval, arm.amount_per_account):
            assert f">{escape(value)}<" in page
    for line in (shown.verdict, shown.absolute, shown.relative, shown.open_trials, shown.power, shown.method):
        assert line
        assert escape(line) in page
    assert page == render_html(report)
    assert 'class="badge good"' in page  # the play works
    assert "<script" not in page
    assert "http" not in page.replace("http-equiv", "")
    parser = _StrictParser()
    parser.feed(page)
    assert parser.open == []  # every element closed


class _StrictParser(HTMLParser):
    VOID = frozenset({"meta", "br", "img", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open[-1:] == [tag], f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()


def test_the_report_command_passes_the_apis_message_on(aws: Aws) -> None:
    with httpx.Client(transport=api_transport()) as http, pytest.raises(ReportError) as caught:
        fetch_report(http, "https://api.example.test/prod", "upk_reader", "seat-expansio")

    assert str(caught.value).startswith("the API answered 404: No trigger 'seat-expansio'")
    assert "Did you mean 'seat-expansion'?" in str(caught.value)


# ── rollout: shadow ────────────────────────────────────────────────────────────────────────────


def test_a_firing_outside_the_rollout_is_recorded_in_shadow_never_routed_and_not_compared(
    aws: Aws, router: Router, ledger: PlayLedger
) -> None:
    # Given a trigger live for the smb segment only, with a holdout, and an enterprise account
    trigger = RULES.triggers[TRIGGER].model_copy(update={"rollout": Rollout(segments=["smb"])})
    assignment = assign(TRIGGER, trigger, "acct-ent", "enterprise")
    assert assignment is not None
    put_account(aws, "acct-ent", segment="enterprise")
    message = fired("acct-ent", NOW - timedelta(hours=1))
    evidence = message.firing.model_dump(mode="json") | {
        "arm": assignment.arm.value,
        "experiment": assignment.as_evidence(),
    }
    message = FiredMessage.model_validate({**message.model_dump(mode="json"), "firing": evidence})

    # When the router function takes its firing
    answer = route_fired(sqs_event([message.model_dump_json()]), router)

    # Then nothing is delivered; the play is recorded in shadow, saying why, and is no trial
    assert answer == {"batchItemFailures": []}
    assert delivered(aws) == []
    record = ledger.get("acct-ent", play_id(message.firing_id, 0))
    assert record is not None
    assert record.status is PlayStatus.SHADOW
    assert record.reason == "shadow: outside the rollout (segments smb: segment enterprise)"
    assert record.trial is False
    counts, arms = cohort_totals(aws)
    assert (counts["firings"], counts["shadow"], counts["routed"]) == (1, 1, 0)
    assert arms == {}


# ── CSV export ─────────────────────────────────────────────────────────────────────────────────


def test_the_export_lists_every_firing_with_its_arm_trial_status_and_expansion(
    aws: Aws, fast_router: Router, ledger: PlayLedger, tmp_path: Path
) -> None:
    # Given a held-out account that fired twice and expanded after its first firing, and a treated one
    [held] = accounts_in(Arm.HOLDOUT, 1)
    [treated] = accounts_in(Arm.TREATED, 1)
    firings = [
        fired(held, NOW - timedelta(days=40)),
        fired(held, NOW - timedelta(days=5)),
        fired(treated, NOW - timedelta(days=3)),
    ]
    for message in firings:
        fast_router.route_firing(message, message.firing.evaluated_at)
    Attributor(plays=ledger, horizon_days=30).attribute(
        StoredOutcomeFacts(
            held, "out-1", OutcomeKind.PLAN_UPGRADE, NOW - timedelta(days=35), Decimal("900"), "EUR"
        )
    )

    # When an operator exports the trigger's firings with the CLI
    out = tmp_path / "firings.csv"
    code = main(
        ["experiment", "export", TRIGGER, "--plays-table", aws.tables[PLAYS_TABLE.env_var], "--out", str(out)]
    )

    # Then one row per firing, oldest first, with its arm, whether it is the account's trial, and its fate
    assert code == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [(row["account_id"], row["arm"], row["trial"], row["status"]) for row in rows] == [
        (held, "holdout", "true", "held_out"),
        (held, "holdout", "false", "held_out"),
        (treated, "treated", "true", "routed"),
    ]
    assert (rows[0]["expansion_kind"], rows[0]["expansion_amount"], rows[0]["currency"]) == (
        "plan_upgrade",
        "900.00",
        "EUR",
    )
    assert rows[1]["expanded_at"] == ""  # the expansion came before the second firing
    assert rows[0]["salt"] == TRIGGER
    assert float(rows[0]["draw"]) < 0.10
    assert set(rows[0]) == set(COLUMNS)


def test_the_signals_route_shows_a_held_out_play_and_why(aws: Aws, router: Router) -> None:
    # Given a held-out account whose firing was settled
    [held] = accounts_in(Arm.HOLDOUT, 1)
    put_account(aws, held)
    message = fired(held, NOW - timedelta(hours=2))
    router.route_firing(message, NOW - timedelta(hours=2))

    # When its signals are read
    status, answer = call_api(proxy_event("GET", account_path(held, "/signals"), None, content_type=None))

    # Then its play is listed as held out, with the draw that decided it, and no channel
    assert status == 200
    [play] = answer["recent_plays"]
    assert play["status"] == "held_out"
    assert play["reason"].startswith(f"held out: experiment {TRIGGER}, draw 0.")
    assert play["channels"] == []
    assert play["fate"]["state"] == "open"
