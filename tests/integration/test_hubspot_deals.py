"""The closed-won deal read-back on moto against the loopback HubSpot sink: deals closed in the sink
become outcomes (`source: hubspot`) of the account whose profile names the deal's company — once,
whatever is read again or fails on the way (the overlap, a page mid-way, 429), and never a guess
(no company, an unknown company, several of either: counted, skipped).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.hubspot_poller.handler import poll_deals
from functions.hubspot_poller.settings import HubSpotPollerSettings
from shared.accounts.models import AccountProfile, Writer
from shared.accounts.store import AccountStore
from shared.delivery import hubspot as hubspot_module
from shared.delivery.hubspot import DealSearch, HubSpotClient, HubSpotSettings
from shared.delivery.shared_pacer import SharedPacer
from shared.errors import StorageUnavailable
from shared.outcomes.intake import OutcomeIntake
from shared.outcomes.models import OutcomeKind, StoredOutcome
from shared.outcomes.store import OutcomeStore
from shared.readback.deals import DealPoller, DealRules
from shared.readback.watermark import DEALS_STATE_KEY, PollerStateStore, epoch_ms
from shared.resources import ACCOUNTS_TABLE, DELIVERIES_TABLE, OUTCOMES_TABLE, PLAYS_TABLE
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.test_hubspot_poller import Faults
from upswing.local.hubspot_sink import HubSpotSink

TOKEN = "pat-na1-deals-token"
WRITER = Writer(producer_id="crm-sync", key_id="k1")


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HubSpotSink]:
    with HubSpotSink(tmp_path / "requests.jsonl", deal_properties=["upswing_outcome_kind"]) as running:
        yield running


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def client(sink: HubSpotSink, faults: Faults, aws: Aws) -> HubSpotClient:
    return HubSpotClient(
        HubSpotSettings(base_url=sink.endpoint),
        token=lambda: TOKEN,
        http=httpx.Client(transport=faults),
        sleep=lambda seconds: None,
        jitter=lambda: 0.0,
        search_pacer=SharedPacer(
            aws.dynamodb,
            aws.tables[DELIVERIES_TABLE.env_var],
            "hubspot-search#s",
            limit=5,
            window_seconds=1.2,
        ),
    )


class FlakyStore(OutcomeStore):
    """The outcomes table, failing its `fail_at`-th put (DynamoDB going away mid-page)."""

    fail_at: int | None = None
    calls = 0

    def put_new(self, item: dict[str, Any]) -> Any:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise StorageUnavailable("InternalServerError")
        return super().put_new(item)


@pytest.fixture
def store(aws: Aws) -> FlakyStore:
    return FlakyStore(aws.dynamodb, aws.tables[OUTCOMES_TABLE.env_var])


@pytest.fixture
def accounts(aws: Aws) -> AccountStore:
    store = AccountStore(aws.dynamodb, aws.tables[ACCOUNTS_TABLE.env_var])
    for account_id, company_id in (("acme", "77"), ("globex", "88"), ("twin-a", "99"), ("twin-b", "99")):
        store.put(account_id, AccountProfile(name=account_id, hubspot={"company_id": company_id}), WRITER)
    return store


def make_poller(
    client: HubSpotClient,
    accounts: AccountStore,
    store: OutcomeStore,
    aws: Aws,
    rules: DealRules | None = None,
    wall_clock: Any = None,
) -> DealPoller:
    return DealPoller(
        client=client,
        accounts=accounts,
        outcomes=OutcomeIntake(store, TEST_RETENTION_DAYS),
        state=PollerStateStore(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], DEALS_STATE_KEY),
        rules=rules or DealRules(),
        retention_days=TEST_RETENTION_DAYS,
        wall_clock=wall_clock or (lambda: datetime.now(UTC)),
    )


@pytest.fixture
def poller(client: HubSpotClient, accounts: AccountStore, store: FlakyStore, aws: Aws) -> DealPoller:
    return make_poller(client, accounts, store, aws)


def far() -> float:
    return time.monotonic() + 60


def always() -> bool:
    return True


def won(sink: HubSpotSink, companies: list[str], amount: Any = "4800", **properties: Any) -> str:
    """A deal on `companies`, then closed won as a salesperson would; its id."""
    deal = sink.create_deal({"dealname": "Upgrade", "dealstage": "contractsent", **properties}, companies)
    assert sink.close_deal(deal["id"], amount)
    return str(deal["id"])


def outcomes_of(store: OutcomeStore, account_id: str) -> list[StoredOutcome]:
    return store.outcomes(account_id)


def watermark(aws: Aws) -> int | None:
    item = aws.dynamodb.get_item(TableName=aws.tables[PLAYS_TABLE.env_var], Key=DEALS_STATE_KEY).get("Item")
    return int(item["watermark_ms"]["N"]) if item else None


# ── what is read back ──────────────────────────────────────────────────────────────────────────


def test_given_a_deal_closed_won_on_an_accounts_company_when_polled_then_it_is_one_hubspot_outcome(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore
) -> None:
    deal_id = won(sink, ["77"], amount="4800.5", deal_currency_code="EUR")
    sink.create_deal({"dealname": "Still open", "dealstage": "contractsent"}, ["77"])  # not closed: not read

    report = poller.poll(far(), always)

    assert (report.seen, report.written) == (1, 1)
    (outcome,) = outcomes_of(store, "acme")
    deal = next(d for d in sink.deals() if d["id"] == deal_id)
    assert outcome.outcome_id == f"hubspot-deal-{deal_id}"
    assert (outcome.kind, outcome.amount, outcome.currency) == ("plan_upgrade", 4800.50, "EUR")
    assert (outcome.source, outcome.deal_id, outcome.channel) == ("hubspot", deal_id, "hubspot")
    assert outcome.occurred_at == datetime.fromisoformat(deal["properties"]["closedate"])
    assert outcomes_of(store, "globex") == []


def test_given_the_same_deal_read_again_within_the_overlap_then_it_is_a_duplicate_not_a_second_outcome(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore
) -> None:
    won(sink, ["77"])
    first = poller.poll(far(), always)

    second = poller.poll(far(), always)

    assert (first.written, second.seen, second.written, second.duplicates) == (1, 1, 0, 1)
    assert second.watermark_ms == first.watermark_ms
    assert len(outcomes_of(store, "acme")) == 1


def test_given_the_amount_changes_after_the_outcome_then_the_outcome_stays_and_the_change_is_counted(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore
) -> None:
    deal_id = won(sink, ["77"], amount="4800")
    poller.poll(far(), always)
    sink.update_deal(deal_id, {"amount": "5200"})

    report = poller.poll(far(), always)

    assert (report.changed, report.written) == (1, 0)
    (outcome,) = outcomes_of(store, "acme")
    assert outcome.amount == 4800


def test_given_a_kind_property_and_the_portal_currency_then_the_outcome_takes_them(
    sink: HubSpotSink, client: HubSpotClient, accounts: AccountStore, store: FlakyStore, aws: Aws
) -> None:
    rules = DealRules(
        kind_property="upswing_outcome_kind",
        default_currency="GBP",
        search=DealSearch(properties=("upswing_outcome_kind",)),
    )
    won(sink, ["77"], upswing_outcome_kind="seat_expansion")
    won(sink, ["88"])  # no kind on the deal: the default

    make_poller(client, accounts, store, aws, rules).poll(far(), always)

    (acme,) = outcomes_of(store, "acme")
    (globex,) = outcomes_of(store, "globex")
    assert (acme.kind, acme.currency) == ("seat_expansion", "GBP")
    assert (globex.kind, globex.currency) == (OutcomeKind.PLAN_UPGRADE.value, "GBP")


def test_given_new_business_and_other_pipelines_then_only_the_configured_expansion_deals_count(
    sink: HubSpotSink, client: HubSpotClient, accounts: AccountStore, store: FlakyStore, aws: Aws
) -> None:
    rules = DealRules(search=DealSearch(closed_won_stages=("closedwon", "won-x"), pipelines=("default",)))
    won(sink, ["77"], dealtype="existingbusiness")
    won(sink, ["88"], dealtype="newbusiness")
    other = sink.create_deal({"dealname": "Other pipeline", "pipeline": "renewals"}, ["88"])
    sink.close_deal(other["id"], "100", stage="won-x")

    report = make_poller(client, accounts, store, aws, rules).poll(far(), always)

    assert (report.seen, report.excluded, report.written) == (2, 1, 1)
    assert len(outcomes_of(store, "acme")) == 1
    assert outcomes_of(store, "globex") == []
    search = next(r for r in sink.requests() if r["path"].endswith("/deals/search"))
    filters = search["body"]["filterGroups"][0]["filters"]
    assert {"propertyName": "dealstage", "operator": "IN", "values": ["closedwon", "won-x"]} in filters


# ── companies and accounts: each case has one answer ────────────────────────────────────────────


def test_given_a_deal_without_a_company_then_it_is_counted_and_skipped(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore
) -> None:
    won(sink, [])
    won(sink, ["77"])

    report = poller.poll(far(), always)

    assert (report.seen, report.without_company, report.written) == (2, 1, 1)


def test_given_a_deal_on_a_company_no_account_names_then_it_is_counted_and_skipped(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore
) -> None:
    won(sink, ["4242"])

    report = poller.poll(far(), always)

    assert (report.unknown_company, report.written) == (1, 0)


def test_given_a_deal_on_several_companies_then_the_primary_ones_account_gets_it_and_none_is_ambiguous(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore
) -> None:
    deal = sink.create_deal({"dealname": "Two companies"}, ["77", "88"], primary="88")
    sink.close_deal(deal["id"], "100")
    unlabelled = sink.create_deal({"dealname": "No primary"}, ["77", "88"], primary="")
    sink.close_deal(unlabelled["id"], "100")

    report = poller.poll(far(), always)

    assert (report.written, report.ambiguous_company) == (1, 1)
    assert [o.deal_id for o in outcomes_of(store, "globex")] == [deal["id"]]
    assert outcomes_of(store, "acme") == []


def test_given_a_company_on_several_accounts_then_no_account_gets_it_and_it_is_counted(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore
) -> None:
    won(sink, ["99"])

    report = poller.poll(far(), always)

    assert (report.ambiguous_account, report.written) == (1, 0)
    assert outcomes_of(store, "twin-a") == outcomes_of(store, "twin-b") == []


def test_given_a_profile_that_drops_its_company_then_the_company_index_forgets_it(
    accounts: AccountStore,
) -> None:
    assert accounts.accounts_of_company("77") == ["acme"]
    accounts.put("acme", AccountProfile(name="acme"), WRITER)
    assert accounts.accounts_of_company("77") == []
    assert accounts.accounts_of_company("99") == ["twin-a", "twin-b"]


# ── bad input and faults ───────────────────────────────────────────────────────────────────────


def test_given_a_deal_amount_missing_or_invalid_then_it_is_counted_with_the_reason_and_the_page_goes_on(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore
) -> None:
    won(sink, ["77"], amount="lots")
    won(sink, ["77"], amount="-50")
    no_amount = sink.create_deal({"dealname": "No amount", "dealstage": "closedwon"}, ["77"])
    good = won(sink, ["77"], amount="100")

    report = poller.poll(far(), always)

    assert (report.seen, report.invalid, report.written) == (4, 3, 1)
    assert [o.deal_id for o in outcomes_of(store, "acme")] == [good]
    assert no_amount["properties"].get("amount") is None


def test_given_a_page_that_fails_mid_way_then_the_watermark_stays_and_the_retry_writes_each_deal_once(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hubspot_module, "SEARCH_PAGE_LIMIT", 3)
    deals = [won(sink, ["77"], amount=str(100 * n)) for n in range(1, 6)]
    store.fail_at = 5  # the second page's second outcome

    with pytest.raises(Exception, match="outcomes table is unavailable"):
        poller.poll(far(), always)
    first_page_newest = max(
        epoch_ms(d["properties"]["hs_lastmodifieddate"]) for d in sink.deals() if d["id"] in deals[:3]
    )
    assert watermark(aws) == first_page_newest

    store.fail_at = None
    retry = poller.poll(far(), always)

    assert sorted(o.deal_id or "" for o in outcomes_of(store, "acme")) == sorted(deals)
    # From the first page's watermark minus the overlap: every deal again, four already written
    assert (retry.written, retry.duplicates) == (1, 4)


def test_given_hubspot_answers_429_then_it_is_waited_out_and_the_deal_is_written(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore, faults: Faults
) -> None:
    won(sink, ["77"])
    rate_limited = {"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}
    faults.script = [
        ("/deals/search", httpx.Response(429, json=rate_limited)),
        ("/deals/companies/batch/read", httpx.Response(502, text="Bad gateway")),
    ]

    report = poller.poll(far(), always)

    assert report.written == 1
    assert faults.script == []


def test_given_hubspot_refuses_the_token_then_the_run_stops_without_a_watermark_and_the_next_one_reads(
    sink: HubSpotSink, poller: DealPoller, store: FlakyStore, faults: Faults, aws: Aws
) -> None:
    won(sink, ["77"])
    refused = {"status": "error", "category": "INVALID_AUTHENTICATION", "message": "expired"}
    faults.script = [("/deals/search", httpx.Response(401, json=refused))]

    assert poll_deals(poller, far()) == {"stopped": "token refused"}
    assert watermark(aws) is None
    assert outcomes_of(store, "acme") == []

    assert poll_deals(poller, far())["written"] == 1


def test_given_our_clock_is_skewed_then_the_watermark_is_hubspots_modification_time(
    sink: HubSpotSink, client: HubSpotClient, accounts: AccountStore, store: FlakyStore, aws: Aws
) -> None:
    won(sink, ["77"])
    make_poller(client, accounts, store, aws).poll(far(), always)  # a first run, on a good clock
    later = won(sink, ["88"])
    ahead = timedelta(hours=1)
    skewed = make_poller(client, accounts, store, aws, wall_clock=lambda: datetime.now(UTC) + ahead)

    report = skewed.poll(far(), always)

    deal = next(d for d in sink.deals() if d["id"] == later)
    assert (report.written, report.duplicates) == (1, 1)  # the later deal; the first one again (overlap)
    # HubSpot's modification time, not our clock's (an hour ahead): nothing modified meanwhile is skipped
    assert watermark(aws) == epoch_ms(deal["properties"]["hs_lastmodifieddate"])


# ── settings ───────────────────────────────────────────────────────────────────────────────────


def base_environment() -> dict[str, str]:
    return {
        PLAYS_TABLE.env_var: "plays",
        DELIVERIES_TABLE.env_var: "deliveries",
        "HUBSPOT_SECRET_ID": "secret",
        ACCOUNTS_TABLE.env_var: "accounts",
        OUTCOMES_TABLE.env_var: "outcomes",
    }


def test_given_deal_settings_in_the_environment_then_the_rules_say_the_same() -> None:
    settings = HubSpotPollerSettings.model_validate(
        {
            **base_environment(),
            "HUBSPOT_DEAL_CLOSED_WON_STAGES": "closedwon, 1234567",
            "HUBSPOT_DEAL_PIPELINES": "default",
            "HUBSPOT_DEAL_KIND_PROPERTY": "upswing_outcome_kind",
            "HUBSPOT_DEAL_DEFAULT_KIND": "add_on",
            "HUBSPOT_DEAL_EXCLUDED_TYPES": "",
            "HUBSPOT_COMPANY_CURRENCY": "EUR",
        }
    )
    rules = settings.deal_rules()
    assert rules.search == DealSearch(("closedwon", "1234567"), ("default",), ("upswing_outcome_kind",))
    assert (rules.default_kind, rules.excluded_types, rules.default_currency) == (
        OutcomeKind.ADD_ON,
        frozenset(),
        "EUR",
    )
    assert HubSpotPollerSettings.model_validate(base_environment()).deal_rules().excluded_types == {
        "newbusiness"
    }


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("HUBSPOT_DEAL_DEFAULT_KIND", "upsell", "seat_expansion"),
        ("HUBSPOT_DEAL_CLOSED_WON_STAGES", "closed won", "not a HubSpot internal value"),
        ("HUBSPOT_COMPANY_CURRENCY", "usd", "USD"),
        (OUTCOMES_TABLE.env_var, None, "HUBSPOT_READ_DEALS=false"),
    ],
)
def test_given_a_wrong_deal_setting_then_the_error_says_what_to_write(
    name: str, value: str | None, says: str
) -> None:
    environment: dict[str, Any] = {**base_environment(), name: value}
    if value is None:
        del environment[name]
    with pytest.raises(ValueError, match=says):
        HubSpotPollerSettings.model_validate(environment)
